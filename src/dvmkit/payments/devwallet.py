"""DevWallet: dvmkit's dev wallet, a real NIP-47 wallet service with instant internal settlement.

::

    async with DevWallet(relays=[relay_url], db="wallet.sqlite3") as wallet:
        provider_uri = wallet.create_account(name="dvm")
        customer_uri = wallet.create_account(name="alice", deposit_msat=100_000)
        ...  # NWCClient(provider_uri), NWCClient(customer_uri)

It stands in for a Lightning node in local runs and tests (DESIGN.md §6-7). Invoices are real
BOLT-11 (regtest ``lnbcrt``), signed by the wallet's node key, with payment hash = sha256 of a
random preimage kept in the ledger. ``pay_invoice`` of one of its own invoices debits the payer
and credits the payee in one SQLite transaction and returns the preimage; invoices of other
nodes cannot be paid (there is no network behind it). ``lookup_invoice`` reports ``settled``
only for an invoice that transaction paid.

One wallet key serves every account; an account is a client key (each with its own NWC URI).
Requests from any other key are answered ``UNAUTHORIZED`` and move nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from coincurve import PrivateKey

from dvmkit.aio import close_stack
from dvmkit.errors import DVMError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.nostr.nip40 import is_expired
from dvmkit.payments import bolt11, nip47
from dvmkit.payments.ledger import Ledger, LedgerInvoice
from dvmkit.payments.nip47 import NIP04, NIP44, ConnectionURI, Encryption, WalletError
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.subscription import Subscription

log = logging.getLogger("dvmkit.payments.devwallet")

METHODS = ("pay_invoice", "make_invoice", "lookup_invoice", "get_balance", "get_info")
NOTIFICATION_TYPES = ("payment_received", "payment_sent")
DEFAULT_EXPIRY = 3600
_MAX_EXPIRY = 365 * 24 * 3600


class DevWallet:
    """A NIP-47 wallet service on relays, backed by a :class:`~dvmkit.payments.ledger.Ledger`.

    Accounts can be created and funded before or while it runs (:meth:`create_account`,
    :meth:`deposit`); serving needs ``async with``, which connects, publishes the 13194 info
    event and answers requests until the block ends.

    Args:
        relays: where to listen and answer (and what new connection URIs name).
        db: the ledger: a SQLite file (created 0600) or ``":memory:"``.
        encryption: the schemes it accepts, advertised in the info event.
        network: the BOLT-11 currency of its invoices (``bcrt``: regtest).
        pool: a running pool to use instead of its own.
    """

    def __init__(
        self,
        *,
        relays: Sequence[str] = (),
        db: str | Path = ":memory:",
        encryption: Sequence[Encryption] = (NIP44, NIP04),
        network: str = "bcrt",
        pool: RelayPool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not encryption or any(s not in (NIP44, NIP04) for s in encryption):
            raise ValueError(f"encryption must be among {NIP44!r} and {NIP04!r}")
        self.relays = tuple(relays)
        self.encryption: tuple[Encryption, ...] = tuple(encryption)
        self.network = network
        self.ledger = Ledger(db)
        self.keys = Keys(self.ledger.secret("wallet"))
        self._node_secret = self.ledger.secret("node")
        #: The Lightning node id that signs this wallet's invoices (33 bytes, hex).
        self.node_id = PrivateKey(self._node_secret).public_key.format().hex()
        self._pool = pool
        self._own_pool = pool is None
        self._clock = clock
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"DevWallet(pubkey={self.pubkey!r}, relays={self.relays!r})"

    @property
    def pubkey(self) -> str:
        """The wallet service's Nostr public key (the host of every connection URI)."""
        return self.keys.public_key

    # -- accounts (usable whether or not the service runs) -----------------------------------

    def create_account(
        self, *, name: str = "", deposit_msat: int = 0, lud16: str | None = None
    ) -> ConnectionURI:
        """Open an account with a fresh client key; return its connection URI.

        The URI holds the client secret, which the wallet does not keep: this is the only
        time it exists outside the client. :meth:`ConnectionURI.reveal` gives the text.
        """
        if not self.relays:
            raise ValueError("the wallet has no relays to put in a connection URI")
        client = Keys.generate()
        self.ledger.add_account(client.public_key, name=name, now=self._clock())
        if deposit_msat:
            self.ledger.deposit(client.public_key, deposit_msat)
        return ConnectionURI(wallet=self.pubkey, relays=self.relays, keys=client, lud16=lud16)

    def deposit(self, account: str, amount_msat: int) -> int:
        """Credit ``account`` (a client pubkey) with ``amount_msat``; the new balance."""
        return self.ledger.deposit(account, amount_msat)

    def balance(self, account: str) -> int:
        return self.ledger.balance(account)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> DevWallet:
        async with contextlib.AsyncExitStack() as stack:
            if self._pool is None:
                self._pool = await stack.enter_async_context(
                    RelayPool(relays=self.relays, signer=self.keys)
                )
            sub = self._pool.subscribe(
                Filter.build(kinds=[nip47.REQUEST], tags={"p": [self.pubkey]})
            )
            await stack.enter_async_context(sub)
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            tg.create_task(self._serve(sub), name=f"dev wallet {self.pubkey[:8]}")
            stack.push_async_callback(sub.close)
            await sub.wait_stored()
            published = await self._pool.publish(self._info_event(), wait="all")
            if not published.ok:
                log.warning("no relay took the wallet's info event: %s", published.outcomes)
            self._stack = stack.pop_all()
        log.info("dev wallet %s serving on %s", self.pubkey, ", ".join(self.relays))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        await close_stack(stack, exc_type, exc, tb)
        if self._own_pool:
            self._pool = None
        self.ledger.close()

    def _info_event(self) -> Event:
        return sign_event(
            self.keys,
            kind=nip47.INFO,
            content=" ".join((*METHODS, "notifications")),
            tags=[
                ("encryption", " ".join(self.encryption)),
                ("notifications", " ".join(NOTIFICATION_TYPES)),
            ],
            clock=self._clock,
        )

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                await self._handle(event)
            except DVMError as exc:  # a relay or ledger fault: log it, keep serving
                log.error("request %s failed: %s", event.id, exc)

    async def _handle(self, request: Event) -> None:
        assert self._pool is not None
        if is_expired(request, now=self._clock):
            return  # NIP-47: a request seen after its expiration is ignored
        sent = self.ledger.response(request.id)
        if sent is not None:
            # A request seen again (re-published, or from a second relay) gets the same answer:
            # a pay_invoice whose answer was lost is never paid twice.
            await self._pool.publish(Event.from_json(sent), wait="first")
            return
        wanted = self._scheme_of(request)
        # A scheme we do not speak is refused in one we do (the client may read it or not).
        scheme = wanted or self.encryption[0]
        client = request.pubkey
        method = "unknown"
        notes: list[tuple[str, str, nip47.Transaction]] = []
        try:
            if wanted is None:
                raise WalletError("UNSUPPORTED_ENCRYPTION", "use " + " or ".join(self.encryption))
            try:
                body = nip47.decrypt(self.keys, client, request.content, scheme)
            except WalletError:
                raise WalletError("OTHER", f"the request does not decrypt with {scheme}") from None
            method, params = nip47.parse_request(body)
            if not self.ledger.has_account(client):
                raise WalletError("UNAUTHORIZED", "no wallet is connected to this key")
            result = self._dispatch(client, method, params, notes)
            content = nip47.response_body(method, result=result)
        except WalletError as exc:
            content = nip47.response_body(method, error=exc)
        response = sign_event(
            self.keys,
            kind=nip47.RESPONSE,
            content=nip47.encrypt(self.keys, client, content, scheme),
            tags=[("p", client), ("e", request.id)],
            clock=self._clock,
        )
        self.ledger.save_response(request.id, response.to_json())
        await self._pool.publish(response, wait="first")
        for account, kind, transaction in notes:
            await self._notify(account, kind, transaction)

    def _scheme_of(self, request: Event) -> Encryption | None:
        tag = request.tag_value("encryption")
        # NIP-47: no encryption tag means NIP-04; of a tag naming both, NIP-44 is the one asked.
        offered = [NIP04] if tag is None else tag.split()
        wanted = next((s for s in (NIP44, NIP04) if s in offered), None)
        return wanted if wanted in self.encryption else None

    async def _notify(self, account: str, kind: str, transaction: nip47.Transaction) -> None:
        assert self._pool is not None
        body = nip47.notification_body(kind, transaction)
        # Both kinds, as NIP-47 asks of a wallet that speaks both: each client listens to one.
        for scheme, event_kind in ((NIP44, nip47.NOTIFICATION), (NIP04, nip47.NOTIFICATION_NIP04)):
            if scheme not in self.encryption:
                continue
            event = sign_event(
                self.keys,
                kind=event_kind,
                content=nip47.encrypt(self.keys, account, body, scheme),
                tags=[("p", account)],
                clock=self._clock,
            )
            await self._pool.publish(event, wait="first")

    # -- methods -----------------------------------------------------------------------------

    def _dispatch(
        self,
        client: str,
        method: str,
        params: dict[str, Any],
        notes: list[tuple[str, str, nip47.Transaction]],
    ) -> dict[str, Any]:
        now = self._clock()
        if method == "get_balance":
            return {"balance": self.ledger.balance(client)}
        if method == "get_info":
            return {
                "alias": "dvmkit dev wallet",
                "color": "#7b3fe4",
                "pubkey": self.node_id,
                "network": "regtest" if self.network == "bcrt" else self.network,
                "block_height": 0,
                "block_hash": "00" * 32,
                "methods": list(METHODS),
                "notifications": list(NOTIFICATION_TYPES),
            }
        if method == "make_invoice":
            return (
                self._make_invoice(client, params, now)
                .transaction(viewer=client, now=now)
                .to_dict()
            )
        if method == "lookup_invoice":
            invoice = self._find(client, params)
            return invoice.transaction(viewer=client, now=now).to_dict()
        if method == "pay_invoice":
            return self._pay(client, params, now, notes)
        raise WalletError("NOT_IMPLEMENTED", f"the dev wallet does not implement {method!r}")

    def _make_invoice(self, client: str, params: dict[str, Any], now: float) -> LedgerInvoice:
        amount = params.get("amount")
        if type(amount) is not int or amount <= 0:
            raise WalletError("OTHER", "make_invoice needs a positive integer 'amount' in msat")
        description = params.get("description")
        description_hash = params.get("description_hash")
        expiry = params.get("expiry", DEFAULT_EXPIRY)
        if description is not None and not isinstance(description, str):
            raise WalletError("OTHER", "'description' must be a string")
        if description_hash is not None and not is_hex64(description_hash):
            raise WalletError("OTHER", "'description_hash' must be 64 lowercase hex characters")
        if type(expiry) is not int or not 0 < expiry <= _MAX_EXPIRY:
            raise WalletError("OTHER", f"'expiry' must be an integer in 1..{_MAX_EXPIRY} seconds")
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        created = int(now)
        try:
            text = bolt11.encode(
                self._node_secret,
                payment_hash=payment_hash,
                amount_msat=amount,
                network=self.network,
                timestamp=created,
                # BOLT-11 wants exactly one of d and h: the hash when the caller committed to one.
                description=None if description_hash else (description or ""),
                description_hash=bytes.fromhex(description_hash) if description_hash else None,
                payment_secret=os.urandom(32),
                expiry=expiry,
            )
        except bolt11.InvalidInvoice as exc:
            raise WalletError("OTHER", f"cannot make that invoice: {exc}") from None
        invoice = LedgerInvoice(
            payment_hash=payment_hash.hex(),
            account=client,
            bolt11=text,
            amount_msat=amount,
            description=description,
            description_hash=description_hash,
            preimage=preimage.hex(),
            created_at=created,
            expires_at=created + expiry,
            settled_at=None,
            payer=None,
        )
        self.ledger.add_invoice(invoice)
        return invoice

    def _find(self, client: str, params: dict[str, Any]) -> LedgerInvoice:
        payment_hash = params.get("payment_hash")
        text = params.get("invoice")
        if payment_hash is None and isinstance(text, str):
            try:
                payment_hash = bolt11.decode(text).payment_hash
            except bolt11.InvalidInvoice as exc:
                raise WalletError("OTHER", f"invalid invoice: {exc}") from None
        if not isinstance(payment_hash, str):
            raise WalletError("OTHER", "lookup_invoice needs 'payment_hash' or 'invoice'")
        invoice = self.ledger.invoice(payment_hash.lower())
        # Another account's invoice is as good as unknown: accounts do not see each other.
        if invoice is None or client not in (invoice.account, invoice.payer):
            raise WalletError("NOT_FOUND", "no invoice with that payment hash")
        return invoice

    def _pay(
        self,
        client: str,
        params: dict[str, Any],
        now: float,
        notes: list[tuple[str, str, nip47.Transaction]],
    ) -> dict[str, Any]:
        text = params.get("invoice")
        amount = params.get("amount")
        if not isinstance(text, str):
            raise WalletError("OTHER", "pay_invoice needs an 'invoice' string")
        if amount is not None and (type(amount) is not int or amount <= 0):
            raise WalletError("OTHER", "'amount' must be a positive integer in msat")
        try:
            decoded = bolt11.decode(text)
        except bolt11.InvalidInvoice as exc:
            raise WalletError("OTHER", f"invalid invoice: {exc}") from None
        if decoded.payee != self.node_id:
            raise WalletError(
                "PAYMENT_FAILED", "no route: the dev wallet settles only its own invoices"
            )
        settled = self.ledger.settle(client, decoded.payment_hash, now=now, amount_msat=amount)
        notes.append(
            (
                settled.account,
                "payment_received",
                settled.transaction(viewer=settled.account, now=now),
            )
        )
        notes.append((client, "payment_sent", settled.transaction(viewer=client, now=now)))
        return {"preimage": settled.preimage, "fees_paid": 0}
