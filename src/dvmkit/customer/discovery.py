"""Discovery: which DVMs serve a category or kind, and which of them are alive.

Announcements come in two kinds (DESIGN.md §4.2): kind 11999 (modern, ``t`` per category, ``k``
per kind) and NIP-89 kind 31990 (legacy, ``k`` per kind). Liveness comes from kind 11998
heartbeats: alive while the latest beat is at most 900 s old, as Amethyst decides (SPECS.md
§2.5). Relays may ignore a filter or send hostile events, so everything they return is checked
again here; an announcement that does not parse is skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from dvmkit.customer.values import DVMInfo
from dvmkit.errors import NoAnswer, ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.protocol.announce import (
    ANNOUNCEMENT_KIND,
    NIP89_KIND,
    DVMAnnouncement,
    parse_announcement,
)
from dvmkit.protocol.heartbeat import HEARTBEAT_KIND, Heartbeat, parse_heartbeat
from dvmkit.protocol.job import LEGACY_MAX_KIND, LEGACY_MIN_KIND, MODERN_KIND, Dialect

Target = str | int | None
# A relay answering a discovery query with thousands of announcements is either huge or
# hostile; the heartbeat query names each author, so bound it.
MAX_DVMS = 500


def parse_target(target: str | int | None) -> Target:
    """A category name, a request kind (a number, as text or int), or None for all.

    Raises:
        ValueError: an empty category, or a number that is not a request kind.
    """
    if target is None:
        return None
    if isinstance(target, str):
        text = target.strip()
        if not text:
            raise ValueError("an empty category: name one (e.g. text, pow) or a kind 5000-5999")
        if not (text.isascii() and text.isdigit()):
            return text
        target = int(text) if len(text) <= 6 else -1
    if target != MODERN_KIND and not LEGACY_MIN_KIND <= target <= LEGACY_MAX_KIND:
        raise ValueError(f"kind {target} is not a job request kind: use 5000-5999 or a category")
    return target


def announcement_filters(target: Target) -> list[dict[str, Any]]:
    """The filters that find announcements for ``target`` (see :func:`parse_target`)."""
    kinds = [ANNOUNCEMENT_KIND, NIP89_KIND]
    if target is None:
        return [{"kinds": kinds}]
    if isinstance(target, int):
        return [{"kinds": kinds, "#k": [str(target)]}]
    # Relays index single-letter tags only: a category is found by its `t` tag.
    return [{"kinds": kinds, "#t": [target]}]


def heartbeat_filter(pubkeys: Sequence[str]) -> dict[str, Any]:
    return {"kinds": [HEARTBEAT_KIND], "authors": list(pubkeys)}


def matches(announcement: DVMAnnouncement, target: Target) -> bool:
    """True when the announcement serves ``target`` (the relay's filter, checked again)."""
    if target is None:
        return True
    if isinstance(target, int):
        return target in announcement.kinds
    return target in announcement.categories


#: One DVM: its key, and the NIP-89 ``d`` of a legacy-only DVM (None for one with an 11999).
DVMKey = tuple[str, str | None]


def announcements_by_dvm(
    events: Iterable[Event], target: Target
) -> dict[DVMKey, list[DVMAnnouncement]]:
    """The parsed announcements that serve ``target``, grouped by DVM.

    A key with a kind 11999 is one DVM (11999 is replaceable: one per key), its 31990s
    included. A key with only NIP-89 31990s may run several DVMs, one per ``d`` (31990 is
    addressable by ``d``, and Amethyst lists each ``d`` as its own DVM).
    """
    by_key: dict[str, list[DVMAnnouncement]] = {}
    for event in events:
        if event.kind not in (ANNOUNCEMENT_KIND, NIP89_KIND):
            continue
        try:
            announcement = parse_announcement(event)
        except ProtocolError:
            continue
        if matches(announcement, target):
            by_key.setdefault(event.pubkey, []).append(announcement)
    found: dict[DVMKey, list[DVMAnnouncement]] = {}
    for pubkey, announcements in by_key.items():
        if any(a.kind == ANNOUNCEMENT_KIND for a in announcements):
            found[(pubkey, None)] = announcements
            continue
        for announcement in announcements:
            found.setdefault((pubkey, announcement.d), []).append(announcement)
    return found


def latest_beats(events: Iterable[Event]) -> dict[DVMKey, Heartbeat]:
    """The newest heartbeat per author and ``d`` (several relays may hold different ones)."""
    beats: dict[DVMKey, Heartbeat] = {}
    for event in events:
        if event.kind != HEARTBEAT_KIND:
            continue
        try:
            beat = parse_heartbeat(event)
        except ProtocolError:
            continue
        known = beats.get((beat.pubkey, beat.d))
        if known is None or beat.created_at > known.created_at:
            beats[(beat.pubkey, beat.d)] = beat
    return beats


def beat_for(
    dvm: DVMKey, beats: Mapping[DVMKey, Heartbeat], siblings: Collection[str | None]
) -> Heartbeat | None:
    """The heartbeat that tells whether ``dvm`` is alive.

    A legacy-only DVM's beat is the one whose ``d`` is its NIP-89 ``d``, as Amethyst matches
    them (SPECS.md §2.5). Otherwise the key's newest beat counts (falling back to the pubkey),
    except a beat naming another of the key's DVMs (``siblings``: the ``d`` of each): that
    one says nothing about this DVM.

    Note: kind 11998 is replaceable, so a relay keeps one beat per key: of several DVMs under
    one key, at most one looks alive per relay (the one that beat last).
    """
    pubkey, d = dvm
    if d is not None and (pubkey, d) in beats:
        return beats[(pubkey, d)]
    candidates = [
        beat
        for (pk, beat_d), beat in beats.items()
        if pk == pubkey and (d is None or beat_d is None or beat_d not in siblings)
    ]
    return max(candidates, key=lambda beat: beat.created_at, default=None)


def merge(
    pubkey: str, announcements: Sequence[DVMAnnouncement], beat: Heartbeat | None, now: float
) -> DVMInfo:
    """One :class:`DVMInfo` from a DVM's announcements (11999 first, newest first) and beat."""
    ordered = sorted(announcements, key=lambda a: (a.kind != ANNOUNCEMENT_KIND, -a.created_at))
    main = ordered[0]

    def union(values: Iterable[Iterable[Any]]) -> tuple[Any, ...]:
        return tuple(dict.fromkeys(v for group in values for v in group))

    dialects = union(a.dialects for a in ordered)
    prices = [a.price_msat for a in ordered if a.price_msat is not None]
    params = next((a.params for a in ordered if a.params), {})
    return DVMInfo(
        pubkey=pubkey,
        d=next((a.d for a in ordered if a.d is not None), None),
        name=next((a.name for a in ordered if a.name), ""),
        about=next((a.about for a in ordered if a.about), ""),
        picture=next((a.picture for a in ordered if a.picture), ""),
        categories=union(a.categories for a in ordered),
        kinds=union(a.kinds for a in ordered),
        dialects=tuple(d for d in (Dialect.MODERN, Dialect.LEGACY) if d in dialects),
        # An announcement without a price tag is free: 11999 writes one only above zero.
        price_msat=prices[0] if prices else (0 if main.kind == ANNOUNCEMENT_KIND else None),
        payment_methods=union(a.payment_methods for a in ordered),
        encryption=any(a.encryption for a in ordered),
        relays=union(a.relays for a in ordered),
        params=params,
        last_beat=None if beat is None else beat.created_at,
        beat_age=None if beat is None else max(0.0, now - beat.created_at),
        load=None if beat is None else beat.load,
        queue=None if beat is None else beat.queue,
        alive=beat is not None and beat.is_alive(now),
    )


def describe(
    found: Mapping[DVMKey, Sequence[DVMAnnouncement]],
    beats: Mapping[DVMKey, Heartbeat],
    now: float,
) -> list[DVMInfo]:
    """One :class:`DVMInfo` per DVM of :func:`announcements_by_dvm`, ranked (:func:`rank`)."""
    siblings: dict[str, set[str | None]] = {}
    for pubkey, d in found:
        siblings.setdefault(pubkey, set()).add(d)
    infos = [
        merge(key[0], found[key], beat_for(key, beats, siblings[key[0]]), now)
        for key in sorted(found, key=lambda k: (k[0], k[1] or ""))[:MAX_DVMS]
    ]
    return rank(infos)


def legacy_kind(dvms: Sequence[DVMInfo], category: str, *, to: str | None = None) -> int:
    """The NIP-90 kind to ask a ``category`` in, from what its live DVMs announce.

    The kind most live DVMs of the category serve (``to``: only that DVM), ties going to the
    best-ranked DVM's; the category itself has no legacy kind (NIP-90 knows only kinds).

    Args:
        dvms: discovery's answer for ``category``, ranked.
        category: the category asked for (for the message).
        to: the hex pubkey of the one DVM asked, or None.

    Raises:
        NoAnswer: no live DVM of the category announces a kind 5000-5999; the message says
            which kinds dead DVMs announce, if any.
    """
    counts: dict[int, int] = {}
    others: dict[int, None] = {}
    for info in dvms:
        if to is not None and info.pubkey != to:
            continue
        for kind in (k for k in info.kinds if LEGACY_MIN_KIND <= k <= LEGACY_MAX_KIND):
            if info.alive:
                counts[kind] = counts.get(kind, 0) + 1
            else:
                others[kind] = None
    if counts:
        # max() keeps the first of equals: dicts keep insertion (rank) order.
        return max(counts, key=lambda kind: counts[kind])
    who = "the DVM you named" if to is not None else f"category {category!r}"
    if others:
        listed = ", ".join(map(str, sorted(others)))
        raise NoAnswer(
            f"no live DVM of {who} serves a legacy NIP-90 kind; dead ones announce {listed}: "
            "ask without --legacy, or give a kind (dvm discover shows who is alive)"
        )
    raise NoAnswer(
        f"no DVM of {who} announces a legacy NIP-90 kind: ask without --legacy (the modern "
        "dialect), or give a kind 5000-5999 (dvm discover lists the kinds)"
    )


def rank(dvms: Iterable[DVMInfo]) -> list[DVMInfo]:
    """Live DVMs first (least loaded, then cheapest), dead ones after, each group stable."""

    def key(info: DVMInfo) -> tuple[bool, float, int, str]:
        load = info.load if info.load is not None else 1.0
        price = info.price_msat if info.price_msat is not None else 1 << 62
        return (not info.alive, load, price, info.name.lower())

    return sorted(dvms, key=key)
