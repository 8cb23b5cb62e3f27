"""The trending DVM: notes ranked by the reactions, reposts and zaps seen on the relay."""

from __future__ import annotations

import time

import pytest

from dvmkit.dvms import trending
from dvmkit.dvms.notes import WEIGHTS
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys

from .conftest import (
    FAST,
    WAY_NAMES,
    ask,
    client_on,
    contents,
    customer_on,
    e_list,
    error_of,
    every_way,
    note,
    publish_all,
    result_of,
)


def engage(keys: Keys, kind: int, target: Event, *, content: str = "+") -> Event:
    tags = [["e", target.id], ["p", target.pubkey]]
    if kind == 7:
        # NIP-25: the reacted-to note is the last e tag; an earlier one is the thread root.
        tags = [["e", "ab" * 32], *tags]
    return sign_event(keys, kind=kind, content=content, tags=tags, created_at=int(time.time()))


async def test_ranks_recent_notes_by_weighted_engagement(relay_url: str) -> None:
    now = int(time.time())
    fans = [Keys.generate() for _ in range(4)]
    author = Keys.generate()
    notes = [note(author, f"note {n}", now - 600 + n) for n in range(4)]
    old = note(author, "old but loved", now - 5 * 86_400)
    plan = {  # note -> engagement kinds it gets
        0: [7, 7, 7],  # 3
        1: [6, 9735],  # 5
        2: [7],  # 1 (its downvote below does not count)
        3: [],
    }
    events = [*notes, old]
    for n, kinds in plan.items():
        events += [engage(fans[i], kind, notes[n]) for i, kind in enumerate(kinds)]
    events.append(engage(fans[3], 7, notes[2], content="-"))
    events += [engage(fan, 7, old) for fan in fans]
    await publish_all(relay_url, events)
    score = {notes[n].id: sum(WEIGHTS[k] for k in kinds) for n, kinds in plan.items() if kinds}
    expected = sorted(score, key=lambda i: -score[i])
    async with (
        trending.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        ranked = await ask(customer, 5300)
        top = await ask(customer, 5300, params=[("max_results", "1"), ("user", author.public_key)])
        all_time = await ask(customer, 5300, params=[("since", str(now - 7 * 86_400))])
    assert result_of(ranked) == [["e", i] for i in expected]
    assert result_of(top) == [["e", expected[0]]]
    score[old.id] = WEIGHTS[7] * len(fans)
    assert result_of(all_time) == [["e", i] for i in sorted(score, key=lambda i: -score[i])]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ([("max_results", "-1")], "INVALID_PARAMETER"),
        ([("max_results", "many")], "INVALID_PARAMETER"),
        ([("since", "-1")], "INVALID_PARAMETER"),
        ([("p", "x")], "INVALID_PARAMETER"),
    ],
)
async def test_malformed_params_get_precise_errors(
    relay_url: str, params: list[tuple[str, str]], code: str
) -> None:
    async with (
        trending.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5300, params=params)
    assert error_of(answer)[0] == code


async def test_trending_through_the_customer_client_every_way(any_relay_url: str) -> None:
    relay = any_relay_url
    now = int(time.time())
    fans = [Keys.generate() for _ in range(5)]
    author = Keys.generate()
    notes = [note(author, f"note {n}", now - 900 + 60 * n) for n in range(6)]
    old = note(author, "from last week", now - 3 * 86_400)
    # Engagement kinds per note: ties (notes 1 and 4, 0 and 5) rank newest first.
    plan: dict[Event, list[int]] = {
        notes[0]: [7, 7],
        notes[1]: [6, 7, 9735],
        notes[2]: [7, 7, 7, 7, 7],
        notes[4]: [9735, 6, 7],
        notes[5]: [6],
        old: [9735, 9735],
    }
    events = [*notes, old]
    for target, kinds in plan.items():
        events += [engage(fans[i], kind, target) for i, kind in enumerate(kinds)]
    events.append(engage(fans[4], 7, notes[3], content="-"))  # a downvote ranks nothing
    await publish_all(relay, events)
    score = {e: sum(WEIGHTS[k] for k in kinds) for e, kinds in plan.items()}

    def ranking(since: int) -> list[str]:
        recent = [e for e in score if e.created_at >= since]
        return [e.id for e in sorted(recent, key=lambda e: (-score[e], -e.created_at, e.id))]

    dvm = trending.build(relays=[relay], limits=FAST)
    async with dvm.running(), client_on(relay) as client:
        today = await every_way(client, dvm)
        top = await every_way(client, dvm, params={"max_results": 3})
        week = await every_way(client, dvm, params={"since": now - 7 * 86_400})
    assert old.id not in ranking(now - 86_400)
    assert contents(today) == dict.fromkeys(WAY_NAMES, e_list(ranking(now - 86_400)))
    assert contents(top) == dict.fromkeys(WAY_NAMES, e_list(ranking(now - 86_400)[:3]))
    assert contents(week) == dict.fromkeys(WAY_NAMES, e_list(ranking(now - 7 * 86_400)))
