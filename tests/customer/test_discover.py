"""Discovery: announcements (11999, 31990) and heartbeats (11998), live and dead DVMs."""

from __future__ import annotations

import time

import pytest

from dvmkit.customer import DVMInfo
from dvmkit.customer.discovery import legacy_kind, parse_target, rank
from dvmkit.errors import NoAnswer
from dvmkit.nostr.event import UnsignedEvent, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.announce import announcement_event, nip89_event
from dvmkit.protocol.heartbeat import heartbeat_event
from dvmkit.protocol.job import Dialect
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

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


async def publish(relay: str, keys: Keys, *events: UnsignedEvent) -> None:
    async with RelayPool(relays=[relay]) as pool:
        for event in events:
            result = await pool.publish(event.sign(keys), wait="all")
            assert result.ok, result


def legacy_handler(keys: Keys, d: str, name: str, now: int) -> UnsignedEvent:
    return nip89_event(provider=keys.public_key, created_at=now, d=d, kinds=[5050], name=name)


def beat(keys: Keys, d: str, created_at: int, interval: int = 300) -> UnsignedEvent:
    return heartbeat_event(
        provider=keys.public_key,
        created_at=created_at,
        d=d,
        load=0.0,
        queue=0,
        interval=interval,
    )


async def test_legacy_dvms_under_one_key_are_matched_to_beats_by_d(our_relay_url: str) -> None:
    keys = Keys.generate()
    now = int(time.time())
    await publish(
        our_relay_url,
        keys,
        legacy_handler(keys, "alpha", "Alpha", now),
        legacy_handler(keys, "beta", "Beta", now),
        beat(keys, "alpha", now - 10),
    )
    async with customer_on(our_relay_url) as customer:
        found = {info.d: info for info in await customer.discover(5050)}
        assert set(found) == {"alpha", "beta"}
        assert {info.pubkey for info in found.values()} == {keys.public_key}
        alpha, beta = found["alpha"], found["beta"]
        assert (alpha.name, alpha.alive, alpha.last_beat) == ("Alpha", True, now - 10)
        # Alpha's beat names alpha: it says nothing about beta, which never beat.
        assert (beta.name, beta.alive, beta.last_beat) == ("Beta", False, None)
        assert [info.d for info in await customer.discover(5050)] == ["alpha", "beta"]
        assert not customer.is_dead(keys.public_key)

    # 11998 is replaceable: a relay keeps one beat per key, so beta's beat replaces alpha's
    # and of two DVMs under one key, at most one looks alive per relay.
    await publish(our_relay_url, keys, beat(keys, "beta", now - 5))
    async with customer_on(our_relay_url) as customer:
        found = {info.d: info for info in await customer.discover(5050)}
        assert (found["alpha"].alive, found["beta"].alive) == (False, True)
        assert found["alpha"].last_beat is None


async def test_each_d_keeps_its_own_beat_across_relays(our_relay_url: str) -> None:
    keys = Keys.generate()
    now = int(time.time())
    async with Relay(port=0) as other:
        # Each relay holds one beat of the key: alpha's fresh one here, beta's stale one there.
        await publish(
            our_relay_url,
            keys,
            legacy_handler(keys, "alpha", "Alpha", now),
            legacy_handler(keys, "beta", "Beta", now),
            beat(keys, "alpha", now - 10),
        )
        await publish(other.url, keys, beat(keys, "beta", now - 2000, interval=2000))
        async with customer_on([our_relay_url, other.url]) as customer:
            found = {info.d: info for info in await customer.discover(5050)}
    alpha, beta = found["alpha"], found["beta"]
    assert (alpha.alive, alpha.last_beat) == (True, now - 10)
    assert (beta.alive, beta.last_beat) == (False, now - 2000)
    assert beta.beat_age is not None
    assert beta.beat_age >= 2000
    assert [info.d for info in rank([beta, alpha])] == ["alpha", "beta"]


async def test_a_beat_without_d_falls_back_to_the_pubkey(relay_url: str) -> None:
    keys = Keys.generate()
    now = int(time.time())
    plain = sign_event(
        keys, kind=11998, content="Alive and kicking", tags=[("expiration", str(now + 300))]
    )
    async with RelayPool(relays=[relay_url]) as pool:
        for event in (legacy_handler(keys, "solo", "Solo", now).sign(keys), plain):
            assert (await pool.publish(event, wait="all")).ok
    async with customer_on(relay_url) as customer:
        (info,) = await customer.discover(5050)
    assert (info.d, info.alive, info.last_beat) == ("solo", True, plain.created_at)
    assert info.to_dict()["d"] == "solo"


def info_of(pubkey: str, kinds: tuple[int, ...], *, alive: bool = True) -> DVMInfo:
    return DVMInfo(
        pubkey=pubkey,
        name="",
        about="",
        picture="",
        categories=("text",),
        kinds=kinds,
        dialects=(Dialect.LEGACY,),
        price_msat=0,
        payment_methods=(),
        encryption=False,
        relays=(),
        params={},
        last_beat=None,
        beat_age=None,
        load=None,
        queue=None,
        alive=alive,
    )


def test_legacy_kind_is_the_one_most_live_dvms_of_the_category_serve() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    dvms = [
        info_of(a, (25000, 5002)),
        info_of(b, (5050, 25000)),
        info_of(c, (5050,)),
        info_of("d" * 64, (5001, 5001, 5003), alive=False),
    ]
    assert legacy_kind(dvms, "text") == 5050
    assert legacy_kind(dvms[:2], "text") == 5002  # a tie: the best-ranked DVM's
    assert legacy_kind(dvms, "text", to=a) == 5002
    with pytest.raises(NoAnswer, match=r"dead ones announce 5001, 5003") as caught:
        legacy_kind(dvms, "text", to="d" * 64)
    assert "--legacy" in str(caught.value)
    with pytest.raises(NoAnswer, match=r"no DVM of category 'text' announces a legacy"):
        legacy_kind([info_of(a, (25000,))], "text")
    with pytest.raises(NoAnswer, match=r"no DVM of category 'text'"):
        legacy_kind([], "text")
