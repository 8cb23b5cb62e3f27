"""Discovery: announcements (11999, 31990) and heartbeats (11998), live and dead DVMs."""

from __future__ import annotations

import time

import pytest

from dvmkit.customer.discovery import parse_target
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.announce import announcement_event, nip89_event
from dvmkit.protocol.heartbeat import heartbeat_event
from dvmkit.protocol.job import Dialect
from dvmkit.relay.pool import RelayPool

from .conftest import customer_on, echo_dvm


async def publish_dead_dvm(relay: str, *, beat_age: int, price_msat: int = 7000) -> str:
    """Announce a DVM (11999 and 31990) whose last heartbeat is ``beat_age`` seconds old."""
    keys = Keys.generate()
    now = int(time.time())
    pk = keys.public_key
    events = [
        announcement_event(
            provider=pk,
            created_at=now - beat_age,
            name="Ghost",
            categories=["text"],
            legacy_kinds=[5050],
            price_msat=price_msat,
            payment_methods=["bolt11"],
        ),
        nip89_event(provider=pk, created_at=now - beat_age, d="ghost", kinds=[5050], name="Ghost"),
        # Not yet expired (relays refuse expired events), but older than the 900 s window.
        heartbeat_event(
            provider=pk, created_at=now - beat_age, d="ghost", load=0.1, queue=0, interval=beat_age
        ),
    ]
    async with RelayPool(relays=[relay]) as pool:
        for event in events:
            result = await pool.publish(event.sign(keys), wait="all")
            assert result.ok, result
    return pk


async def test_discover_marks_dead_dvms_and_sorts_them_last(relay_url: str) -> None:
    dead = await publish_dead_dvm(relay_url, beat_age=2000)
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        for target in ("text", 5050, "5050"):
            found = await customer.discover(target)
            assert [d.pubkey for d in found] == [dvm.public_key, dead], target
            live, ghost = found
            assert live.alive
            assert not ghost.alive
            assert live.name == "Echo"
            assert ghost.name == "Ghost"
            assert live.beat_age is not None
            assert live.beat_age < 900
            assert ghost.beat_age is not None
            assert ghost.beat_age >= 2000
            assert set(live.dialects) == {Dialect.MODERN, Dialect.LEGACY}
            assert 5050 in live.kinds
            assert "text" in live.categories
            assert live.price_msat == 0
            assert ghost.price_msat == 7000
            assert ghost.payment_methods == ("bolt11",)
            assert "prefix" in live.params.get("properties", {})
            assert live.relays == (dvm.relays[0],)
        assert await customer.discover("translation") == []
        assert {d.pubkey for d in await customer.discover()} == {dvm.public_key, dead}


async def test_a_dvm_without_any_heartbeat_is_not_alive(our_relay_url: str) -> None:
    keys = Keys.generate()
    event = announcement_event(
        provider=keys.public_key, created_at=int(time.time()), name="Mute", categories=["text"]
    ).sign(keys)
    async with RelayPool(relays=[our_relay_url]) as pool:
        assert (await pool.publish(event)).ok
    async with customer_on(our_relay_url) as customer:
        (info,) = await customer.discover("text")
        assert (info.name, info.alive, info.last_beat, info.beat_age) == ("Mute", False, None, None)
        assert info.to_dict()["alive"] is False


async def test_hostile_announcements_are_skipped(our_relay_url: str) -> None:
    keys = Keys.generate()
    from dvmkit.nostr.event import sign_event

    now = int(time.time())
    junk = [
        sign_event(keys, kind=11999, content="not json", tags=[("t", "text")], created_at=now),
        sign_event(keys, kind=31990, content="[1,2]", tags=[("t", "text")], created_at=now),
        sign_event(keys, kind=11999, content="x" * 200_000, tags=[("t", "text")], created_at=now),
    ]
    async with RelayPool(relays=[our_relay_url]) as pool:
        for event in junk:
            await pool.publish(event)
    async with customer_on(our_relay_url) as customer:
        assert await customer.discover("text") == []


@pytest.mark.parametrize("bad", ["", "  ", "7000", "99999999", "0"])
def test_parse_target_refuses_non_request_kinds(bad: str) -> None:
    with pytest.raises(ValueError, match=r"category|kind"):
        parse_target(bad)


def test_parse_target_reads_categories_and_kinds() -> None:
    assert parse_target("text") == "text"
    assert parse_target(" 5050 ") == 5050
    assert parse_target(25000) == 25000
    assert parse_target(None) is None
