"""NIP-42: authentication of clients to relays.

A relay sends ``["AUTH", <challenge>]``; the client answers ``["AUTH", <event>]`` with a signed
kind-22242 event tagged ``["relay", <url>]`` and ``["challenge", <challenge>]``. The relay
checks the kind, both tags and that ``created_at`` is close to now (the NIP suggests about ten
minutes), then answers ``OK``. Pure: the clock is an argument.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import Event, parse_event, sign_event
from dvmkit.nostr.keys import Keys

AUTH_KIND = 22242
DEFAULT_WINDOW = 600  # seconds either side of now (NIP-42: "within ~10 minutes")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_ANY_HOST = frozenset({"", "0.0.0.0", "::"})


def make_auth_event(
    keys: Keys, relay_url: str, challenge: str, created_at: int | None = None
) -> Event:
    """Sign the kind-22242 event that answers a relay's AUTH challenge.

    Args:
        keys: the identity to authenticate as.
        relay_url: the relay's websocket URL, as the client connected to it.
        challenge: the string from the relay's ``["AUTH", challenge]`` message.
        created_at: the timestamp; now when omitted.

    Returns:
        The signed event, to send as ``["AUTH", event]``.
    """
    return sign_event(
        keys,
        kind=AUTH_KIND,
        tags=(("relay", relay_url), ("challenge", challenge)),
        created_at=created_at,
    )


def verify_auth_event(
    event: Event | Mapping[str, Any] | str | bytes,
    relay_url: str,
    challenge: str,
    now: float | None = None,
    window: int = DEFAULT_WINDOW,
) -> str:
    """Check a client's AUTH event and return the pubkey it authenticates.

    Args:
        event: the event from ``["AUTH", event]``: an :class:`Event`, its decoded JSON object
            or its JSON text. Its id and signature are always checked.
        relay_url: this relay's public websocket URL.
        challenge: the challenge this relay sent on this connection.
        now: the current unix time; the system clock when omitted.
        window: how many seconds ``created_at`` may differ from ``now``.

    Returns:
        The authenticated pubkey (64 lowercase hex characters).

    Raises:
        InvalidEvent: the signature, kind, relay or challenge tag, or timestamp is wrong.
    """
    ev = parse_event(event.to_dict() if isinstance(event, Event) else event)
    if ev.kind != AUTH_KIND:
        raise InvalidEvent(f"an AUTH event must be kind {AUTH_KIND}", event_id=ev.id)
    current = time.time() if now is None else now
    if abs(ev.created_at - current) > window:
        raise InvalidEvent("AUTH event created_at is too far from now", event_id=ev.id)
    if ev.tag_value("challenge") != challenge:
        raise InvalidEvent("AUTH event does not answer this connection's challenge", event_id=ev.id)
    tagged = ev.tag_value("relay")
    if tagged is None or not same_relay(tagged, relay_url):
        raise InvalidEvent("AUTH event names another relay", event_id=ev.id)
    return ev.pubkey


def same_relay(tagged: str, ours: str) -> bool:
    """Whether the URL in an AUTH ``relay`` tag names the relay at ``ours``.

    NIP-42 asks relays to check at least the domain, and only the host is compared: behind a
    proxy the port and scheme clients see differ from the listening ones, and the challenge
    already binds the event to one connection. Loopback names are interchangeable, and a
    relay listening on every interface (0.0.0.0) accepts any host.
    """
    try:
        theirs, mine = urlsplit(tagged.strip()), urlsplit(ours)
    except ValueError:
        return False
    if theirs.scheme.lower() not in ("ws", "wss"):
        return False
    their_host, my_host = (theirs.hostname or ""), (mine.hostname or "")
    if my_host in _ANY_HOST or their_host == my_host:
        return True
    return their_host in _LOOPBACK and my_host in _LOOPBACK
