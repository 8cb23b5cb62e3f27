"""Inputs end to end: text, urls from a local HTTP server, events, and chained jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import pytest

from dvmkit.provider import DVM, Limits

from .conftest import FAST, Customer, customer_on, error_of, make_dvm

Route = tuple[int, Mapping[str, str], bytes]


@contextlib.asynccontextmanager
async def http_server(routes: Mapping[str, Route]) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server on 127.0.0.1 answering each path from ``routes``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            status, headers, body = routes.get(path, (404, {}, b"no such page"))
            lines = [f"HTTP/1.1 {status} X", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if "Transfer-Encoding" not in headers:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on an oversized body
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


def echo_dvm(relay: str | list[str], limits: Limits = FAST) -> DVM:
    dvm = make_dvm(relay, limits=limits)

    @dvm.job
    async def upper(inputs: list[str]) -> str:
        return "|".join(i.upper() for i in inputs)

    return dvm


async def test_text_inputs_from_i_tags_in_both_dialects(relay_url: str, customer: Customer) -> None:
    async with echo_dvm(relay_url).running():
        modern = await customer.request(
            25000,
            content="ignored when there are i tags",
            tags=[["t", "text"], ["i", "one", "text"], ["i", "two", "text"]],
        )
        legacy = await customer.request(5050, tags=[["i", "three", "text"], ["i", "four"]])
        content = await customer.request(25000, content="from content", tags=[["t", "text"]])
        assert (await customer.final(modern.id)).content == "ONE|TWO"
        assert (await customer.final(legacy.id)).content == "THREE|FOUR"
        assert (await customer.final(content.id)).content == "FROM CONTENT"


async def test_url_inputs(relay_url: str, customer: Customer) -> None:
    cap = 1024
    routes: dict[str, Route] = {
        "/text": (200, {"Content-Type": "text/plain"}, b"fetched text"),
        "/moved": (302, {"Location": "/text"}, b""),
        "/big": (200, {}, b"x" * (cap + 1)),
        "/big-chunked": (
            200,
            {"Transfer-Encoding": "chunked"},
            b"".join(b"%x\r\n%s\r\n" % (512, b"y" * 512) for _ in range(3)) + b"0\r\n\r\n",
        ),
        "/binary": (200, {}, b"\xff\xfe\x00"),
    }
    limits = Limits(max_input_bytes=cap, input_timeout=5.0, processing_notice=5.0)
    async with http_server(routes) as base, echo_dvm(relay_url, limits).running():
        sent = {
            path: await customer.request(5050, tags=[["i", base + path, "url"]])
            for path in ["/text", "/moved", "/big", "/big-chunked", "/missing", "/binary"]
        }
        assert (await customer.final(sent["/text"].id)).content == "FETCHED TEXT"
        # A redirect is followed.
        assert (await customer.final(sent["/moved"].id)).content == "FETCHED TEXT"
        for path, reason in [
            ("/big", "too large"),
            ("/big-chunked", f"larger than {cap} bytes"),
            ("/missing", "HTTP 404"),
            ("/binary", "is not UTF-8 text"),
        ]:
            code, message = error_of(await customer.final(sent[path].id))
            assert code == "BAD_REQUEST", path
            assert message.startswith("input 1: "), message
            assert reason in message, message


async def test_event_input_is_read_from_the_relay(relay_url: str, customer: Customer) -> None:
    note = customer.sign(1, content="a note to summarise")
    await customer.publish(note)
    missing = customer.sign(1, content="never published")
    async with echo_dvm(relay_url).running():
        found = await customer.request(5050, tags=[["i", note.id, "event"]])
        lost = await customer.request(25000, tags=[["t", "text"], ["i", missing.id, "event"]])
        assert (await customer.final(found.id)).content == "A NOTE TO SUMMARISE"
        code, message = error_of(await customer.final(lost.id))
    assert code == "BAD_REQUEST"
    assert message == f"input 1: event {missing.id} was not found"


async def test_event_input_is_read_from_the_relay_it_names(
    relay_url: str, our_relay_url: str
) -> None:
    """The note is only on a relay the DVM does not use; the input's relay hint names it."""
    async with customer_on(our_relay_url) as elsewhere:
        note = elsewhere.sign(1, content="stored elsewhere")
        await elsewhere.publish(note)
    async with customer_on(relay_url) as customer, echo_dvm(relay_url).running():
        request = await customer.request(5050, tags=[["i", note.id, "event", our_relay_url]])
        assert (await customer.final(request.id)).content == "STORED ELSEWHERE"
        # A hint that is no relay URL at all is no reason to fail otherwise.
        for hint in ("ws://127.0.0.1:99999", "https://example.invalid", "ws://"):
            lost = await customer.request(5050, tags=[["i", "0" * 64, "event", hint]])
            code, message = error_of(await customer.final(lost.id))
            assert (code, message) == ("BAD_REQUEST", f"input 1: event {'0' * 64} was not found")


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_chained_job_uses_an_earlier_result(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    kind, topic = (25000, [["t", "text"]]) if dialect == "modern" else (5050, [])
    async with echo_dvm(relay_url).running():
        first = await customer.request(kind, tags=[*topic, ["i", "first", "text"]])
        assert (await customer.final(first.id)).content == "FIRST"
        second = await customer.request(
            kind, tags=[*topic, ["i", first.id, "job"], ["i", "then", "text"]]
        )
        assert (await customer.final(second.id)).content == "FIRST|THEN"


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_chained_job_waits_for_the_earlier_one(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    kind, topic = (25000, [["t", "text"]]) if dialect == "modern" else (5050, [])
    async with echo_dvm(relay_url).running():
        # Signed first so its id is known, sent only after the job that depends on it.
        first = customer.sign(kind, tags=[*topic, ["i", "early", "text"]])
        second = await customer.request(kind, tags=[*topic, ["i", first.id, "job"]])
        await customer.publish(first)
        assert (await customer.final(second.id)).content == "EARLY"
        assert (await customer.final(first.id)).content == "EARLY"


async def test_chained_job_without_a_result_is_a_bad_request(
    relay_url: str, customer: Customer
) -> None:
    limits = Limits(job_input_wait=0.3, processing_notice=5.0)
    never = customer.sign(5050, tags=[["i", "never sent", "text"]])
    async with echo_dvm(relay_url, limits).running():
        request = await customer.request(5050, tags=[["i", never.id, "job"]])
        code, message = error_of(await customer.final(request.id))
    assert code == "BAD_REQUEST"
    assert message == (
        f"input 1: no result for job {never.id} arrived within 0.3 s; "
        "send the request again once that job has finished"
    )
