"""End-to-end fixtures for the provider: real relays, a nostr-sdk customer, DVMs in-process.

Every test runs against dvmkit's own relay and against nostr-sdk's ``LocalRelay`` (the
``relay_url`` fixture is parametrized), and talks to the DVM as a customer built on nostr-sdk
0.45: requests are built and signed by nostr-sdk, sent and received by ``nostr_sdk.Client``,
and every answer is verified by nostr-sdk before our own parser reads it, so an independent
implementation checks the wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import nostr_sdk
import pytest

from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import FEEDBACK_KIND, MODERN_KIND
from dvmkit.provider import DVM, Limits

#: How long a test waits for an answer that must come (a failure, not a pace).
WAIT = 10.0
#: Fast defaults for tests: a processing notice only for jobs that really wait.
FAST = Limits(processing_notice=5.0, input_timeout=5.0, job_input_wait=5.0)


def make_dvm(relay: str | Sequence[str], **kwargs: Any) -> DVM:
    """A DVM for tests: in-memory store, fresh keys, text category, legacy 5050 and 5002."""
    relays = [relay] if isinstance(relay, str) else list(relay)
    options: dict[str, Any] = {
        "name": "Test DVM",
        "about": "answers tests",
        "picture": "https://example.invalid/dvm.png",
        "categories": ["text"],
        "legacy_kinds": [5050, 5002],
        "relays": relays,
        "limits": FAST,
    }
    options.update(kwargs)
    return DVM(**options)


def status_of(event: Event) -> str | None:
    """The status an answer announces; a legacy result reads as ``success``."""
    if 6000 <= event.kind <= 6999:
        return "success"
    if event.kind in (FEEDBACK_KIND, MODERN_KIND):
        return event.tag_value("status")
    return None


def is_final(event: Event) -> bool:
    return status_of(event) in ("success", "error", "cancelled")


def error_of(event: Event) -> tuple[str, str]:
    """``(code, message)`` of an error answer in either dialect, as each dialect writes it."""
    tag = event.tag("status")
    assert tag is not None, event.tags
    assert tag[1] == "error", event.tags
    if event.kind == MODERN_KIND:
        # Modern (nips PR #1941): ["status", "error", CODE, message].
        assert len(tag) == 4, tag
        return tag[2], tag[3]
    # Legacy NIP-90 keeps its three-element form: ["status", "error", "CODE: message"].
    assert len(tag) == 3, tag
    code, sep, message = tag[2].partition(": ")
    assert sep, tag
    return code, message


class Customer:
    """A customer built on nostr-sdk: signs with nostr-sdk, sends and listens with its Client.

    Answers are collected by the request id in their ``e`` tags; tests wait on them with
    :meth:`wait` (a condition, never a sleep).
    """

    def __init__(self, relays: Sequence[str], keys: Keys | None = None) -> None:
        self.keys = keys or Keys.generate()
        self.sdk_keys = nostr_sdk.Keys.parse(self.keys.secret_hex())
        self.pubkey = self.keys.public_key
        self.relays = list(relays)
        self.client = nostr_sdk.Client()
        self._answers: dict[str, list[Event]] = {}
        self._seen: set[str] = set()
        self._changed = asyncio.Condition()

    async def start(self, tg: asyncio.TaskGroup) -> None:
        for url in self.relays:
            await self.client.add_relay(nostr_sdk.RelayUrl.parse(url))
        await self.client.try_connect(timedelta(seconds=WAIT))
        stream = self.client.notifications()
        tg.create_task(self._read(stream))
        me = nostr_sdk.PublicKey.parse(self.pubkey)
        await self.client.subscribe(nostr_sdk.ReqTarget.auto([nostr_sdk.Filter().pubkey(me)]))

    async def _read(self, stream: Any) -> None:
        # The stream ends (None or SHUTDOWN) when the client shuts down.
        while (note := await stream.next()) is not None and not note.is_shutdown():
            if not note.is_new_event():
                continue
            theirs = note.event
            assert theirs.verify(), theirs.as_json()
            event = Event.from_json(theirs.as_json())
            if event.id in self._seen:
                continue
            self._seen.add(event.id)
            for target in dict.fromkeys(event.tag_values("e")):
                self._answers.setdefault(target, []).append(event)
            async with self._changed:
                self._changed.notify_all()

    # -- sending -------------------------------------------------------------------------------

    def sign(
        self,
        kind: int,
        *,
        tags: Sequence[Sequence[str]] = (),
        content: str = "",
        created_at: int | None = None,
    ) -> Event:
        """An event built and signed by nostr-sdk, read back by our parser."""
        builder = nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content).tags(
            [nostr_sdk.Tag.parse(list(tag)) for tag in tags]
        )
        if created_at is not None:
            builder = builder.custom_created_at(nostr_sdk.Timestamp.from_secs(created_at))
        signed = builder.finalize(self.sdk_keys)
        return Event.from_json(signed.as_json())

    async def publish(self, event: Event, *, require_ok: bool = True) -> bool:
        """Send a signed event through nostr-sdk's client; returns whether a relay took it.

        With ``require_ok`` (the default) at least one relay must take it.
        """
        out = await self.client.send_event(nostr_sdk.Event.from_json(event.to_json()))
        assert out.success or not require_ok, f"no relay took kind {event.kind}: {out.failed}"
        return bool(out.success)

    async def request(
        self,
        kind: int,
        *,
        tags: Sequence[Sequence[str]] = (),
        content: str = "",
        created_at: int | None = None,
        require_ok: bool = True,
    ) -> Event:
        """Sign and send a job request (or any event); returns it."""
        event = self.sign(kind, tags=tags, content=content, created_at=created_at)
        await self.publish(event, require_ok=require_ok)
        return event

    # -- receiving -----------------------------------------------------------------------------

    def answers(self, request_id: str) -> list[Event]:
        """Everything received so far about ``request_id``."""
        return list(self._answers.get(request_id, ()))

    async def wait(
        self,
        request_id: str,
        until: Callable[[list[Event]], bool],
        *,
        timeout: float = WAIT,  # noqa: ASYNC109 - a test deadline, not a cancellation
    ) -> list[Event]:
        """Wait until ``until(answers)`` holds for the answers about ``request_id``."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: until(self.answers(request_id)))
        return self.answers(request_id)

    async def final(self, request_id: str) -> Event:
        """Wait for the answer that ends the job (result, error or cancelled) and return it."""
        answers = await self.wait(request_id, lambda got: any(is_final(e) for e in got))
        finals = [e for e in answers if is_final(e)]
        assert len(finals) == 1, [e.tags for e in finals]
        return finals[0]

    async def status(self, request_id: str, status: str) -> Event:
        """Wait for an answer with ``status`` and return the first one."""
        answers = await self.wait(request_id, lambda got: any(status_of(e) == status for e in got))
        return next(e for e in answers if status_of(e) == status)

    async def fetch(self, flt: nostr_sdk.Filter) -> list[nostr_sdk.Event]:
        """Stored events matching ``flt``, as nostr-sdk returns them."""
        events = await self.client.fetch_events(
            nostr_sdk.ReqTarget.auto([flt]), timeout=timedelta(seconds=WAIT)
        )
        return list(events)


@contextlib.asynccontextmanager
async def customer_on(
    relays: str | Sequence[str], keys: Keys | None = None
) -> AsyncIterator[Customer]:
    """A connected, listening :class:`Customer`; shut down on exit."""
    urls = [relays] if isinstance(relays, str) else list(relays)
    customer = Customer(urls, keys)
    async with asyncio.TaskGroup() as tg:
        await customer.start(tg)
        try:
            yield customer
        finally:
            await customer.client.shutdown()


@pytest.fixture
async def customer(relay_url: str) -> AsyncIterator[Customer]:
    async with customer_on(relay_url) as c:
        yield c


async def eventually(
    check: Callable[[], bool],
    *,
    timeout: float = WAIT,  # noqa: ASYNC109 - a test deadline
) -> None:
    """Wait until ``check()`` holds, for state the DVM exposes only through ``stats()``.

    The engine offers no event for "queued" or "picked up", so this polls; use it only there.
    """
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - no event to await (see above)
            await asyncio.sleep(0.005)


def now() -> int:
    return int(time.time())
