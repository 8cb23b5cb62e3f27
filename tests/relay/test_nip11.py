"""NIP-11 documents: parsing sloppy input, and fetching over real HTTP from local servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
import pytest

from dvmkit.errors import ProtocolError, RelayError
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.nip11 import Limitation, fetch_relay_info, http_url, parse_relay_info

DOC = {
    "name": "relay",
    "supported_nips": [1, 11, 42, "x"],
    "software": "test",
    "limitation": {"max_message_length": 1000, "max_subscriptions": 3, "auth_required": True},
}
Responder = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def http_server(respond: Responder) -> AsyncIterator[str]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        try:
            await respond(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
    assert all(b"Accept: application/nostr+json" in r for r in requests)


def reply(head: str, body: bytes) -> Responder:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()

    return respond


def test_parse_full_document() -> None:
    info = parse_relay_info(orjson.dumps(DOC))
    assert info.name == "relay"
    assert info.software == "test"
    assert info.supported_nips == (1, 11, 42)
    assert info.supports(42)
    assert not info.supports(50)
    assert info.limitation == Limitation(
        max_message_length=1000, max_subscriptions=3, auth_required=True
    )


def test_wrong_types_count_as_absent() -> None:
    raw = {
        "name": 5,
        "supported_nips": "all",
        "limitation": {"max_limit": "10", "auth_required": 1},
    }
    info = parse_relay_info(orjson.dumps(raw))
    assert info.name is None
    assert info.supported_nips == ()
    assert info.limitation == Limitation()
    assert parse_relay_info(b'{"limitation": []}').limitation == Limitation()
    negative = parse_relay_info(b'{"limitation": {"max_limit": -1, "max_subscriptions": true}}')
    assert negative.limitation == Limitation()


def test_limitation_refusals_name_the_limit() -> None:
    keys = Keys.generate()
    lim = Limitation(
        max_message_length=100,
        max_event_tags=2,
        max_content_length=5,
        max_subscriptions=2,
        max_filters=3,
    )
    assert lim.refuse_message(b"x" * 100) == ""
    assert lim.refuse_message(b"x" * 101) == (
        "invalid: message of 101 bytes exceeds the relay's NIP-11 limit 100"
    )
    tags = [["t", "a"], ["t", "b"], ["t", "c"]]
    assert lim.refuse_event(sign_event(keys, kind=1, content="12345", tags=tags[:2])) == ""
    assert lim.refuse_event(sign_event(keys, kind=1, content="", tags=tags)) == (
        "invalid: 3 tags exceed the relay's limit 2"
    )
    assert lim.refuse_event(sign_event(keys, kind=1, content="123456")) == (
        "invalid: content exceeds the relay's limit 5"
    )
    assert lim.refuse_req(open_subscriptions=1, filters=3) == ""
    assert lim.refuse_req(open_subscriptions=2, filters=1) == (
        "dvmkit: relay allows 2 subscriptions (NIP-11)"
    )
    assert lim.refuse_req(open_subscriptions=0, filters=4) == (
        "dvmkit: relay allows 3 filters per REQ (NIP-11)"
    )
    # A limitation that says nothing refuses nothing.
    silent = Limitation()
    assert silent.refuse_message(b"x" * 10_000_000) == ""
    assert silent.refuse_event(sign_event(keys, kind=1, content="x" * 1000, tags=tags)) == ""
    assert silent.refuse_req(open_subscriptions=10_000, filters=10_000) == ""


def test_cap_limits_lowers_only_larger_limits() -> None:
    filters = (Filter.build(kinds=[1], limit=500), Filter.build(limit=3), Filter.build(kinds=[2]))
    capped = Limitation(max_limit=10).cap_limits(filters)
    assert [f.limit for f in capped] == [10, 3, None]
    assert capped[0].kinds == frozenset({1})
    assert Limitation().cap_limits(filters) is filters


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b"{", b"\xff", b"[" * 10_000])
def test_not_an_object_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_relay_info(raw)


@pytest.mark.parametrize(
    ("ws", "http"),
    [
        ("ws://127.0.0.1:7777", "http://127.0.0.1:7777"),
        ("wss://relay.example.com/path", "https://relay.example.com/path"),
        ("WSS://relay.example.com", "https://relay.example.com"),
        ("http://x.example", "http://x.example"),
    ],
)
def test_http_url(ws: str, http: str) -> None:
    assert http_url(ws) == http


@pytest.mark.parametrize("bad", ["ftp://x", "ws://", "not a url"])
def test_http_url_rejects_other_schemes(bad: str) -> None:
    with pytest.raises(RelayError):
        http_url(bad)


async def test_fetch_with_content_length() -> None:
    body = orjson.dumps(DOC)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\nContent-Length: {len(body)}"
    async with http_server(reply(head, body)) as url:
        info = await fetch_relay_info(url)
    assert info.name == "relay"
    assert info.limitation.max_subscriptions == 3


async def test_fetch_chunked() -> None:
    body = orjson.dumps(DOC)
    chunks = b"".join(
        f"{len(body[i : i + 7]):x}\r\n".encode() + body[i : i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
    async with http_server(reply(head, chunks + b"0\r\n\r\n")) as url:
        assert (await fetch_relay_info(url)).name == "relay"


async def test_fetch_until_close() -> None:
    async with http_server(reply("HTTP/1.1 200 OK", orjson.dumps(DOC))) as url:
        assert (await fetch_relay_info(url)).software == "test"


@pytest.mark.parametrize(
    ("head", "body", "match"),
    [
        ("HTTP/1.1 404 Not Found\r\nContent-Length: 0", b"", "HTTP 404"),
        ("garbage", b"", "malformed HTTP status"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 99999999", b"{}", "too large"),
        ("HTTP/1.1 200 OK\r\nContent-Length: -5", b"{}", "bad length"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"zz\r\n", "chunk size"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", b"ffffff\r\n", "larger than"),
        ("HTTP/1.1 200 OK", b"x" * 300_000, "larger than"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 50", b"{}", "IncompleteRead"),
    ],
)
async def test_fetch_failures_are_relay_errors(head: str, body: bytes, match: str) -> None:
    async with http_server(reply(head, body)) as url:
        with pytest.raises(RelayError, match=match):
            await fetch_relay_info(url)


async def test_fetch_malformed_json_is_protocol_error() -> None:
    async with http_server(reply("HTTP/1.1 200 OK", b"<html>")) as url:
        with pytest.raises(ProtocolError, match="not JSON"):
            await fetch_relay_info(url)


async def test_fetch_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with http_server(silent) as url:
        with pytest.raises(RelayError, match="timed out"):
            await fetch_relay_info(url, timeout=0.2)


async def test_fetch_oversized_headers() -> None:
    head = "HTTP/1.1 200 OK\r\nX-Junk: " + "a" * 100_000
    async with http_server(reply(head, b"{}")) as url:
        with pytest.raises(RelayError):
            await fetch_relay_info(url)


async def test_local_relay_serves_no_document(local_relay: str) -> None:
    with pytest.raises(RelayError):
        await fetch_relay_info(local_relay)


async def test_our_relay_document() -> None:
    from dvmkit.relay.server import Relay

    async with Relay(port=0) as relay:
        info = await fetch_relay_info(relay.url)
    assert info.supports(11)
    assert info.supports(42)
    assert info.limitation.max_message_length is not None
