"""Every error code the framework produces, in each dialect's wire form."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.provider import DVM, Limits

from .conftest import Customer, customer_on, error_of, make_dvm

DIALECTS = ["modern", "legacy"]


async def send(
    customer: Customer, dialect: str, text: str | None, extra: Sequence[Sequence[str]] = ()
) -> Event:
    """A request in ``dialect`` whose input is ``text`` (none when None)."""
    if dialect == "modern":
        return await customer.request(
            25000, content=text or "", tags=[["t", "text"], ["category", "text"], *extra]
        )
    inputs = [] if text is None else [["i", text, "text"]]
    return await customer.request(5050, tags=[*inputs, *extra])


async def error(customer: Customer, request: Event) -> tuple[str, str]:
    answer = await customer.final(request.id)
    if request.kind == 25000:
        assert answer.kind == 25000
        assert [t[0] for t in answer.tags] == ["e", "p", "category", "status"]
    else:
        # NIP-90 feedback: kind 7000 with status, e and p.
        assert answer.kind == 7000
        assert [t[0] for t in answer.tags] == ["status", "e", "p"]
    assert answer.tag_value("e") == request.id
    assert answer.tag_value("p") == customer.pubkey
    return error_of(answer)


def echo_dvm(relay: str, **kwargs: object) -> DVM:
    dvm = make_dvm(relay, **kwargs)

    @dvm.job
    async def echo(input: str, times: int = 1, mode: str | None = None) -> str:
        return input * times

    return dvm


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_bad_request_for_a_malformed_input_tag(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    async with echo_dvm(relay_url).running():
        request = await send(customer, dialect, "x", [["i", ""]])
        code, message = await error(customer, request)
    assert code == "BAD_REQUEST"
    assert "has no data" in message


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_bad_request_when_the_input_is_missing(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    async with echo_dvm(relay_url).running():
        request = await send(customer, dialect, None)
        code, message = await error(customer, request)
    assert code == "BAD_REQUEST"
    assert "needs an input" in message


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_invalid_parameter(relay_url: str, customer: Customer, dialect: str) -> None:
    async with echo_dvm(relay_url).running():
        wrong_type = await send(customer, dialect, "x", [["param", "times", "twice"]])
        unknown = await send(customer, dialect, "x", [["param", "colour", "red"]])
        assert await error(customer, wrong_type) == (
            "INVALID_PARAMETER",
            "param 'times' must be an integer; got 'twice'",
        )
        code, message = await error(customer, unknown)
    assert code == "INVALID_PARAMETER"
    assert "unknown param 'colour'" in message
    assert "mode, times" in message  # says what it does accept


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_missing_parameter(relay_url: str, customer: Customer, dialect: str) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def translate(input: str, language: str) -> str:
        return input

    async with dvm.running():
        request = await send(customer, dialect, "hola")
        assert await error(customer, request) == (
            "MISSING_PARAMETER",
            "param 'language' is required",
        )
        assert dvm.stats().rejected == 1


def blocked_dvm(relay: str, limits: Limits) -> tuple[DVM, asyncio.Event, list[str]]:
    """A DVM whose jobs wait for ``release``; returns it, the event, and the inputs run."""
    dvm = make_dvm(relay, limits=limits)
    release = asyncio.Event()
    ran: list[str] = []

    @dvm.job
    async def wait(input: str) -> str:
        ran.append(input)
        await release.wait()
        return input

    return dvm, release, ran


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_rate_limited_when_the_queue_is_full(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    limits = Limits(concurrency=1, max_queue=1, processing_notice=5.0)
    dvm, release, ran = blocked_dvm(relay_url, limits)
    async with dvm.running():
        running = await send(customer, dialect, "one")
        queued = await send(customer, dialect, "two")
        refused = await send(customer, dialect, "three")
        code, message = await error(customer, refused)
        assert code == "RATE_LIMITED"
        assert "retry" in message
        assert customer.answers(running.id) == customer.answers(queued.id) == []
        release.set()
        assert (await customer.final(running.id)).content == "one"
        assert (await customer.final(queued.id)).content == "two"
        stats = dvm.stats()
    assert ran == ["one", "two"]  # the refused job never ran
    assert (stats.done, stats.rejected) == (2, 1)


async def test_rate_limited_per_customer(relay_url: str, customer: Customer) -> None:
    limits = Limits(concurrency=4, per_customer=1, processing_notice=5.0)
    dvm, release, ran = blocked_dvm(relay_url, limits)
    async with dvm.running(), customer_on(relay_url) as other:
        first = await send(customer, "modern", "first")
        second = await send(customer, "legacy", "second")
        code, message = await error(customer, second)
        assert code == "RATE_LIMITED"
        assert "at most 1 jobs per customer" in message
        # Another customer is not held back by the first one's limit.
        theirs = await send(other, "modern", "theirs")
        release.set()
        assert (await other.final(theirs.id)).content == "theirs"
        assert (await customer.final(first.id)).content == "first"
    assert sorted(ran) == ["first", "theirs"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_timeout_ends_a_job_that_runs_too_long(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    limits = Limits(job_timeout=0.2, processing_notice=5.0)
    dvm, _, ran = blocked_dvm(relay_url, limits)
    async with dvm.running():
        request = await send(customer, dialect, "slow")
        assert await error(customer, request) == ("TIMEOUT", "the job ran longer than 0.2 s")
        assert dvm.stats().failed == 1
    assert ran == ["slow"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_internal_error_hides_the_exception(
    relay_url: str, customer: Customer, dialect: str, caplog: pytest.LogCaptureFixture
) -> None:
    dvm = make_dvm(relay_url)
    secret = "db password is hunter2"

    @dvm.job
    async def broken(input: str) -> str:
        raise RuntimeError(secret)

    async with dvm.running():
        request = await send(customer, dialect, "x")
        code, message = await error(customer, request)
        answer = await customer.final(request.id)
    assert code == "INTERNAL_ERROR"
    assert message == "the DVM failed"
    wire = answer.to_json()
    assert "hunter2" not in wire
    assert "Traceback" not in wire
    assert "RuntimeError" not in wire
    # The operator still gets the traceback, in the DVM's own log.
    assert any(r.exc_info and secret in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_handler_job_error_passes_through(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def moderated(input: str) -> str:
        raise JobError("POLICY_VIOLATION", "this DVM does not shout at people")

    async with dvm.running():
        request = await send(customer, dialect, "x")
        assert await error(customer, request) == (
            "POLICY_VIOLATION",
            "this DVM does not shout at people",
        )
