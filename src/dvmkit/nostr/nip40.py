"""NIP-40: the ``expiration`` tag.

Relays should reject events that are already expired and stop serving them once they expire;
NIP-40 "does not affect storage of ephemeral events". A malformed value is treated as "no
expiration", since the event itself is still valid Nostr.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dvmkit.nostr.event import Event


def expiration_tag(expires_at: int) -> tuple[str, str]:
    return ("expiration", str(int(expires_at)))


def expiration(event: Event) -> int | None:
    """The event's expiration as unix seconds, or None when it has none or it is malformed."""
    value = event.tag_value("expiration")
    # 20 digits hold any 64-bit time; the bound also keeps int() from its 4300-digit error.
    if value is None or not (value.isascii() and value.isdigit() and len(value) <= 20):
        return None
    return int(value)


def is_expired(event: Event, *, now: Callable[[], float] = time.time) -> bool:
    expires = expiration(event)
    return expires is not None and expires <= now()
