"""One handler served in both dialects, end to end, with nostr-sdk as the customer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import parse_request
from dvmkit.provider import DVM, Job, Limits
from dvmkit.relay.pool import RelayPool

from .conftest import FAST, Customer, customer_on, make_dvm, status_of


def shouter(relay: str, **kwargs: Any) -> tuple[DVM, list[str]]:
    """A DVM whose handler upper-cases its input, and a log of the calls."""
    dvm = make_dvm(relay, **kwargs)
    calls: list[str] = []

    @dvm.job
    async def shout(input: str, times: int = 1, sep: str = " ") -> str:
        calls.append(input)
        return sep.join([input.upper()] * times)

    return dvm, calls


async def test_modern_open_request_matched_by_category(relay_url: str, customer: Customer) -> None:
    dvm, _ = shouter(relay_url)
    async with dvm.running():
        request = await customer.request(
            25000,
            content="hello",
            tags=[["category", "text"], ["t", "text"], ["param", "times", "2"]],
        )
        result = await customer.final(request.id)
    assert result.kind == 25000
    assert result.pubkey == dvm.public_key
    assert result.content == "HELLO HELLO"
    assert list(result.tags) == [
        ("e", request.id),
        ("p", customer.pubkey),
        ("category", "text"),
        ("status", "success"),
    ]


async def test_modern_targeted_request_needs_no_category(
    relay_url: str, customer: Customer
) -> None:
    dvm, _ = shouter(relay_url)
    async with dvm.running():
        request = await customer.request(
            25000,
            tags=[["p", dvm.public_key], ["i", "targeted", "text"]],
        )
        result = await customer.final(request.id)
    assert result.content == "TARGETED"
    assert result.tag_value("status") == "success"
    assert result.tag("category") is None  # the request named none


async def test_open_request_in_another_category_is_ignored(
    relay_url: str, customer: Customer
) -> None:
    dvm, calls = shouter(relay_url)
    async with dvm.running():
        other = await customer.request(25000, content="images", tags=[["t", "image"]])
        # Reaches the DVM through its #t filter, but the category it names is not served.
        mixed = await customer.request(
            25000, content="mixed", tags=[["category", "image"], ["t", "text"]]
        )
        valid = await customer.request(25000, content="text", tags=[["t", "text"]])
        await customer.final(valid.id)
        # The DVM reads its subscription in order: the later answer proves the earlier
        # requests were read, and ignored.
        assert customer.answers(other.id) == []
        assert customer.answers(mixed.id) == []
        assert calls == ["text"]
        assert dvm.stats().ignored == 1


async def test_legacy_5050_result_has_nip90_tags(relay_url: str, customer: Customer) -> None:
    dvm, _ = shouter(relay_url)
    async with dvm.running():
        request = await customer.request(
            5050,
            tags=[["i", "legacy hi", "text"], ["param", "times", "2"], ["param", "sep", "-"]],
        )
        result = await customer.final(request.id)
    # NIP-90: result kind = request kind + 1000; tags request, e, i (each input), p.
    assert result.kind == 6050
    assert result.content == "LEGACY HI-LEGACY HI"
    assert list(result.tags) == [
        ("request", request.to_json()),
        ("e", request.id),
        ("i", "legacy hi", "text"),
        ("p", customer.pubkey),
    ]
    embedded = parse_request(type(request).from_json(result.tag_value("request") or ""))
    assert embedded.id == request.id


async def test_legacy_5002_style_request(relay_url: str, customer: Customer) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def translate(input: str, language: str) -> str:
        return f"[{language}] {input}"

    async with dvm.running():
        request = await customer.request(
            5002,
            tags=[
                ["i", "good morning", "text"],
                ["param", "language", "es"],
                ["output", "text/plain"],
            ],
        )
        result = await customer.final(request.id)
    assert result.kind == 6002
    assert result.content == "[es] good morning"
    assert [t[0] for t in result.tags] == ["request", "e", "i", "p"]
    assert result.tag("i") == ("i", "good morning", "text")


async def test_legacy_request_for_another_provider_is_ignored(
    relay_url: str, customer: Customer
) -> None:
    dvm, calls = shouter(relay_url)
    elsewhere = Keys.generate().public_key
    async with dvm.running():
        other = await customer.request(5050, tags=[["i", "not mine", "text"], ["p", elsewhere]])
        mine = await customer.request(
            5050,
            tags=[["i", "mine", "text"], ["p", elsewhere], ["p", dvm.public_key]],
        )
        result = await customer.final(mine.id)
        assert result.content == "MINE"
        assert customer.answers(other.id) == []
        assert calls == ["mine"]
        assert dvm.stats().ignored == 1


async def test_result_also_goes_to_the_requests_relays(relay_url: str, our_relay_url: str) -> None:
    """The DVM listens on one relay; the request asks for the answer on another."""
    dvm, _ = shouter(our_relay_url)
    async with dvm.running(), customer_on(our_relay_url) as customer:
        request = await customer.request(
            5050, tags=[["i", "over there", "text"], ["relays", relay_url]]
        )
        await customer.final(request.id)
        async with RelayPool(relays=[relay_url]) as pool:
            stored = await pool.fetch({"kinds": [6050], "#e": [request.id]}, timeout=5)
    assert [e.content for e in stored] == ["OVER THERE"]


async def test_progress_and_partial_reach_the_customer_in_both_dialects(
    relay_url: str, customer: Customer
) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def chatty(input: str, job: Job) -> str:
        assert job.customer == customer.pubkey
        await job.progress("warming up")
        await job.partial("first half", "half done")
        return "whole"

    async with dvm.running():
        modern = await customer.request(25000, content="x", tags=[["t", "text"]])
        legacy = await customer.request(5050, tags=[["i", "x", "text"]])
        for request in (modern, legacy):
            await customer.final(request.id)
            answers = customer.answers(request.id)
            assert [status_of(e) for e in answers] == ["processing", "partial", "success"]
            processing, partial, result = answers
            assert processing.tag("status") == ("status", "processing", "warming up")
            assert partial.tag("status") == ("status", "partial", "half done")
            assert partial.content == "first half"
            assert result.content == "whole"
    assert {e.kind for e in customer.answers(legacy.id)} == {7000, 6050}
    assert {e.kind for e in customer.answers(modern.id)} == {25000}


async def test_async_jobs_run_at_once(relay_url: str, customer: Customer) -> None:
    n = 6
    dvm = make_dvm(relay_url, limits=Limits(concurrency=n, processing_notice=5.0))
    started: list[str] = []
    everyone_in = asyncio.Event()

    @dvm.job
    async def gather(input: str) -> str:
        started.append(input)
        if len(started) == n:
            everyone_in.set()
        # Only returns once all n are inside the handler at the same time.
        await everyone_in.wait()
        return input

    async with dvm.running():
        requests = [
            await customer.request(25000, content=str(i), tags=[["t", "text"]]) for i in range(n)
        ]
        results = [await customer.final(r.id) for r in requests]
    assert [r.content for r in results] == [str(i) for i in range(n)]
    assert sorted(started) == [str(i) for i in range(n)]


async def test_plain_function_handlers_run_in_threads_concurrently(
    relay_url: str, customer: Customer
) -> None:
    dvm = make_dvm(relay_url)
    barrier = threading.Barrier(2, timeout=10)
    threads: set[int] = set()

    @dvm.job
    def blocking(input: str) -> str:
        threads.add(threading.get_ident())
        barrier.wait()  # both calls must be in their threads at once to pass
        return input[::-1]

    async with dvm.running():
        first = await customer.request(25000, content="abc", tags=[["t", "text"]])
        second = await customer.request(5050, tags=[["i", "xyz", "text"]])
        assert (await customer.final(first.id)).content == "cba"
        assert (await customer.final(second.id)).content == "zyx"
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_stats_count_done_failed_rejected(relay_url: str, customer: Customer) -> None:
    dvm = make_dvm(relay_url, limits=FAST)

    @dvm.job
    async def picky(input: str, n: int = 0) -> str:
        if input == "fail":
            raise RuntimeError("boom")
        return input

    async with dvm.running():
        assert dvm.stats().done == 0
        ok = await customer.request(25000, content="fine", tags=[["t", "text"]])
        await customer.final(ok.id)
        bad = await customer.request(25000, content="fail", tags=[["t", "text"]])
        await customer.final(bad.id)
        rejected = await customer.request(
            25000, content="x", tags=[["t", "text"], ["param", "n", "many"]]
        )
        await customer.final(rejected.id)
        stats = dvm.stats()
    assert (stats.done, stats.failed, stats.rejected, stats.cancelled) == (1, 1, 1, 0)
    assert (stats.running, stats.queued) == (0, 0)
    assert stats.latency_p50_ms is not None
