"""Hostile requests (Hypothesis): the DVM never crashes, and answers or ignores each as the
protocol layer says.

Requests of kind 25000 and 5050 with arbitrary tags and contents: bad ``i`` tags, params
with odd values, huge strings, unicode, duplicate tags, encrypted params that are garbage,
``relays`` tags naming unreachable relays, expirations, statuses. For each, the protocol
layer decides what should happen (:func:`expected`): a :class:`ProtocolError` means the
request is ignored (nothing stored, nothing said), a :class:`JobError` means an ``error``
answer with its code, and a request that parses and binds runs (a result, or an input error).

A DVM, our relay and a customer live for the whole test on an event loop of its own, which
the test runs for each example (Hypothesis drives a plain function). Most examples are
handed straight to ``Engine.on_event`` (the relay round trip adds nothing to what is
tested); one pass goes through the relay. What the DVM did is read from its job store,
which records every answer (with the event) before sending it; the store here only adds a
notification after each commit, so tests await the outcome instead of polling.

Only 127.0.0.1 is ever contacted: ``url`` inputs and ``relays`` tags name local ports.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvmkit.errors import JobError, ProtocolError
from dvmkit.nostr import nip04, nip40, nip44
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter, matches_any
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import (
    FEEDBACK_KIND,
    MODERN_KIND,
    ErrorCode,
    encryption_scheme,
    parse_request,
)
from dvmkit.protocol.legacy import decrypt_legacy_params
from dvmkit.provider import DVM, Limits
from dvmkit.provider.engine import Engine
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay
from dvmkit.store import JobRecord, JobState, OutboxEvent, SQLiteJobStore

from .loop_host import LoopHost

KIND = 5050
CATEGORY = "text"
WAIT = 15.0  # bound on one example's outcome
DVM_KEYS = Keys.generate()
CUSTOMER = Keys.generate()
CUSTOMER_2 = Keys.generate()  # the relay pass: its requests never repeat the direct pass's ids
STRANGER = Keys.generate()
LIMITS = Limits(
    processing_notice=60.0,
    input_timeout=2.0,
    job_input_wait=0.2,
    max_input_bytes=4096,
    max_future_skew=600,
)
CODES = frozenset(ErrorCode)


class Outcome(enum.Enum):
    IGNORED = "ignored"  # nothing stored, nothing answered
    ERROR = "error"  # refused before running, with a code
    RUNS = "runs"  # admitted: ends with a result, or an input error


@dataclass(frozen=True)
class Expected:
    outcome: Outcome
    code: str | None = None


# -- the DVM under test -------------------------------------------------------------------------


def _dvm(relay: str, store: SQLiteJobStore) -> DVM:
    dvm = DVM(
        name="hostile input",
        categories=[CATEGORY],
        legacy_kinds=[KIND],
        relays=[relay],
        keys=DVM_KEYS,
        store=store,
        limits=LIMITS,
    )

    @dvm.job
    async def work(
        input: str,
        lang: str,
        times: int = 1,
        mode: Literal["plain", "loud"] = "plain",
        ratio: float = 1.0,
        flags: list[str] | None = None,
        loud: bool = False,
    ) -> str:
        # A bounded answer whatever the input: the point is what reaches the handler.
        size = len(flags or ())
        return f"{len(input)} {len(lang)} {times.bit_length()} {mode} {ratio} {size} {loud}"

    return dvm


class ObservedStore(SQLiteJobStore):
    """The SQLite store, in memory, with a notification after every committed write."""

    def __init__(self) -> None:
        super().__init__(None)
        self.changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def insert(self, record: JobRecord, *, outbox: Sequence[OutboxEvent] = ()) -> bool:
        done = await super().insert(record, outbox=outbox)
        await self._notify()
        return done

    async def transition(self, job_id: str, **kwargs: Any) -> bool:
        done = await super().transition(job_id, **kwargs)
        await self._notify()
        return done

    async def settled(self, job_id: str) -> JobRecord:
        """Wait until the job is in a terminal state; return it."""
        async with self.changed:
            while True:
                record = await self.get(job_id)
                if record is not None and record.state.terminal:
                    return record
                await self.changed.wait()


class Harness(LoopHost):
    """Our relay, the DVM and a customer pool on an event loop of their own.

    The loop runs only inside :meth:`call`, never while Hypothesis draws an example: the
    pool's reconnect jitter (``random.random``) must not run during a draw."""

    def __init__(self) -> None:
        super().__init__(wait=WAIT)
        self.store = ObservedStore()
        self.relay_url = ""
        self.engine: Engine | None = None
        self.pool: RelayPool | None = None
        self._sentinels = itertools.count()
        self.seen: collections.Counter[str] = collections.Counter()  # outcomes checked

    @contextlib.asynccontextmanager
    async def hosting(self) -> AsyncIterator[None]:
        async with Relay(port=0) as relay:
            self.relay_url = relay.url
            dvm = _dvm(relay.url, self.store)
            async with dvm.running(), RelayPool(relays=[relay.url]) as pool:
                self.engine, self.pool = dvm._engine, pool
                yield

    # -- checks, on the harness loop ---------------------------------------------------------

    def sentinel(self) -> Event:
        n = next(self._sentinels)
        tags = [["p", DVM_KEYS.public_key], ["param", "lang", "en"]]
        return sign_event(CUSTOMER, kind=MODERN_KIND, content=f"ping {n}", tags=tags)

    async def check(self, event: Event, *, via_relay: bool) -> None:
        """Deliver ``event``, then check the DVM did what :func:`expected` says."""
        assert self.engine is not None
        assert self.pool is not None
        want = expected(event, self.engine)
        # What the DVM subscribes to (legacy requests only from the last `request_lookback`).
        since = int(time.time()) - LIMITS.request_lookback
        filters = [Filter.from_dict(f) for f in self.engine.filters(since)]
        subscribed = matches_any(filters, event)
        if via_relay:
            published = await self.pool.publish(event, timeout=WAIT)
            if not published.ok or not subscribed:
                want = Expected(Outcome.IGNORED)  # the DVM never sees it
        elif not subscribed:
            # No relay would deliver this to the DVM (neither our category in `t` nor our
            # key in `p`): hand it over anyway, and ask only that the DVM survives it.
            self.engine.on_event(event)
            await self._ping(via_relay=False)
            self.seen["unsubscribed"] += 1
            return
        else:
            self.engine.on_event(event)
        if want.outcome is Outcome.IGNORED:
            await self._ping(via_relay=via_relay)
            assert await self.store.get(event.id) is None, "an ignored request was stored"
            self.seen["ignored"] += 1
            return
        async with asyncio.timeout(WAIT):
            record = await self.store.settled(event.id)
        answers = [
            Event.from_json(item.event_json) for item in await self.store.job_events(event.id)
        ]
        assert answers, "no answer was recorded"
        final = answers[-1]
        assert final.verify()
        assert final.pubkey == DVM_KEYS.public_key
        assert event.id in final.tag_values("e")
        if record.state is JobState.SUCCESS:
            assert want.outcome is Outcome.RUNS
            assert final.id == record.result_event_id
            assert final.kind in (KIND + 1000, MODERN_KIND)
            self.seen["success"] += 1
            return
        assert record.state is JobState.ERROR, record.state
        code, message = _error_of(final)
        assert code == record.error_code
        assert code in CODES
        assert len(message) <= 400, message  # hostile input is quoted short, if at all
        assert "Traceback" not in message
        self.seen[f"{want.outcome.value} {code}"] += 1
        if want.outcome is Outcome.ERROR:
            assert code == want.code
        else:
            # Input resolution is the only way an admitted job fails here: the handler
            # itself never raises, so INTERNAL_ERROR would be a bug.
            assert code == ErrorCode.BAD_REQUEST, (code, message)

    async def _ping(self, *, via_relay: bool) -> None:
        """A valid request after the one under test: once it is answered, anything the
        earlier one would have caused is in the store (its write was queued first)."""
        assert self.engine is not None
        assert self.pool is not None
        ping = self.sentinel()
        if via_relay:
            assert (await self.pool.publish(ping, timeout=WAIT)).ok
        else:
            self.engine.on_event(ping)
        async with asyncio.timeout(WAIT):
            record = await self.store.settled(ping.id)
        assert record.state is JobState.SUCCESS


def _error_of(event: Event) -> tuple[str, str]:
    tag = event.tag("status")
    assert tag is not None, event.tags
    assert tag[1] == "error", event.tags
    if event.kind == MODERN_KIND:
        assert len(tag) == 4, tag  # ["status", "error", CODE, message]
        return tag[2], tag[3]
    assert event.kind == FEEDBACK_KIND, event.kind
    assert len(tag) == 3, tag  # ["status", "error", "CODE: message"]
    code, sep, message = tag[2].partition(": ")
    assert sep, tag
    return code, message


def expected(event: Event, engine: Engine) -> Expected:
    """What the protocol layer says the DVM must do with ``event`` (DESIGN.md §4, §5)."""
    if event.kind == MODERN_KIND and event.tag("status") is not None:
        return Expected(Outcome.IGNORED)  # a status or cancellation, not a request
    now = time.time()
    expires = nip40.expiration(event)
    if (expires is not None and expires <= now) or event.created_at > now + LIMITS.max_future_skew:
        return Expected(Outcome.IGNORED)
    # An open request names its category in `category` (else `t`); for another category it is
    # not ours, however malformed the rest is.
    category = event.tag_value("category") or event.tag_value("t")
    if (
        event.kind == MODERN_KIND
        and DVM_KEYS.public_key not in event.tag_values("p")
        and category != CATEGORY
    ):
        return Expected(Outcome.IGNORED)
    try:
        decrypted = None
        if event.kind != MODERN_KIND and encryption_scheme(event) is not None:
            decrypted = decrypt_legacy_params(event, DVM_KEYS)
        request = parse_request(event, provider=DVM_KEYS.public_key, decrypted_tags=decrypted)
    except ProtocolError:
        return Expected(Outcome.IGNORED)
    except JobError as exc:
        return Expected(Outcome.ERROR, str(exc.code))
    try:
        engine.handler.bind(request)
    except JobError as exc:
        return Expected(Outcome.ERROR, str(exc.code))
    return Expected(Outcome.RUNS)


# -- strategies ---------------------------------------------------------------------------------

NOW = int(time.time())
HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
ODD = st.sampled_from(
    [
        "", " ", "\x00", "nan", "inf", "-inf", "1e400", "-0", "1_000", "0x1F", "٣", "１２",
        "9" * 5000, "true", "YES", "off", "loud", "plain", "\u202e\u0301", "😀" * 20,
        '["i","x"]', "null", "ws://", "wss://127.0.0.1:1",
    ]
)  # fmt: skip
HUGE = st.tuples(st.sampled_from(["x", "é", "😀", "\u0301"]), st.integers(1000, 60_000)).map(
    lambda cn: cn[0] * cn[1]
)
TEXT = st.one_of(st.text(max_size=24), ODD, HUGE, HEX64)
SHORT = st.one_of(st.text(max_size=12), ODD)
# Only local addresses: a closed port, our relay's HTTP side (filled in at run time), and
# URLs that must fail to parse or use a scheme the fetcher refuses.
LOCAL_HTTP = [
    "http://127.0.0.1:9/input",
    "http://127.0.0.1:99999/",
    "http://[::1",
    "file:///etc/hostname",
    "ftp://127.0.0.1/x",
    "not a url",
]
LOCAL_WS = st.builds(
    lambda port, path: f"ws://127.0.0.1:{port}/{path}",
    st.sampled_from([9, 1, 99999, 0]),
    st.text(alphabet="abc%:?#[]@/", max_size=8),
) | st.sampled_from(["ws://[::1", "wss://127.0.0.1:9", "ws://127.0.0.1:99999", "ws://"])


# Anything else in a `relays` tag, but never a ws:// URL: its host could be anywhere.
NOT_WS = SHORT.filter(lambda v: not v.strip().lower().startswith(("ws:", "wss:")))


@st.composite
def input_tags(draw: st.DrawFn, relay_http: str) -> list[str]:
    kind = draw(st.sampled_from(["text", "event", "job", "url", "", "TEXT", "unknown"]))
    if kind == "url":
        data = draw(st.sampled_from([*LOCAL_HTTP, relay_http]))
    elif kind in ("event", "job"):
        data = draw(st.one_of(HEX64, HEX64.map(str.upper), TEXT))
    else:
        data = draw(TEXT)
    extra = draw(st.lists(SHORT, max_size=2))
    return ["i", data, kind, *extra][: draw(st.integers(1, 5))]


def param_tags() -> st.SearchStrategy[list[str]]:
    names = st.one_of(
        st.sampled_from(["times", "mode", "ratio", "flags", "loud", "lang", "input", "x", ""]),
        st.text(max_size=8),
    )
    values = st.lists(st.one_of(TEXT, st.integers().map(str)), max_size=3)
    return st.builds(lambda n, v: ["param", n, *v], names, values)


def other_tags() -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.builds(lambda v: ["bid", v], st.one_of(SHORT, st.integers().map(str))),
        st.just(["bid"]),
        st.builds(lambda v: ["relays", *v], st.lists(st.one_of(LOCAL_WS, NOT_WS), max_size=3)),
        st.builds(
            lambda v: ["p", v],
            st.one_of(
                st.sampled_from([DVM_KEYS.public_key, DVM_KEYS.public_key.upper()]),
                st.just(STRANGER.public_key),
                HEX64,
                SHORT,
            ),
        ),
        st.builds(
            lambda n, v: [n, v],
            st.sampled_from(["t", "category"]),
            st.one_of(st.just(CATEGORY), SHORT),
        ),
        st.builds(lambda v: ["output", v], TEXT),
        st.builds(
            lambda v: ["expiration", v],
            st.one_of(
                st.sampled_from([str(NOW - 10), str(NOW + 3600), "0", "-5", "9" * 30]), SHORT
            ),
        ),
        st.builds(
            lambda v: ["encrypted", *v],
            st.lists(st.sampled_from(["nip04", "nip44", "NIP44", "", "rot13"]), max_size=1),
        ),
        st.builds(
            lambda v: ["status", *v],
            st.lists(st.sampled_from(["cancel", "success", "error"]) | SHORT, max_size=2),
        ),
        st.builds(lambda v: ["e", v], HEX64),
        st.lists(TEXT, min_size=1, max_size=4),
    )


PLAINTEXTS = st.one_of(
    st.sampled_from(
        [
            '[["i","secret","text"]]',
            '[["i","x","text"],["param","times","3"]]',
            '[["param","times","many"]]',
            '[["param","bogus","1"]]',
            "[[]]",
            "[[1,2]]",
            '{"i":"x"}',
            "not json",
            "",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def contents(draw: st.DrawFn, customer: Keys) -> str:
    """A plain content, or params encrypted to us, or to somebody else, or garbage."""
    how = draw(st.sampled_from(["plain", "nip04", "nip44", "stranger", "garbage"]))
    if how == "plain":
        return draw(TEXT)
    if how == "garbage":
        return draw(st.sampled_from(["?iv=", "AAAA?iv=AAAA", "Ag==", "", "%%%", "a" * 200]))
    plain = draw(PLAINTEXTS)
    if how == "nip04":
        return nip04.encrypt(customer, DVM_KEYS.public_key, plain)
    if how == "nip44":
        return nip44.encrypt_to(customer, DVM_KEYS.public_key, plain or " ")
    return nip44.encrypt_to(customer, STRANGER.public_key, plain or " ")


@st.composite
def requests(draw: st.DrawFn, relay_http: str, customer: Keys) -> Event:
    kind = draw(st.sampled_from([MODERN_KIND, KIND]))
    # Mostly requests the DVM would receive and could run, then spoilt by what follows.
    wellformed = [
        ["p", DVM_KEYS.public_key],
        ["t", CATEGORY],
        ["category", CATEGORY],
        ["i", "hello", "text"],
        ["param", "times", "2"],
        ["param", "mode", "loud"],
    ]
    tags = draw(st.lists(st.sampled_from(wellformed), max_size=4))
    if draw(st.integers(0, 9)):  # the required param, most of the time
        tags.insert(draw(st.integers(0, len(tags))), ["param", "lang", "en"])
    tag = st.one_of(input_tags(relay_http), param_tags(), other_tags())
    tags += draw(st.lists(tag, max_size=6))
    if draw(st.booleans()):
        tags += tags[: draw(st.integers(0, 3))]  # duplicates, verbatim
    created_at = draw(st.sampled_from([NOW, NOW, NOW, NOW - 86_400, NOW + 3600, NOW + 60]))
    content = draw(contents(customer))
    return sign_event(customer, kind=kind, content=content, tags=tags, created_at=created_at)


# -- the tests ----------------------------------------------------------------------------------


def test_hostile_requests_never_crash_and_are_answered_as_specified() -> None:
    with Harness() as harness:
        relay_http = "http" + harness.relay_url.removeprefix("ws")

        @settings(
            max_examples=300,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests(relay_http, CUSTOMER))
        def direct(event: Event) -> None:
            harness.call(harness.check(event, via_relay=False))

        @settings(
            max_examples=40,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests(relay_http, CUSTOMER_2))
        def through_relay(event: Event) -> None:
            harness.call(harness.check(event, via_relay=True))

        direct()
        through_relay()
        # Still serving, through the relay too.
        harness.call(harness._ping(via_relay=True))
    print(f"\nhostile requests: {dict(sorted(harness.seen.items()))}")
    # Every kind of outcome was exercised: the examples are not all of one sort.
    assert {
        "ignored",
        "success",
        "error BAD_REQUEST",
        "error INVALID_PARAMETER",
        "error MISSING_PARAMETER",
    } <= set(harness.seen), harness.seen
