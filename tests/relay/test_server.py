"""Conformance of dvmkit's relay: raw websockets and nostr-sdk's Client as independent clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import nostr_sdk
import orjson
import pytest

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip42 import make_auth_event
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.server import Relay

from .wire import Wire, wire

NOW = int(time.time())


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


@pytest.fixture
async def conn(our_relay: str) -> AsyncIterator[Wire]:
    async with wire(our_relay) as w:
        yield w


class FakeClock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


# -- NIP-01 basics ------------------------------------------------------------------------------


async def test_publish_then_req_returns_the_event_then_eose(conn: Wire) -> None:
    keys = Keys.generate()
    event = sign_event(keys, kind=1, content="hello", tags=[["t", "dvm"]])
    assert await conn.publish(event) == ["OK", event.id, True, ""]
    events, end = await conn.fetch("s1", {"authors": [keys.public_key]})
    assert events == [event.to_dict()]
    assert end == ["EOSE", "s1"]


async def test_duplicate_is_ok_true_with_duplicate_prefix(conn: Wire) -> None:
    event = sign_event(Keys.generate(), kind=1, content="twice")
    assert (await conn.publish(event))[2] is True
    assert await conn.publish(event) == ["OK", event.id, True, "duplicate: already have this event"]


async def test_bad_signature_and_tampered_content_are_rejected(conn: Wire) -> None:
    keys = Keys.generate()
    event = sign_event(keys, kind=1, content="original")
    forged = event.to_dict() | {"sig": sign_event(keys, kind=1, content="other").sig}
    assert await conn.publish(forged) == ["OK", event.id, False, "invalid: bad signature"]
    tampered = event.to_dict() | {"content": "changed"}
    assert await conn.publish(tampered) == [
        "OK",
        event.id,
        False,
        "invalid: id does not match content",
    ]
    events, _ = await conn.fetch("s", {"ids": [event.id]})
    assert events == []


async def test_malformed_event_fields_get_precise_invalid_reasons(conn: Wire) -> None:
    event = sign_event(Keys.generate(), kind=1).to_dict()
    ok = await conn.publish(event | {"kind": "1"})
    assert ok[:3] == ["OK", event["id"], False]
    assert ok[3].startswith("invalid: kind must be an integer")
    ok = await conn.publish(event | {"tags": [["p", 5]]})
    assert ok[3].startswith("invalid: tag 0 has a int value")
    del event["sig"]
    ok = await conn.publish(event)
    assert ok[3].startswith("invalid: event has no 'sig' field")


async def test_control_characters_round_trip_byte_exact(conn: Wire) -> None:
    # nostr-relay (PyPI) rejected U+001F because rapidjson escapes it differently.
    content = 'unit\x1fsep \x00 nul \x7f del \u2028 ls "quote" \\ é 🎉'
    event = sign_event(Keys.generate(), kind=1, content=content, tags=[["t", "a\x1fb"]])
    assert (await conn.publish(event))[2] is True
    events, _ = await conn.fetch("s", {"ids": [event.id]})
    served = Event.from_dict(events[0])
    assert served == event
    assert nostr_sdk.Event.from_json(orjson.dumps(events[0]).decode()).verify()


async def test_created_at_far_in_the_future_or_past_is_rejected(conn: Wire) -> None:
    keys = Keys.generate()
    future = sign_event(keys, kind=1, created_at=NOW + 3600)
    assert await conn.publish(future) == [
        "OK",
        future.id,
        False,
        "invalid: event created_at is too far in the future",
    ]
    past = sign_event(keys, kind=1, created_at=NOW - 4 * 365 * 86400)
    assert (await conn.publish(past))[3] == "invalid: event created_at is too far in the past"


async def test_subscription_receives_live_events_until_closed(conn: Wire, our_relay: str) -> None:
    keys = Keys.generate()
    _, end = await conn.req("live", {"kinds": [5100], "#p": [keys.public_key]})
    assert end == ["EOSE", "live"]
    async with wire(our_relay) as publisher:
        job = sign_event(Keys.generate(), kind=5100, tags=[["p", keys.public_key]])
        other = sign_event(Keys.generate(), kind=5100, tags=[["p", "0" * 64]])
        assert (await publisher.publish(other))[2] is True
        assert (await publisher.publish(job))[2] is True
        assert await conn.recv() == ["EVENT", "live", job.to_dict()]
        await conn.send(["CLOSE", "live"])
        after = sign_event(Keys.generate(), kind=5100, tags=[["p", keys.public_key]])
        assert (await publisher.publish(after))[2] is True
    # Prove nothing else arrived: the next message is the answer to a fresh request.
    assert await conn.count("c", {"kinds": [5100], "#p": [keys.public_key]}) == [
        "COUNT",
        "c",
        {"count": 2},
    ]


async def test_req_with_existing_id_replaces_the_subscription(conn: Wire) -> None:
    a, b = Keys.generate(), Keys.generate()
    await conn.req("s", {"authors": [a.public_key]})
    await conn.req("s", {"authors": [b.public_key]})
    first = sign_event(a, kind=1, content="old filter")
    second = sign_event(b, kind=1, content="new filter")
    assert await conn.publish(first) == ["OK", first.id, True, ""]
    await conn.send(["EVENT", second.to_dict()])
    # Had the old filter survived, its EVENT for `first` would come before these two.
    assert [await conn.recv(), await conn.recv()] == [
        ["OK", second.id, True, ""],
        ["EVENT", "s", second.to_dict()],
    ]


async def test_limit_orders_newest_first_and_ties_by_lowest_id(conn: Wire) -> None:
    keys = Keys.generate()
    events = [sign_event(keys, kind=1, content=str(i), created_at=NOW - i // 2) for i in range(8)]
    for event in events:
        assert (await conn.publish(event))[2] is True
    expected = sorted(events, key=lambda e: (-e.created_at, e.id))[:5]
    got, _ = await conn.fetch("s", {"authors": [keys.public_key], "limit": 5})
    assert ids(got) == [e.id for e in expected]
    got, _ = await conn.fetch("z", {"authors": [keys.public_key], "limit": 0})
    assert got == []


async def test_since_until_are_inclusive(conn: Wire) -> None:
    keys = Keys.generate()
    events = [sign_event(keys, kind=1, created_at=NOW - 100 + i) for i in range(5)]
    for event in events:
        await conn.publish(event)
    got, _ = await conn.fetch(
        "s", {"authors": [keys.public_key], "since": NOW - 99, "until": NOW - 97}
    )
    assert sorted(ids(got)) == sorted(e.id for e in events[1:4])


async def test_bad_filters_and_sub_ids_get_closed_or_notice(conn: Wire) -> None:
    _, end = await conn.fetch("bad", {"authors": ["not-hex"]})
    assert end[0] == "CLOSED"
    assert end[2].startswith("invalid: 'authors' values must be 64 lowercase hex")
    _, end = await conn.fetch("bad2", {"kinds": [1], "nonsense": 1})
    assert end[2] == "invalid: unsupported filter field 'nonsense'"
    _, end = await conn.fetch("bad3")
    assert end == ["CLOSED", "bad3", "invalid: at least one filter is required"]
    _, end = await conn.fetch("bad4", {"search": "x"})
    assert end[2] == "invalid: search (NIP-50) is not supported by this relay"
    _, end = await conn.fetch("", {})
    assert end == ["CLOSED", "", "invalid: subscription id must not be empty"]
    await conn.send(["REQ", "x" * 65, {}])
    notice = await conn.recv()
    assert notice == ["NOTICE", "invalid: REQ needs a subscription id of 1 to 64 characters"]
    await conn.send(["REQ", 5, {}])
    assert (await conn.recv())[0] == "NOTICE"


async def test_unknown_message_type_gets_a_notice(conn: Wire) -> None:
    await conn.send(["HELLO", 1])
    assert await conn.recv() == ["NOTICE", "invalid: unknown message type 'HELLO'"]


async def test_count(conn: Wire) -> None:
    keys = Keys.generate()
    for i in range(3):
        await conn.publish(sign_event(keys, kind=7000 + i % 2, content=str(i)))
    assert await conn.count("c", {"authors": [keys.public_key]}) == ["COUNT", "c", {"count": 3}]
    assert await conn.count(
        "c", {"authors": [keys.public_key], "kinds": [7001]}, {"kinds": [7001]}
    ) == [
        "COUNT",
        "c",
        {"count": 1},
    ]


# -- replaceable, addressable, ephemeral ----------------------------------------------------------


async def test_late_older_replaceable_is_rejected_and_newest_kept(conn: Wire) -> None:
    keys = Keys.generate()
    newer = sign_event(keys, kind=10002, content="new", created_at=NOW)
    older = sign_event(keys, kind=10002, content="old", created_at=NOW - 10)
    assert (await conn.publish(newer))[2] is True
    ok = await conn.publish(older)
    assert ok == [
        "OK",
        older.id,
        False,
        "invalid: a newer version of this replaceable event is already stored",
    ]
    got, _ = await conn.fetch("s", {"authors": [keys.public_key], "kinds": [10002]})
    assert ids(got) == [newer.id]
    newest = sign_event(keys, kind=10002, content="newest", created_at=NOW + 1)
    assert (await conn.publish(newest))[2] is True
    got, _ = await conn.fetch("s", {"authors": [keys.public_key]})
    assert ids(got) == [newest.id]


@pytest.mark.parametrize("lowest_first", [True, False])
async def test_replaceable_tie_keeps_the_lowest_id(conn: Wire, lowest_first: bool) -> None:
    keys = Keys.generate()
    pair = sorted(
        (sign_event(keys, kind=0, content=c, created_at=NOW) for c in ("a", "b")),
        key=lambda e: e.id,
    )
    order = pair if lowest_first else pair[::-1]
    for event in order:
        await conn.publish(event)
    got, _ = await conn.fetch("s", {"authors": [keys.public_key], "kinds": [0]})
    assert ids(got) == [pair[0].id]


async def test_addressable_is_replaced_per_d_tag(conn: Wire) -> None:
    keys = Keys.generate()
    a1 = sign_event(keys, kind=30078, tags=[["d", "a"]], content="1", created_at=NOW - 5)
    a2 = sign_event(keys, kind=30078, tags=[["d", "a"]], content="2", created_at=NOW)
    b1 = sign_event(keys, kind=30078, tags=[["d", "b"]], content="1", created_at=NOW - 5)
    for event in (a1, b1, a2):
        assert (await conn.publish(event))[2] is True
    got, _ = await conn.fetch("s", {"authors": [keys.public_key]})
    assert sorted(ids(got)) == sorted([a2.id, b1.id])


async def test_ephemeral_is_delivered_live_and_never_stored(conn: Wire, our_relay: str) -> None:
    target = Keys.generate().public_key
    await conn.req("eph", {"kinds": [25000], "#p": [target]})
    event = sign_event(Keys.generate(), kind=25000, tags=[["p", target]], content="job")
    async with wire(our_relay) as publisher:
        assert await publisher.publish(event) == ["OK", event.id, True, ""]
    assert await conn.recv() == ["EVENT", "eph", event.to_dict()]
    got, _ = await conn.fetch("again", {"ids": [event.id]})
    assert got == []


# -- NIP-09 and NIP-40 -------------------------------------------------------------------------


async def test_deletion_removes_own_events_and_blocks_their_return(conn: Wire) -> None:
    keys, stranger = Keys.generate(), Keys.generate()
    note = sign_event(keys, kind=1, content="regret")
    other = sign_event(stranger, kind=1, content="not yours")
    for event in (note, other):
        await conn.publish(event)
    deletion = sign_event(keys, kind=5, tags=[["e", note.id], ["e", other.id], ["k", "1"]])
    assert (await conn.publish(deletion))[2] is True
    got, _ = await conn.fetch("s", {"ids": [note.id, other.id, deletion.id]})
    assert sorted(ids(got)) == sorted([other.id, deletion.id])
    assert await conn.publish(note) == [
        "OK",
        note.id,
        False,
        "blocked: this event was deleted by its author (NIP-09)",
    ]


async def test_deletion_by_address_removes_versions_up_to_its_time(conn: Wire) -> None:
    keys = Keys.generate()
    old = sign_event(keys, kind=30023, tags=[["d", "post"]], created_at=NOW - 10)
    await conn.publish(old)
    address = f"30023:{keys.public_key}:post"
    await conn.publish(sign_event(keys, kind=5, tags=[["a", address]], created_at=NOW - 5))
    got, _ = await conn.fetch("s", {"kinds": [30023], "authors": [keys.public_key]})
    assert got == []
    stale = sign_event(keys, kind=30023, tags=[["d", "post"]], content="x", created_at=NOW - 6)
    assert (await conn.publish(stale))[2] is False
    fresh = sign_event(keys, kind=30023, tags=[["d", "post"]], created_at=NOW)
    assert (await conn.publish(fresh))[2] is True


async def test_expired_events_are_rejected_and_stop_being_served() -> None:
    clock = FakeClock()
    async with Relay(port=0, clock=clock) as relay, wire(relay.url) as conn:
        keys = Keys.generate()
        expired = sign_event(keys, kind=1, tags=[["expiration", str(NOW - 1)]])
        assert await conn.publish(expired) == [
            "OK",
            expired.id,
            False,
            "invalid: event has expired",
        ]
        soon = sign_event(keys, kind=1, tags=[["expiration", str(NOW + 30)]])
        assert (await conn.publish(soon))[2] is True
        got, _ = await conn.fetch("s", {"authors": [keys.public_key]})
        assert ids(got) == [soon.id]
        clock.now = NOW + 31
        got, _ = await conn.fetch("s", {"authors": [keys.public_key]})
        assert got == []
        assert await conn.count("c", {"authors": [keys.public_key]}) == ["COUNT", "c", {"count": 0}]


# -- limits -------------------------------------------------------------------------------------


async def test_limits_reject_with_precise_reasons() -> None:
    limits = RelayLimits(
        max_event_tags=3,
        max_content_length=10,
        max_subscriptions=2,
        max_filters=2,
        events_per_second=0.001,
        events_burst=4,
    )
    async with Relay(port=0, limits=limits) as relay, wire(relay.url) as conn:
        keys = Keys.generate()
        many_tags = sign_event(keys, kind=1, tags=[["t", str(i)] for i in range(4)])
        assert (await conn.publish(many_tags))[3] == "invalid: event has more than 3 tags"
        long = sign_event(keys, kind=1, content="x" * 11)
        assert (await conn.publish(long))[3] == "invalid: content is longer than 10 characters"
        assert (await conn.publish(sign_event(keys, kind=1)))[2] is True
        assert (await conn.publish(sign_event(keys, kind=1, content="1")))[2] is True
        limited = sign_event(keys, kind=1, content="2")
        assert await conn.publish(limited) == ["OK", limited.id, False, "rate-limited: slow down"]
        _, end = await conn.fetch("f", {}, {}, {})
        assert end == ["CLOSED", "f", "invalid: too many filters (at most 2)"]
        for sub in ("a", "b"):
            assert (await conn.req(sub, {"kinds": [1]}))[1][0] == "EOSE"
        _, end = await conn.req("c", {"kinds": [1]})
        assert end[0] == "CLOSED"
        assert end[2].startswith("blocked: too many open subscriptions (at most 2)")
        assert (await conn.req("a", {"kinds": [2]}))[1] == ["EOSE", "a"]


async def test_nip11_document_states_real_limits() -> None:
    limits = RelayLimits(max_subscriptions=77)
    async with Relay(port=0, limits=limits, auth=True) as relay:
        host, port = relay.url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: application/nostr+json\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            body = await reader.readexactly(length)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200")
        assert b"access-control-allow-origin: *" in head.lower()
        assert b"content-type: application/nostr+json" in head.lower()
        document = orjson.loads(body)
        assert {1, 9, 11, 40, 42, 45, 59}.issubset(document["supported_nips"])
        assert document["limitation"] == limits.nip11_limitation(auth_required=False)
        assert document["limitation"]["max_subscriptions"] == 77


# -- NIP-42 and NIP-59 --------------------------------------------------------------------------


async def authenticate(conn: Wire, url: str, keys: Keys) -> None:
    challenge = await conn.recv()
    assert challenge[0] == "AUTH"
    event = make_auth_event(keys, url, challenge[1])
    await conn.send(["AUTH", event.to_dict()])
    assert await conn.recv() == ["OK", event.id, True, ""]


async def test_wraps_only_reach_their_authenticated_recipient(our_relay_auth: str) -> None:
    alice, bob, sender = Keys.generate(), Keys.generate(), Keys.generate()
    to_alice = sign_event(sender, kind=1059, tags=[["p", alice.public_key]], content="for alice")
    to_bob = sign_event(sender, kind=1059, tags=[["p", bob.public_key]], content="for bob")
    async with wire(our_relay_auth) as anon, wire(our_relay_auth) as conn_alice:
        assert (await anon.recv())[0] == "AUTH"
        for wrap in (to_alice, to_bob):
            assert (await anon.publish(wrap))[2] is True
        _, end = await anon.fetch("w", {"kinds": [1059]})
        assert end[0] == "CLOSED"
        assert end[2].startswith("auth-required:")
        _, end = await anon.fetch("any", {"authors": [sender.public_key]})
        assert end[2].startswith("auth-required:")
        assert (await anon.fetch("notes", {"kinds": [1]}))[1] == ["EOSE", "notes"]
        await authenticate(conn_alice, our_relay_auth, alice)
        got, end = await conn_alice.fetch("w", {"kinds": [1059]})
        assert end == ["EOSE", "w"]
        assert ids(got) == [to_alice.id]
        assert await conn_alice.count("c", {"kinds": [1059]}) == ["COUNT", "c", {"count": 1}]
        assert (await conn_alice.req("live", {"kinds": [21059]}))[1] == ["EOSE", "live"]
        live_bob = sign_event(sender, kind=21059, tags=[["p", bob.public_key]])
        live_alice = sign_event(sender, kind=21059, tags=[["p", alice.public_key]])
        assert (await anon.publish(live_bob))[2] is True
        assert (await anon.publish(live_alice))[2] is True
        # Bob's wrap was published first; had it leaked, it would arrive first.
        assert await conn_alice.recv() == ["EVENT", "live", live_alice.to_dict()]


async def test_auth_with_wrong_challenge_is_refused(our_relay_auth: str) -> None:
    keys = Keys.generate()
    async with wire(our_relay_auth) as conn:
        await conn.recv()
        event = make_auth_event(keys, our_relay_auth, "not-the-challenge")
        await conn.send(["AUTH", event.to_dict()])
        assert await conn.recv() == [
            "OK",
            event.id,
            False,
            f"invalid: AUTH event does not answer this connection's challenge (event {event.id})",
        ]


async def test_protected_event_needs_its_author_authenticated(our_relay: str) -> None:
    keys = Keys.generate()
    protected = sign_event(keys, kind=1, tags=[["-"]])
    async with wire(our_relay) as conn:
        await conn.send(["EVENT", protected.to_dict()])
        challenge = await conn.recv()
        assert challenge[0] == "AUTH"
        assert (await conn.recv())[:3] == ["OK", protected.id, False]
        auth = make_auth_event(keys, our_relay, challenge[1])
        await conn.send(["AUTH", auth.to_dict()])
        assert await conn.recv() == ["OK", auth.id, True, ""]
        assert await conn.publish(protected) == ["OK", protected.id, True, ""]


# -- nostr-sdk as the independent client --------------------------------------------------------


class SdkAuthenticator(nostr_sdk.Authenticator):  # type: ignore[misc]
    def __init__(self, keys: nostr_sdk.Keys) -> None:
        self.keys = keys

    async def make_auth_event(self, relay_url: Any, challenge: str) -> Any:
        tags = [
            nostr_sdk.Tag.parse(["relay", str(relay_url)]),
            nostr_sdk.Tag.parse(["challenge", challenge]),
        ]
        return nostr_sdk.EventBuilder(nostr_sdk.Kind(22242), "").tags(tags).finalize(self.keys)


@pytest.fixture
async def sdk_callbacks_loop() -> AsyncIterator[None]:
    """nostr-sdk runs Python callbacks (our Authenticator) on a loop it must be told about.

    The setting is process-wide: reset it afterwards (None means "the running loop"), or
    every later nostr-sdk test would find this test's closed loop.
    """
    nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
    try:
        yield
    finally:
        nostr_sdk.uniffi_set_event_loop(None)


@pytest.mark.usefixtures("sdk_callbacks_loop")
async def test_nostr_sdk_client_publishes_fetches_and_authenticates(our_relay_auth: str) -> None:
    keys = nostr_sdk.Keys.generate()
    client = nostr_sdk.ClientBuilder().authenticator(SdkAuthenticator(keys)).build()
    await client.add_relay(nostr_sdk.RelayUrl.parse(our_relay_auth))
    await client.connect()
    try:
        note = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "from nostr-sdk \x1f").finalize(keys)
        out = await client.send_event(note)
        assert out.failed == {}
        assert len(out.success) == 1
        other = nostr_sdk.Keys.generate()
        wrap = (
            nostr_sdk.EventBuilder(nostr_sdk.Kind(1059), "sealed")
            .tags([nostr_sdk.Tag.parse(["p", keys.public_key().to_hex()])])
            .finalize(other)
        )
        assert (await client.send_event(wrap)).failed == {}
        flt = nostr_sdk.Filter().kinds([nostr_sdk.Kind(1), nostr_sdk.Kind(1059)])
        events = await client.fetch_events(
            nostr_sdk.ReqTarget.auto([flt]), timeout=timedelta(seconds=5)
        )
        got = {e.id().to_hex() for e in events}
        assert got == {note.id().to_hex(), wrap.id().to_hex()}
    finally:
        await client.shutdown()


async def test_many_connections_pipelining_all_get_ok_and_are_stored(our_relay: str) -> None:
    keys = [Keys.generate() for _ in range(4)]
    batches = [[sign_event(k, kind=5100, content=str(i)) for i in range(100)] for k in keys]

    async def publish_all(batch: list[Event]) -> list[list[Any]]:
        async with wire(our_relay) as conn:
            for event in batch:
                await conn.send(["EVENT", event.to_dict()])
            return [await conn.recv() for _ in batch]

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(publish_all(b)) for b in batches]
    for task, batch in zip(tasks, batches, strict=True):
        assert task.result() == [["OK", e.id, True, ""] for e in batch]
    async with wire(our_relay) as conn:
        total = await conn.count("c", {"authors": [k.public_key for k in keys]})
    assert total == ["COUNT", "c", {"count": 400}]
