"""LnurlServer: an LNURL-pay server (LUD-06, LUD-16) with NIP-57 zaps, backed by a NIP-47 wallet.

::

    async with NWCClient(uri) as wallet, LnurlServer(wallet=wallet, keys=keys, relays=[relay]):
        ...  # serves /.well-known/lnurlp/<name>; publishes a 9735 for each paid zap invoice

It answers every request, good or bad, with LUD-06 JSON and keeps serving; it publishes a zap
receipt once per paid zap invoice, signed by its ``nostrPubkey``. The client side is
:mod:`dvmkit.payments.lnurl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from dvmkit.aio import close_stack
from dvmkit.errors import DVMError, InvalidEvent
from dvmkit.nostr.event import parse_event
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11, zaps
from dvmkit.payments.lnurl import USERNAME, LnurlError
from dvmkit.payments.nip47 import Transaction
from dvmkit.payments.nwc import Notifications, NWCClient
from dvmkit.payments.zaps import InvalidZap, ZapRequest
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.values import relay_url

log = logging.getLogger("dvmkit.payments.lnurl")

__all__ = ["LnurlServer", "LnurlStats"]

#: The longest ``nostr`` parameter (decoded) the server reads; real zap requests are < 2 KiB,
#: and websockets refuses request lines over 8 KiB (HTTP 414) before we see them.
MAX_NOSTR_PARAM = 4096
MAX_PENDING = 10_000
_PAY_PATH = re.compile(rf"/\.well-known/lnurlp/({USERNAME})")
_CALLBACK_PATH = re.compile(rf"/lnurlp/({USERNAME})/callback")
_INVOICE_EXPIRY = 3600
_WALLET_TIMEOUT = 10.0  # for make_invoice; the HTTP handshake deadline allows for it
_POLL_BATCH = 32  # lookups per poll tick: a fallback must not flood the wallet
_RECEIPT_RELAYS = 10  # at most this many of a zap request's relays get its receipt
_EXPIRY_GRACE = 60


@dataclass(frozen=True, slots=True)
class LnurlStats:
    """Counts since the server started; ``pending`` zap invoices are waiting for payment."""

    invoices_issued: int
    receipts_published: int
    refused: int
    pending: int


@dataclass(slots=True)
class _Zap:
    request: ZapRequest
    description: str  # the `nostr` parameter exactly as received: the invoice commits to it
    bolt11: str
    expires_at: int
    polled_at: float = 0.0


class LnurlServer:
    """An LNURL-pay server with NIP-57 zaps, paid into a NIP-47 wallet; ``async with`` it.

    It serves ``GET /.well-known/lnurlp/<name>`` (any name) and the callback
    ``GET /lnurlp/<name>/callback?amount=...[&nostr=...]``; every other path is a 404. For a
    zap it remembers the invoice and, once the wallet says it is paid (a ``payment_received``
    notification, or a ``lookup_invoice`` poll for wallets that send none), publishes the
    9735 receipt to the zap request's relays and its own, once per invoice.

    Args:
        wallet: the receiving account, already running.
        keys: the ``nostrPubkey`` key that signs receipts.
        relays: where every receipt goes (besides the zap request's relays).
        host: the address to listen on (and to put in URLs).
        port: the port; 0 picks a free one.
        min_sendable_msat: the least it invoices.
        max_sendable_msat: the most it invoices.
        pool: a running pool on ``relays`` to publish through; by default its own.
        poll_interval: seconds between lookups of each unpaid zap invoice.
    """

    def __init__(
        self,
        *,
        wallet: NWCClient,
        keys: Keys,
        relays: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 0,
        min_sendable_msat: int = 1000,
        max_sendable_msat: int = 100_000_000_000,
        pool: RelayPool | None = None,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < min_sendable_msat <= max_sendable_msat:
            raise ValueError("need 0 < min_sendable_msat <= max_sendable_msat")
        self._wallet = wallet
        self._keys = keys
        self._relays = tuple(relay_url(u) for u in relays)
        self._host = host
        self._port = port
        self._min = min_sendable_msat
        self._max = max_sendable_msat
        self._pool = pool
        self._own_pool = pool is None
        self._poll_interval = poll_interval
        self._clock = clock
        self._pending: OrderedDict[str, _Zap] = OrderedDict()
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._issued = self._published = self._refused = 0

    def __repr__(self) -> str:
        return f"LnurlServer(url={self.url!r}, nostr_pubkey={self.nostr_pubkey!r})"

    @property
    def url(self) -> str:
        """The base URL, ``http://host:port`` (empty until started)."""
        if not self._port:
            return ""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def address(self, name: str = "dvm") -> str:
        """The lightning address (LUD-16) of ``name`` on this server: ``name@host:port``."""
        return f"{name}@{self.url.removeprefix('http://')}"

    @property
    def nostr_pubkey(self) -> str:
        """The key its receipts are signed with (NIP-57 ``nostrPubkey``)."""
        return self._keys.public_key

    def stats(self) -> LnurlStats:
        return LnurlStats(self._issued, self._published, self._refused, len(self._pending))

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> LnurlServer:
        async with contextlib.AsyncExitStack() as stack:
            if self._pool is None:
                self._pool = await stack.enter_async_context(
                    RelayPool(relays=self._relays, signer=self._keys)
                )
            # Open before the first invoice exists: notifications are ephemeral events.
            notes = await stack.enter_async_context(self._wallet.notifications())
            self._tg = await stack.enter_async_context(asyncio.TaskGroup())
            self._tg.create_task(self._watch(notes), name="lnurl payments")
            self._tg.create_task(self._poll(), name="lnurl poll")

            async def stop() -> None:
                self._stopping.set()
                await notes.__aexit__(None, None, None)  # ends _watch's iteration

            stack.push_async_callback(stop)
            server: Server = await serve(
                self._serve,
                self._host,
                self._port,
                process_request=self._process_request,
                # Room for the wallet's make_invoice (bounded by _WALLET_TIMEOUT) and more.
                open_timeout=_WALLET_TIMEOUT + 5,
                server_header="dvmkit",
            )
            stack.push_async_callback(server.wait_closed)
            stack.callback(server.close)
            self._port = server.sockets[0].getsockname()[1]
            self._stack = stack.pop_all()
        log.info("LNURL server on %s, receipts signed by %s", self.url, self.nostr_pubkey)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        await close_stack(stack, exc_type, exc, tb)
        self._tg = None
        if self._own_pool:
            self._pool = None

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve(self, connection: ServerConnection) -> None:
        """Never reached: every request gets an HTTP answer in :meth:`_process_request`."""

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response:
        if request.method != "GET":  # LUD-06 is GET only; websockets passes any method on
            return _error(http.HTTPStatus.METHOD_NOT_ALLOWED, "use GET")
        parts = urlsplit(request.path)
        if match := _PAY_PATH.fullmatch(parts.path):
            name = match.group(1)
            return _json(
                http.HTTPStatus.OK,
                {
                    "tag": "payRequest",
                    "callback": f"{self.url}/lnurlp/{name}/callback",
                    "minSendable": self._min,
                    "maxSendable": self._max,
                    "metadata": self._metadata(name),
                    "allowsNostr": True,
                    "nostrPubkey": self.nostr_pubkey,
                },
            )
        if match := _CALLBACK_PATH.fullmatch(parts.path):
            try:
                return await self._callback(match.group(1), parts.query)
            except LnurlError as exc:
                self._refused += 1
                # LUD-06 errors are in-band; HTTP 200 so that clients which drop the bodies
                # of 4xx answers (dvmkit.http among them) still read the reason.
                return _error(http.HTTPStatus.OK, str(exc))
        return _error(http.HTTPStatus.NOT_FOUND, "not found")

    def _metadata(self, name: str) -> str:
        # LUD-06 needs text/plain; LUD-16 asks an address's metadata to name it.
        address = self.address(name)
        return orjson.dumps(
            [["text/plain", f"Pay {address}"], ["text/identifier", address]]
        ).decode()

    async def _callback(self, name: str, query: str) -> Response:
        try:
            params = parse_qs(query, strict_parsing=True, max_num_fields=8, errors="strict")
        except ValueError:
            raise LnurlError("malformed query string") from None
        if any(len(values) > 1 for values in params.values()):
            raise LnurlError("a parameter is given more than once")
        amount_text = params.get("amount", [""])[0]
        if not (amount_text.isascii() and amount_text.isdigit() and len(amount_text) <= 19):
            raise LnurlError("'amount' must be a whole number of msat")
        amount = int(amount_text)
        if not self._min <= amount <= self._max:
            raise LnurlError(f"amount must be within {self._min}..{self._max} msat")
        nostr = params.get("nostr", [None])[0]
        request: ZapRequest | None = None
        if nostr is not None:
            if len(nostr) > MAX_NOSTR_PARAM:
                raise LnurlError(f"the zap request is over {MAX_NOSTR_PARAM} characters")
            try:
                # NIP-57 Appendix D: checked before any invoice exists.
                request = zaps.check_zap_request(parse_event(nostr), amount_msat=amount)
            except (InvalidEvent, InvalidZap) as exc:
                raise LnurlError(f"invalid zap request: {exc}") from None
        committed = nostr if nostr is not None else self._metadata(name)
        description_hash = hashlib.sha256(committed.encode()).hexdigest()
        try:
            async with asyncio.timeout(_WALLET_TIMEOUT):
                made = await self._wallet.make_invoice(
                    amount, description_hash=description_hash, expiry=_INVOICE_EXPIRY
                )
            invoice = bolt11.decode(made.invoice or "")
        except (TimeoutError, DVMError) as exc:
            log.warning("the wallet could not make an invoice: %s", exc)
            raise LnurlError("the wallet could not make an invoice; try again") from None
        if invoice.amount_msat != amount or invoice.description_hash != description_hash:
            log.error("the wallet made an invoice for another amount or description")
            raise LnurlError("the wallet made a wrong invoice")
        self._issued += 1
        if request is not None and nostr is not None:
            self._remember(invoice, _Zap(request, nostr, invoice.bolt11, invoice.expires_at))
        return _json(http.HTTPStatus.OK, {"pr": invoice.bolt11, "routes": []})

    def _remember(self, invoice: bolt11.Invoice, zap: _Zap) -> None:
        self._pending[invoice.payment_hash] = zap
        while len(self._pending) > MAX_PENDING:
            dropped, _ = self._pending.popitem(last=False)  # the oldest goes first
            log.debug("forgot unpaid zap invoice %s: over %d pending", dropped, MAX_PENDING)

    # -- payments ----------------------------------------------------------------------------

    async def _watch(self, notes: Notifications) -> None:
        async for note in notes:
            tx = note.transaction
            if note.type == "payment_received" and tx.settled and tx.payment_hash in self._pending:
                self._paid(tx)

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._stopping.wait()
                    return
            now = self._clock()
            for payment_hash, zap in list(self._pending.items()):
                if now > zap.expires_at + _EXPIRY_GRACE:
                    del self._pending[payment_hash]
            due = sorted(
                (z.polled_at, h)
                for h, z in self._pending.items()
                if z.polled_at <= now - self._poll_interval
            )[:_POLL_BATCH]
            for _, payment_hash in due:
                if self._stopping.is_set():
                    return
                await self._lookup(payment_hash, now)

    async def _lookup(self, payment_hash: str, now: float) -> None:
        zap = self._pending.get(payment_hash)
        if zap is None:
            return  # paid (notified) or forgotten meanwhile
        zap.polled_at = now
        try:
            tx = await self._wallet.lookup_invoice(payment_hash=payment_hash)
        except DVMError as exc:
            log.debug("lookup of %s failed: %s", payment_hash, exc)
            return
        if tx.settled and tx.payment_hash == payment_hash:
            self._paid(tx)

    def _paid(self, tx: Transaction) -> None:
        # Popping is what makes a receipt once per invoice: a notification and a poll that
        # both see the payment find the entry only once.
        zap = self._pending.pop(tx.payment_hash, None)
        if zap is None or self._tg is None:
            return
        self._tg.create_task(self._publish(zap, tx), name=f"zap receipt {tx.payment_hash[:8]}")

    async def _publish(self, zap: _Zap, tx: Transaction) -> None:
        assert self._pool is not None
        preimage = tx.preimage
        if not bolt11.preimage_matches(preimage, tx.payment_hash):
            preimage = None  # leave out what a verifier would reject
        receipt = zaps.receipt_event(
            server_keys=self._keys,
            zap_request=zap.request.event,
            description=zap.description,
            bolt11=zap.bolt11,
            preimage=preimage,
            paid_at=tx.settled_at or int(self._clock()),
        )
        ok = False
        try:
            ok = (await self._pool.publish(receipt, wait="all")).ok
            extra = _extra_relays(zap.request.relays, self._pool.relays)
            if extra:
                # A short-lived pool: a zap request's relays are untrusted and must not
                # become lasting connections of ours.
                async with RelayPool(relays=extra, fetch_info=False) as pool:
                    ok = (await pool.publish(receipt, wait="all")).ok or ok
        except DVMError as exc:
            log.warning("publishing zap receipt %s failed: %s", receipt.id, exc)
        if ok:
            self._published += 1
        else:
            log.warning("no relay took zap receipt %s", receipt.id)


def _extra_relays(wanted: Sequence[str], have: Sequence[str]) -> list[str]:
    out: list[str] = []
    for text in wanted[:_RECEIPT_RELAYS]:
        try:
            url = relay_url(text)
        except DVMError:
            continue  # NIP-57 relays are hints; an unusable one is skipped
        if url not in have and url not in out:
            out.append(url)
    return out


def _error(status: http.HTTPStatus, reason: str) -> Response:
    return _json(status, {"status": "ERROR", "reason": reason})


def _json(status: http.HTTPStatus, body: dict[str, Any]) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            # LUD-01: web wallets call LNURL services from the browser.
            ("Access-Control-Allow-Origin", "*"),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)
