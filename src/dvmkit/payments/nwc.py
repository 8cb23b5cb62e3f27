"""NWCClient: a NIP-47 wallet over relays (make, look up and pay invoices; balance; notifications).

::

    async with NWCClient(os.environ["NWC_URI"]) as wallet:
        invoice = await wallet.make_invoice(21_000, description="job 42")
        paid = await other_wallet.pay_invoice(invoice.invoice)
        assert (await wallet.lookup_invoice(payment_hash=invoice.payment_hash)).settled

A response is accepted only when it is signed by the wallet's key from the URI: anything else
addressed to us is dropped *before* it is decrypted (a relay can deliver anything, and a forged
"settled" from a third key must never be read). Requests use NIP-44 v2 unless the wallet's info
event (13194) does not list ``nip44_v2``; then NIP-04, as NIP-47 says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from dvmkit.aio import close_stack
from dvmkit.errors import RelayError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.nip40 import expiration_tag
from dvmkit.payments import nip47
from dvmkit.payments.nip47 import (
    BAD_RESPONSE,
    NIP04,
    NIP44,
    NOT_SENT,
    TIMEOUT,
    Balance,
    ConnectionURI,
    Encryption,
    Notification,
    Payment,
    Transaction,
    WalletError,
    WalletInfo,
)
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.subscription import Subscription

log = logging.getLogger("dvmkit.payments.nwc")

__all__ = ["ClientStats", "NWCClient", "Notifications"]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counts since the client started: ``rejected`` are events not signed by the wallet."""

    requests: int
    answered: int
    rejected: int
    pending: int


@dataclass(slots=True)
class _Pending:
    method: str
    scheme: Encryption
    future: asyncio.Future[dict[str, Any]]


class NWCClient:
    """A connection to one NIP-47 wallet; use as ``async with NWCClient(uri) as wallet``.

    Args:
        uri: the ``nostr+walletconnect://`` URI, or a parsed :class:`ConnectionURI`.
        pool: a running pool to use (it must reach the URI's relays); by default the client
            runs its own pool on the URI's relays, signing NIP-42 AUTH with the client key.
        timeout: seconds to wait for each answer (and for the info event at start).
        encryption: ``"auto"`` (NIP-44 unless the wallet's info event says otherwise),
            ``"nip44_v2"`` or ``"nip04"``.
    """

    def __init__(
        self,
        uri: ConnectionURI | str,
        *,
        pool: RelayPool | None = None,
        timeout: float = 30.0,
        encryption: Literal["auto", "nip44_v2", "nip04"] = "auto",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.uri = uri if isinstance(uri, ConnectionURI) else ConnectionURI.parse(uri)
        self.timeout = timeout
        self._choice = encryption
        self._scheme: Encryption = NIP44 if encryption == "auto" else encryption
        self._clock = clock
        self._own_pool = pool is None
        self._pool = pool
        self._pending: dict[str, _Pending] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._requests = self._answered = self._rejected = 0

    def __repr__(self) -> str:
        return f"NWCClient(wallet={self.uri.wallet!r}, relays={self.uri.relays!r})"

    @property
    def encryption(self) -> Encryption:
        """The scheme requests use (decided at start when ``encryption="auto"``)."""
        return self._scheme

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> NWCClient:
        async with contextlib.AsyncExitStack() as stack:
            if self._pool is None:
                self._pool = await stack.enter_async_context(
                    RelayPool(relays=self.uri.relays, signer=self.uri.keys)
                )
            # No `authors` in the filter on purpose: the wallet check is ours (below), so a
            # relay that ignores filters cannot slip a third key's answer past it.
            sub = self._pool.subscribe(
                Filter.build(kinds=[nip47.RESPONSE], tags={"p": [self.uri.client]})
            )
            await stack.enter_async_context(sub)
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            tg.create_task(self._read(sub), name=f"nwc responses {self.uri.wallet[:8]}")
            # Closing the subscription ends the reader's iteration, so the group can finish.
            stack.push_async_callback(sub.close)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await sub.wait_stored()
            if self._choice == "auto":
                self._scheme = await self._discover_encryption()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        await close_stack(stack, exc_type, exc, tb)
        if self._own_pool:
            self._pool = None

    async def _discover_encryption(self) -> Encryption:
        assert self._pool is not None
        events = await self._pool.fetch(
            Filter.build(kinds=[nip47.INFO], authors=[self.uri.wallet]),
            timeout=min(self.timeout, 5.0),
        )
        if not events:
            return NIP44  # no info event: the current default
        latest = max(events, key=lambda e: (e.created_at, e.id))
        schemes = (latest.tag_value("encryption") or "").split()
        # NIP-47: an info event without an encryption tag means the wallet speaks only NIP-04.
        return NIP44 if NIP44 in schemes else NIP04

    def _running_pool(self) -> RelayPool:
        if self._stack is None or self._pool is None:
            raise RelayError("the wallet client is not running: use 'async with NWCClient(...)'")
        return self._pool

    # -- responses ---------------------------------------------------------------------------

    async def _read(self, sub: Subscription) -> None:
        async for event in sub:
            self._on_response(event)

    def _from_wallet(self, event: Event, what: str) -> bool:
        """True when the wallet signed ``event``; anything else is counted and dropped.

        Checked before anything else is read, decryption above all.
        """
        if event.pubkey == self.uri.wallet:
            return True
        self._rejected += 1
        log.warning("dropped a %s signed by %s, not by the wallet", what, event.pubkey)
        return False

    def _on_response(self, event: Event) -> None:
        if not self._from_wallet(event, "wallet response"):
            return
        request_id = event.tag_value("e")
        pending = self._pending.get(request_id) if request_id else None
        if pending is None or pending.future.done():
            return
        self._answered += 1
        try:
            body = nip47.decrypt(self.uri.keys, self.uri.wallet, event.content, pending.scheme)
            result = nip47.parse_response(body, method=pending.method)
        except WalletError as exc:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(result)

    # -- requests ----------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and wait for the wallet's answer.

        Returns:
            The response's ``result`` object.

        Raises:
            WalletError: the wallet's error (its NIP-47 code), ``TIMEOUT``, ``BAD_RESPONSE``
                or ``NOT_SENT`` (see :class:`~dvmkit.payments.nip47.WalletError`).
            RelayError: the client is not running.
        """
        pool = self._running_pool()
        scheme = self._scheme
        body = nip47.request_body(method, params or {})
        tags: list[tuple[str, ...]] = [("p", self.uri.wallet)]
        if scheme == NIP44:
            tags.append(("encryption", NIP44))
        # A wallet must ignore a request it sees after we gave up (NIP-47 `expiration`), so a
        # late pay_invoice can never run behind a caller that already retried.
        tags.append(expiration_tag(int(self._clock() + self.timeout) + 1))
        event = sign_event(
            self.uri.keys,
            kind=nip47.REQUEST,
            content=nip47.encrypt(self.uri.keys, self.uri.wallet, body, scheme),
            tags=tags,
            clock=self._clock,
        )
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[event.id] = _Pending(method, scheme, future)
        self._requests += 1
        try:
            async with asyncio.timeout(self.timeout):
                published = await pool.publish(event, wait="first", timeout=self.timeout)
                if not published.ok:
                    reasons = "; ".join(
                        f"{url}: {o.status} {o.message}".strip()
                        for url, o in published.outcomes.items()
                    )
                    raise WalletError(NOT_SENT, f"no relay accepted the request ({reasons})")
                return await future
        except TimeoutError:
            raise WalletError(
                TIMEOUT, f"the wallet did not answer {method} within {self.timeout:g} s"
            ) from None
        finally:
            del self._pending[event.id]

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str | None = None,
        description_hash: str | None = None,
        expiry: int | None = None,
    ) -> Transaction:
        """Ask the wallet for an invoice of ``amount_msat``; ``.invoice`` is the bolt11."""
        params: dict[str, Any] = {"amount": amount_msat}
        if description is not None:
            params["description"] = description
        if description_hash is not None:
            params["description_hash"] = description_hash
        if expiry is not None:
            params["expiry"] = expiry
        transaction = Transaction.from_dict(await self.request("make_invoice", params))
        if not transaction.invoice:
            raise WalletError(BAD_RESPONSE, "make_invoice answered without an invoice")
        return transaction

    async def lookup_invoice(
        self, *, payment_hash: str | None = None, invoice: str | None = None
    ) -> Transaction:
        """Ask the wallet about an invoice, by payment hash or bolt11."""
        if (payment_hash is None) == (invoice is None):
            raise ValueError("give exactly one of payment_hash and invoice")
        params = {"payment_hash": payment_hash} if payment_hash else {"invoice": invoice}
        return Transaction.from_dict(await self.request("lookup_invoice", params))

    async def pay_invoice(self, invoice: str, *, amount_msat: int | None = None) -> Payment:
        """Pay a bolt11 invoice; the returned preimage proves it was paid."""
        params: dict[str, Any] = {"invoice": invoice}
        if amount_msat is not None:
            params["amount"] = amount_msat
        return nip47.payment_from_result(await self.request("pay_invoice", params))

    async def get_balance(self) -> Balance:
        return nip47.balance_from_result(await self.request("get_balance"))

    async def get_info(self) -> WalletInfo:
        return nip47.info_from_result(await self.request("get_info"))

    def notifications(self) -> Notifications:
        """The wallet's notifications from now on; open with ``async with``, then ``async for``.

        Open it before the payment you wait for: notifications are ephemeral events that a
        relay forwards to subscribers only.
        """
        pool = self._running_pool()
        kind = nip47.NOTIFICATION if self._scheme == NIP44 else nip47.NOTIFICATION_NIP04
        sub = pool.subscribe(Filter.build(kinds=[kind], tags={"p": [self.uri.client]}))
        return Notifications(self, sub, self._scheme)

    def stats(self) -> ClientStats:
        return ClientStats(
            requests=self._requests,
            answered=self._answered,
            rejected=self._rejected,
            pending=len(self._pending),
        )


class Notifications:
    """A stream of :class:`~dvmkit.payments.nip47.Notification` from one wallet.

    Events from any key but the wallet's are dropped before decryption; ones that do not
    decrypt or parse are logged and skipped, so one bad event cannot end the stream.
    """

    def __init__(self, client: NWCClient, sub: Subscription, scheme: Encryption) -> None:
        self._client = client
        self._sub = sub
        self._scheme: Encryption = scheme

    async def __aenter__(self) -> Notifications:
        await self._sub.open()
        async with asyncio.timeout(self._client.timeout):
            await self._sub.wait_stored()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.close()

    def __aiter__(self) -> Notifications:
        return self

    async def __anext__(self) -> Notification:
        client = self._client
        uri = client.uri
        async for event in self._sub:
            if not client._from_wallet(event, "notification"):
                continue
            try:
                body = nip47.decrypt(uri.keys, uri.wallet, event.content, self._scheme)
                return nip47.parse_notification(body)
            except WalletError as exc:
                log.warning("skipped a malformed wallet notification: %s", exc)
        raise StopAsyncIteration
