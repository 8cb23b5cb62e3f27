"""DVM heartbeats, kind 11998: how a client tells a live DVM from a dead one.

nips PR #2465 and Amethyst PR #4069 (SPECS.md §2.5): a DVM beats every 300 s by default with an
``expiration`` tag, its ``d`` equal to its NIP-89 ``d`` (what Amethyst matches on), and counts as
alive while its latest beat is at most 900 s old. dvmkit's beat (DESIGN.md §4.2) also carries
``status``, ``load`` and ``queue``. Others send plain text content ("Alive and kicking" from
nostrdvm, a status text in #1941), so the parser reads JSON when it finds an object and keeps
anything else as a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from dvmkit.errors import ProtocolError
from dvmkit.nostr import nip40
from dvmkit.nostr.event import Event, UnsignedEvent

HEARTBEAT_KIND = 11998
DEFAULT_INTERVAL = 300
#: Amethyst's rule: alive while the latest beat is at most this old.
ALIVE_WINDOW = 900
# Beats expire after three missed intervals: that is the alive window at the default interval.
_EXPIRY_INTERVALS = 3
_MAX_NOTE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One beat: the provider's status, load (0..1) and queue depth when it said them."""

    pubkey: str
    d: str | None
    status: str | None
    load: float | None
    queue: int | None
    created_at: int
    expiration: int | None
    #: free-text content from implementations that send text, cut to 1024 characters.
    note: str

    def is_alive(self, now: float, *, window: int = ALIVE_WINDOW) -> bool:
        """True while this beat is at most ``window`` seconds old and has not expired."""
        if self.expiration is not None and self.expiration <= now:
            return False
        return now - self.created_at <= window


def heartbeat_event(
    *,
    provider: str,
    created_at: int,
    d: str,
    load: float,
    queue: int,
    interval: int = DEFAULT_INTERVAL,
    status: str = "online",
) -> UnsignedEvent:
    """A kind 11998 heartbeat.

    Args:
        provider: the DVM's pubkey.
        created_at: unix seconds.
        d: the DVM's NIP-89 ``d`` value.
        load: busy fraction, clamped to 0..1.
        queue: jobs waiting.
        interval: seconds between beats; the beat expires after three of them.
        status: ``online`` unless the DVM says otherwise.

    Raises:
        ProtocolError: an empty ``d``, a load that is not a finite number, a negative queue,
            or a non-positive interval.
    """
    if not d:
        raise ProtocolError("a heartbeat needs the DVM's non-empty d identifier")
    if isinstance(load, bool) or not isinstance(load, (int, float)) or not math.isfinite(load):
        raise ProtocolError("load is a finite number between 0 and 1")
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise ProtocolError("queue is a non-negative whole number of jobs")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
        raise ProtocolError("interval is a positive whole number of seconds")
    load = round(min(max(float(load), 0.0), 1.0), 4)
    content = orjson.dumps({"status": status, "load": load, "queue": queue}).decode()
    tags = (
        ("status", status),
        ("expiration", str(created_at + interval * _EXPIRY_INTERVALS)),
        ("d", d),
        ("load", f"{load:.2f}"),
    )
    return UnsignedEvent(provider, created_at, HEARTBEAT_KIND, tags, content)


def parse_heartbeat(event: Event) -> Heartbeat:
    """Read a kind 11998 heartbeat from any implementation.

    Tags win over content; a load outside 0..1 or a negative queue reads as absent.

    Raises:
        ProtocolError: another kind.
    """
    if event.kind != HEARTBEAT_KIND:
        raise ProtocolError(f"kind {event.kind} is not a heartbeat (11998)")
    body: dict[str, object] = {}
    note = ""
    if event.content.lstrip().startswith("{"):
        try:
            decoded = orjson.loads(event.content)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            body = decoded
    if not body:
        note = event.content[:_MAX_NOTE_CHARS]
    status = event.tag_value("status")
    if status is None and isinstance(body.get("status"), str):
        status = str(body["status"])
    load_tag = event.tag_value("load")
    return Heartbeat(
        pubkey=event.pubkey,
        d=event.tag_value("d"),
        status=status,
        load=_load(load_tag if load_tag is not None else body.get("load")),
        queue=_queue(event.tag_value("queue") or body.get("queue")),
        created_at=event.created_at,
        expiration=nip40.expiration(event),
        note=note,
    )


def _load(value: object) -> float | None:
    if isinstance(value, str):
        if len(value) > 32:
            return None
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    load = float(value)
    return load if 0.0 <= load <= 1.0 else None


def _queue(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
