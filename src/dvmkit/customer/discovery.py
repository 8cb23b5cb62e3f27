"""Discovery: which DVMs serve a category or kind, and which of them are alive.

Announcements come in two kinds (DESIGN.md §4.2): kind 11999 (modern, ``t`` per category, ``k``
per kind) and NIP-89 kind 31990 (legacy, ``k`` per kind). Liveness comes from kind 11998
heartbeats: alive while the latest beat is at most 900 s old, as Amethyst decides (SPECS.md
§2.5). Relays may ignore a filter or send hostile events, so everything they return is checked
again here; an announcement that does not parse is skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dvmkit.customer.values import DVMInfo
from dvmkit.errors import ProtocolError
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


def announcements_by_dvm(events: Iterable[Event], target: Target) -> dict[str, list[Any]]:
    """The parsed announcements that serve ``target``, grouped by author."""
    found: dict[str, list[Any]] = {}
    for event in events:
        if event.kind not in (ANNOUNCEMENT_KIND, NIP89_KIND):
            continue
        try:
            announcement = parse_announcement(event)
        except ProtocolError:
            continue
        if matches(announcement, target):
            found.setdefault(event.pubkey, []).append(announcement)
    return found


def latest_beats(events: Iterable[Event]) -> dict[str, Heartbeat]:
    """Each author's newest heartbeat."""
    beats: dict[str, Heartbeat] = {}
    for event in events:
        if event.kind != HEARTBEAT_KIND:
            continue
        try:
            beat = parse_heartbeat(event)
        except ProtocolError:
            continue
        known = beats.get(beat.pubkey)
        if known is None or beat.created_at > known.created_at:
            beats[beat.pubkey] = beat
    return beats


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


def rank(dvms: Iterable[DVMInfo]) -> list[DVMInfo]:
    """Live DVMs first (least loaded, then cheapest), dead ones after, each group stable."""

    def key(info: DVMInfo) -> tuple[bool, float, int, str]:
        load = info.load if info.load is not None else 1.0
        price = info.price_msat if info.price_msat is not None else 1 << 62
        return (not info.alive, load, price, info.name.lower())

    return sorted(dvms, key=key)
