"""LNURL-pay with NIP-57 zaps: our client, our server, the dev wallet and real relays.

End to end: a customer zaps a DVM's job through the DVM's LnurlServer, pays with its own NWC
wallet, and the 9735 receipt arriving on the relays verifies. Hostile requests go to the real
server over loopback; hostile answers come from a small real HTTP server in this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson
import pytest

from conftest import running_relay
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.lnurl import LnurlError, PayInfo, fetch_invoice, fetch_pay_info
from dvmkit.payments.lnurl_server import LnurlServer, LnurlStats
from dvmkit.payments.nwc import NWCClient
from dvmkit.payments.zaps import ZAP_RECEIPT_KIND, InvalidZap, verify_receipt, zap_request
from dvmkit.relay.pool import RelayPool

from .conftest import WAIT

NODE_KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")
DVM = Keys(bytes(31) + b"\x03")
CUSTOMER = Keys(bytes(31) + b"\x02")
SERVER_PUB = Keys(bytes(31) + b"\x01").public_key
METADATA = '[["text/plain","a canned service"]]'


def job_request() -> Event:
    return sign_event(CUSTOMER, kind=5050, content="summarize this", tags=[("p", DVM.public_key)])


@contextlib.asynccontextmanager
async def zap_server(
    wallet: DevWallet, relay_url: str, **options: Any
) -> AsyncIterator[tuple[LnurlServer, NWCClient]]:
    """The DVM's LNURL server on its dev wallet account, and a funded customer wallet."""
    dvm_uri = wallet.create_account(name="dvm")
    customer_uri = wallet.create_account(name="customer", deposit_msat=100_000)
    async with (
        NWCClient(dvm_uri, timeout=WAIT) as dvm_wallet,
        NWCClient(customer_uri, timeout=WAIT) as customer_wallet,
        LnurlServer(
            wallet=dvm_wallet, keys=Keys.generate(), relays=[relay_url], **options
        ) as server,
    ):
        yield server, customer_wallet


# -- end to end -------------------------------------------------------------------------------


async def test_a_zap_for_a_job_yields_a_receipt_that_verifies(
    wallet: DevWallet, relay_url: str
) -> None:
    job = job_request()
    async with (
        running_relay("ours") as extra_relay,
        RelayPool(relays=[relay_url, extra_relay]) as pool,
        # Polling as well as notifications: both see the payment, one receipt goes out.
        zap_server(wallet, relay_url, poll_interval=0.05) as (server, customer),
    ):
        info = await fetch_pay_info(server.address())
        assert (info.allows_nostr, info.nostr_pubkey) == (True, server.nostr_pubkey)
        assert info.callback == f"{server.url}/lnurlp/dvm/callback"
        # The receipt goes to the server's own relay and to one only the request names.
        request = zap_request(
            CUSTOMER,
            recipient=DVM.public_key,
            amount_msat=21_000,
            relays=[relay_url, extra_relay],
            event_id=job.id,
            content="for the summary",
        )
        bolt = await fetch_invoice(info, 21_000, zap_request=request)
        assert bolt11.decode(bolt).amount_msat == 21_000
        watch = Filter.build(kinds=[ZAP_RECEIPT_KIND], tags={"e": [job.id]})
        async with (
            pool.subscribe(watch, relays=[relay_url]) as on_own,
            pool.subscribe(watch, relays=[extra_relay]) as on_extra,
        ):
            await on_own.wait_stored()
            await on_extra.wait_stored()
            paid = await customer.pay_invoice(bolt)
            async with asyncio.timeout(WAIT):
                receipt = await anext(on_own)
                copy = await anext(on_extra)
    assert copy == receipt
    zap = verify_receipt(
        receipt,
        signer=info.nostr_pubkey or "",
        recipient=DVM.public_key,
        event_id=job.id,
        min_amount_msat=21_000,
    )
    assert (zap.payer, zap.amount_msat, zap.bolt11) == (CUSTOMER.public_key, 21_000, bolt)
    assert zap.payment_hash == hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest()
    assert receipt.tag_value("preimage") == paid.preimage
    assert receipt.tag_value("description") == request.to_json()
    # Left: every task finished, so the counts are final. One invoice, one receipt.
    assert server.stats() == LnurlStats(
        invoices_issued=1, receipts_published=1, refused=0, pending=0
    )


async def test_a_wallet_without_notifications_is_polled(wallet: DevWallet, relay_url: str) -> None:
    job = job_request()
    async with (
        RelayPool(relays=[relay_url]) as pool,
        zap_server(wallet, relay_url, poll_interval=0.05) as (server, _),
    ):
        info = await fetch_pay_info(server.address("anyone"))
        request = zap_request(
            CUSTOMER,
            recipient=DVM.public_key,
            amount_msat=5_000,
            relays=[relay_url],
            event_id=job.id,
        )
        invoice = bolt11.decode(await fetch_invoice(info, 5_000, zap_request=request))
        assert server.stats().pending == 1
        sub = pool.subscribe(Filter.build(kinds=[ZAP_RECEIPT_KIND], tags={"e": [job.id]}))
        async with sub:
            await sub.wait_stored()
            # Paid straight in the ledger (as if over Lightning): no NIP-47 call, no notification.
            customer = next(a for a, name, _ in wallet.ledger.accounts() if name == "customer")
            settled = wallet.ledger.settle(customer, invoice.payment_hash, now=time.time())
            async with asyncio.timeout(WAIT):
                receipt = await anext(sub)
    zap = verify_receipt(
        receipt,
        signer=server.nostr_pubkey,
        recipient=DVM.public_key,
        event_id=job.id,
        min_amount_msat=5_000,
    )
    assert (zap.payer, zap.paid_at) == (CUSTOMER.public_key, settled.settled_at)
    assert receipt.tag_value("preimage") == settled.preimage
    assert server.stats() == LnurlStats(1, 1, 0, 0)


async def test_plain_payments_commit_to_the_metadata_and_get_no_receipt(
    wallet: DevWallet, relay_url: str
) -> None:
    async with zap_server(wallet, relay_url) as (server, customer):
        info = await fetch_pay_info(f"{server.url}/.well-known/lnurlp/alice")
        entries = orjson.loads(info.metadata)
        assert ["text/identifier", server.address("alice")] in entries
        bolt = await fetch_invoice(info, 3_000)
        invoice = bolt11.decode(bolt)
        assert invoice.description_hash == hashlib.sha256(info.metadata.encode()).hexdigest()
        await customer.pay_invoice(bolt)
        assert server.stats() == LnurlStats(1, 0, 0, 0)


# -- the server under hostile requests --------------------------------------------------------


async def raw_get(base: str, request: bytes) -> tuple[int, dict[str, Any] | None]:
    """Send raw bytes to the server; its status and JSON body (status 0: no answer)."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            data = await reader.read()  # the server closes after its answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, None
    status = int(head.split()[1])
    return status, orjson.loads(body) if body.startswith(b"{") else None


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def nostr(event: Event | str) -> str:
    return quote(event if isinstance(event, str) else event.to_json(), safe="")


def hostile_requests() -> list[tuple[bytes, int, str]]:
    """(request, status, a word of the reason) for bad calls to the callback."""
    good = zap_request(CUSTOMER, recipient=DVM.public_key, amount_msat=21_000, relays=["wss://r"])
    forged = {**good.to_dict(), "content": "changed"}
    note = sign_event(CUSTOMER, kind=1, tags=good.tags)
    cb = "/lnurlp/dvm/callback"
    return [
        (get(f"{cb}?amount=abc"), 200, "amount"),
        (get(f"{cb}"), 200, "amount"),
        (get(f"{cb}?amount=-5"), 200, "amount"),
        (get(f"{cb}?amount=999"), 200, "within"),
        (get(f"{cb}?amount=200000000000"), 200, "within"),
        (get(f"{cb}?amount={'9' * 40}"), 200, "amount"),
        (get(f"{cb}?amount=21000&amount=5"), 200, "more than once"),
        (get(f"{cb}?amount=21000&&&"), 200, "malformed"),
        (get(f"{cb}?amount=21000&nostr=%FF%FE"), 200, "malformed"),
        (get(f"{cb}?{'&'.join(f'x{i}=1' for i in range(20))}"), 200, "malformed"),
        (get(f"{cb}?amount=21000&nostr=%7B"), 200, "zap request"),
        (get(f"{cb}?amount=21000&nostr=%5B%5D"), 200, "zap request"),
        (get(f"{cb}?amount=21000&nostr={nostr(orjson.dumps(forged).decode())}"), 200, "id"),
        (get(f"{cb}?amount=21000&nostr={nostr(note)}"), 200, "9734"),
        (get(f"{cb}?amount=22000&nostr={nostr(good)}"), 200, "21000"),
        (get(f"{cb}?amount=21000&nostr={'a' * 5000}"), 200, "over 4096"),
        (get(f"{cb}?amount=21000&nostr={'a' * 9000}"), 414, ""),
        (get("/lnurlp/dvm/other?amount=21000"), 404, "not found"),
        (get("/.well-known/lnurlp/UPPER"), 404, "not found"),
        (get("/.well-known/lnurlp/" + "a" * 65), 404, "not found"),
        (get("/"), 404, "not found"),
        (b"POST /lnurlp/dvm/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "GET"),
        (b"POST /lnurlp/dvm/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", 0, ""),
        (b"GET /lnurlp/dvm/callback HTTP/2\r\n\r\n", 0, ""),
        (b"\x16\x03\x01\x02\x00garbage, not HTTP\r\n\r\n", 0, ""),
    ]


async def test_hostile_requests_get_lnurl_errors_and_the_server_keeps_serving(
    wallet: DevWallet, relay_url: str
) -> None:
    cases = hostile_requests()
    async with zap_server(wallet, relay_url) as (server, _):
        for raw, status, word in cases:
            got_status, body = await raw_get(server.url, raw)
            assert got_status == status, raw[:80]
            if status in (200, 404, 405):
                assert body is not None
                assert body["status"] == "ERROR"
                assert word in body["reason"], (raw[:80], body["reason"])
        refused = sum(status == 200 for _, status, _ in cases)
        assert server.stats() == LnurlStats(0, 0, refused, 0)
        # Still serving: a good zap gets an invoice.
        info = await fetch_pay_info(server.address())
        request = zap_request(
            CUSTOMER, recipient=DVM.public_key, amount_msat=21_000, relays=["wss://r"]
        )
        assert bolt11.decode(await fetch_invoice(info, 21_000, zap_request=request))
        assert server.stats() == LnurlStats(1, 0, refused, 1)


async def test_a_wallet_that_does_not_answer_gets_an_error_not_a_hang(
    wallet: DevWallet, relay_url: str
) -> None:
    silent = DevWallet(relays=[relay_url])  # never started: nobody answers its accounts
    try:
        uri = silent.create_account()
        async with (
            NWCClient(uri, timeout=0.5) as unanswered,
            LnurlServer(wallet=unanswered, keys=Keys.generate(), relays=[relay_url]) as server,
        ):
            info = await fetch_pay_info(server.address())
            with pytest.raises(LnurlError, match="could not make an invoice"):
                await fetch_invoice(info, 21_000)
            assert server.stats().refused == 1
    finally:
        silent.ledger.close()


# -- the client under hostile answers ---------------------------------------------------------

#: (base URL, path, query) -> (status, body)
Route = Callable[[str, str, dict[str, str]], tuple[int, bytes]]


@contextlib.asynccontextmanager
async def canned(route: Route) -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback answering with ``route(base, path, query)``; the hits."""
    hits: list[str] = []
    base = ""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            hits.append(target)
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, body = route(base, parts.path, query)
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, len(body), body)
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield base, hits


def pay_request(base: str, **changes: Any) -> bytes:
    data = {
        "tag": "payRequest",
        "callback": f"{base}/cb",
        "minSendable": 1_000,
        "maxSendable": 100_000_000,
        "metadata": METADATA,
        "allowsNostr": True,
        "nostrPubkey": SERVER_PUB,
    }
    data.update(changes)
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"tag": "withdrawRequest"}, "payRequest"),
        ({"tag": ...}, "payRequest"),
        ({"callback": "http://example.com/cb"}, "https"),
        ({"callback": "ftp://127.0.0.1/cb"}, "https"),
        ({"callback": "https://example.com:99999/cb"}, "does not parse"),
        ({"callback": 5}, "callback"),
        ({"minSendable": 0}, "minSendable"),
        ({"minSendable": 5_000, "maxSendable": 1_000}, "min <= max"),
        ({"minSendable": 1000.0}, "integers"),
        ({"minSendable": True}, "integers"),
        ({"maxSendable": "100000"}, "integers"),
        ({"metadata": "not json"}, "metadata"),
        ({"metadata": '[["text/html","<b>"]]'}, "text/plain"),
        ({"metadata": [["text/plain", "x"]]}, "metadata"),
        ({"metadata": orjson.dumps([["text/plain", "x" * 20_000]]).decode()}, "metadata"),
        ({"allowsNostr": "true"}, "boolean"),
        ({"nostrPubkey": ...}, "nostrPubkey"),
        ({"nostrPubkey": SERVER_PUB.upper()}, "nostrPubkey"),
        ({"nostrPubkey": "npub1xyz"}, "nostrPubkey"),
    ],
)
async def test_client_refuses_a_bad_pay_request(changes: dict[str, Any], word: str) -> None:
    async with canned(lambda base, path, q: (200, pay_request(base, **changes))) as (base, _):
        with pytest.raises(LnurlError, match=word):
            await fetch_pay_info(f"dvm@{base.removeprefix('http://')}")


@pytest.mark.parametrize(
    ("status", "body", "word"),
    [
        (200, b"<html>hello</html>", "not JSON"),
        (200, b'["payRequest"]', "JSON object"),
        (200, b"{" + b" " * 70_000 + b"}", "too large"),
        (500, b'{"status":"ERROR","reason":"down"}', "HTTP 500"),
        (404, b"", "HTTP 404"),
        (200, b'{"status":"ERROR"}', "no reason given"),
    ],
)
async def test_client_refuses_bad_answers(status: int, body: bytes, word: str) -> None:
    async with canned(lambda base, path, q: (status, body)) as (base, _):
        with pytest.raises(LnurlError, match=word):
            await fetch_pay_info(f"{base}/.well-known/lnurlp/dvm")


async def test_an_error_reason_is_shortened_and_made_printable() -> None:
    reason = "no\x1b[31m" + "x" * 1000
    body = orjson.dumps({"status": "ERROR", "reason": reason})
    async with canned(lambda base, path, q: (200, body)) as (base, _):
        with pytest.raises(LnurlError) as caught:
            await fetch_pay_info(f"{base}/x")
    message = str(caught.value)
    assert "refused: no?[31m" in message
    assert message.endswith("x…")
    assert len(message) < 300


@pytest.mark.parametrize(
    "address",
    ["nobody", "Bob@127.0.0.1", "a@b@c", "a@127.0.0.1:99999", "a@", "a@:80", "ftp://x/y"],
)
async def test_client_refuses_malformed_addresses(address: str) -> None:
    with pytest.raises(LnurlError):
        await fetch_pay_info(address)


async def test_a_non_loopback_address_uses_https_and_an_unreachable_one_fails() -> None:
    # Port 9 on loopback: nothing listens, so this fails fast with the URL in the message.
    with pytest.raises(LnurlError, match=r"http://127\.0\.0\.1:9/\.well-known/lnurlp/dvm"):
        await fetch_pay_info("dvm@127.0.0.1:9", timeout=2)
    with pytest.raises(LnurlError, match="https://"):
        await fetch_pay_info("http://example.invalid/.well-known/lnurlp/dvm")


def invoice_for(
    query: dict[str, str], *, amount: int | None = None, text: str | None = None
) -> str:
    committed = text if text is not None else query.get("nostr", METADATA)
    return bolt11.encode(
        NODE_KEY,
        payment_hash=bytes(32),
        amount_msat=amount or int(query["amount"]),
        description_hash=hashlib.sha256(committed.encode()).digest(),
    )


def callbacks(base: str, path: str, query: dict[str, str]) -> tuple[int, bytes]:
    """A canned LNURL service: the address's name says how its callback misbehaves."""
    if path.startswith("/.well-known/"):
        return 200, pay_request(base, callback=base + path.replace("/.well-known", ""))
    mode = path.rsplit("/", 1)[-1]
    answers: dict[str, Any] = {
        "good": {"pr": invoice_for(query), "routes": []},
        "refuse": {"status": "ERROR", "reason": "amount too small for this DVM"},
        "no-pr": {"routes": []},
        "garbage": {"pr": "lnbcrt1notaninvoice"},
        "amount": {"pr": invoice_for(query, amount=int(query["amount"]) + 1000)},
        "hash": {"pr": invoice_for(query, text=METADATA + " ")},
        "metadata": {"pr": invoice_for(query, text=METADATA)},
    }
    return 200, orjson.dumps(answers[mode])


def callback_server() -> contextlib.AbstractAsyncContextManager[tuple[str, list[str]]]:
    return canned(callbacks)


async def info_for(base: str, mode: str) -> PayInfo:
    return await fetch_pay_info(f"{mode}@{base.removeprefix('http://')}")


async def test_client_sends_the_zap_and_checks_the_invoice_commits_to_it() -> None:
    request = zap_request(
        CUSTOMER, recipient=DVM.public_key, amount_msat=21_000, relays=["wss://r"], lnurl="lnurl1x"
    )
    async with callback_server() as (base, hits):
        info = await info_for(base, "good")
        assert info == PayInfo(
            f"{base}/lnurlp/good", 1_000, 100_000_000, METADATA, True, SERVER_PUB
        )
        bolt = await fetch_invoice(info, 21_000, zap_request=request)
    sent = parse_qs(urlsplit(hits[-1]).query)
    assert sent == {"amount": ["21000"], "nostr": [request.to_json()], "lnurl": ["lnurl1x"]}
    assert (
        bolt11.decode(bolt).description_hash
        == hashlib.sha256(request.to_json().encode()).hexdigest()
    )


@pytest.mark.parametrize(
    ("mode", "zap", "word"),
    [
        ("refuse", False, "refused: amount too small for this DVM"),
        ("no-pr", False, "no 'pr'"),
        ("garbage", False, "does not decode"),
        ("amount", False, "is for 22000 msat"),
        ("hash", False, "description hash"),
        ("metadata", True, "description hash"),  # a plain invoice handed out for a zap
    ],
)
async def test_client_refuses_bad_invoices(mode: str, zap: bool, word: str) -> None:
    request = zap_request(
        CUSTOMER, recipient=DVM.public_key, amount_msat=21_000, relays=["wss://r"]
    )
    async with callback_server() as (base, _):
        info = await info_for(base, mode)
        with pytest.raises(LnurlError, match=word):
            await fetch_invoice(info, 21_000, zap_request=request if zap else None)


async def test_client_refuses_before_asking_when_it_can() -> None:
    request = zap_request(
        CUSTOMER, recipient=DVM.public_key, amount_msat=21_000, relays=["wss://r"]
    )
    async with callback_server() as (base, hits):
        info = await info_for(base, "good")
        asked = len(hits)
        with pytest.raises(LnurlError, match="outside"):
            await fetch_invoice(info, 999)
        with pytest.raises(LnurlError, match="outside"):
            await fetch_invoice(info, 100_000_001)
        with pytest.raises(InvalidZap, match="amount"):
            await fetch_invoice(info, 5_000, zap_request=request)
        no_zaps = PayInfo(info.callback, 1_000, 100_000, METADATA, False, None)
        with pytest.raises(LnurlError, match="does not take zaps"):
            await fetch_invoice(no_zaps, 21_000, zap_request=request)
        assert len(hits) == asked
        # With a query string already in the callback, the amount is appended with '&'.
        odd = PayInfo(info.callback + "?id=7", 1_000, 100_000, METADATA, False, None)
        assert await fetch_invoice(odd, 2_000)
        assert hits[-1] == "/lnurlp/good?id=7&amount=2000"
