"""NIP-11: the relay information document.

A relay serves a JSON document at its websocket URL over plain HTTP(S) when asked with
``Accept: application/nostr+json``. Its ``limitation`` object tells a client how large a
message may be, how many subscriptions and filters it may open and whether it must AUTH; the
pool respects those limits. Relays in the wild fill the document sloppily, so a field of the
wrong type is treated as absent rather than failing the whole document.

The request is a small HTTP/1.1 GET over an asyncio stream (one request, ``Connection:
close``), bounded in size and time; redirects are not followed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from dvmkit import http
from dvmkit.errors import ProtocolError, RelayError
from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter

MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Limitation:
    """NIP-11 ``limitation``; ``None`` means the relay did not say."""

    max_message_length: int | None = None
    max_subscriptions: int | None = None
    max_filters: int | None = None  # dropped from the current NIP text; strfry-era relays send it
    max_limit: int | None = None
    max_subid_length: int | None = None
    max_event_tags: int | None = None
    max_content_length: int | None = None
    min_pow_difficulty: int | None = None
    auth_required: bool | None = None
    payment_required: bool | None = None
    restricted_writes: bool | None = None
    created_at_lower_limit: int | None = None
    created_at_upper_limit: int | None = None
    default_limit: int | None = None

    # What the pool checks before sending, so that a relay's known limit is a precise local
    # refusal instead of a dropped socket or a silent truncation. Each returns "" when fine.

    def refuse_message(self, frame: bytes) -> str:
        """Why ``frame`` must not be sent (longer than ``max_message_length``), or ``""``."""
        limit = self.max_message_length
        if limit is not None and len(frame) > limit:
            return (
                f"invalid: message of {len(frame)} bytes exceeds the relay's NIP-11 limit {limit}"
            )
        return ""

    def refuse_event(self, event: Event) -> str:
        """Why the relay would refuse ``event`` for its tags or content length, or ``""``."""
        if self.max_event_tags is not None and len(event.tags) > self.max_event_tags:
            return f"invalid: {len(event.tags)} tags exceed the relay's limit {self.max_event_tags}"
        if self.max_content_length is not None and len(event.content) > self.max_content_length:
            return f"invalid: content exceeds the relay's limit {self.max_content_length}"
        return ""

    def refuse_req(self, *, open_subscriptions: int, filters: int) -> str:
        """Why a REQ with ``filters`` filters, next to ``open_subscriptions``, would be refused."""
        if self.max_subscriptions is not None and open_subscriptions >= self.max_subscriptions:
            return f"dvmkit: relay allows {self.max_subscriptions} subscriptions (NIP-11)"
        if self.max_filters is not None and filters > self.max_filters:
            return f"dvmkit: relay allows {self.max_filters} filters per REQ (NIP-11)"
        return ""

    def cap_limits(self, filters: tuple[Filter, ...]) -> tuple[Filter, ...]:
        """``filters`` with each ``limit`` lowered to ``max_limit`` (relays clamp it anyway)."""
        cap = self.max_limit
        if cap is None:
            return filters
        return tuple(
            replace(f, limit=cap) if f.limit is not None and f.limit > cap else f for f in filters
        )


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """A parsed NIP-11 document. ``extra`` holds the decoded JSON object as sent."""

    name: str | None = None
    description: str | None = None
    pubkey: str | None = None
    contact: str | None = None
    software: str | None = None
    version: str | None = None
    supported_nips: tuple[int, ...] = ()
    limitation: Limitation = field(default_factory=Limitation)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def supports(self, nip: int) -> bool:
        return nip in self.supported_nips


_INT_LIMITS = (
    "max_message_length",
    "max_subscriptions",
    "max_filters",
    "max_limit",
    "max_subid_length",
    "max_event_tags",
    "max_content_length",
    "min_pow_difficulty",
    "created_at_lower_limit",
    "created_at_upper_limit",
    "default_limit",
)
_BOOL_LIMITS = ("auth_required", "payment_required", "restricted_writes")


def parse_relay_info(raw: str | bytes) -> RelayInfo:
    """Parse a NIP-11 document.

    Raises:
        ProtocolError: the text is not JSON or not a JSON object.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"NIP-11 document is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("NIP-11 document must be a JSON object")
    raw_limits = data.get("limitation")
    limits: dict[str, Any] = {}
    if isinstance(raw_limits, dict):
        for key in _INT_LIMITS:
            value = raw_limits.get(key)
            if type(value) is int and value >= 0:
                limits[key] = value
        for key in _BOOL_LIMITS:
            value = raw_limits.get(key)
            if isinstance(value, bool):
                limits[key] = value
    nips = data.get("supported_nips")
    return RelayInfo(
        name=_str(data, "name"),
        description=_str(data, "description"),
        pubkey=_str(data, "pubkey"),
        contact=_str(data, "contact"),
        software=_str(data, "software"),
        version=_str(data, "version"),
        supported_nips=tuple(n for n in nips if type(n) is int) if isinstance(nips, list) else (),
        limitation=Limitation(**limits),
        extra=data,
    )


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def http_url(relay_url: str) -> str:
    """The HTTP(S) URL of a relay's NIP-11 document: ``ws://`` -> ``http://``, ``wss://`` ->
    ``https://``.

    Raises:
        RelayError: the URL has another scheme or no host.
    """
    parts = urlsplit(relay_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(
        parts.scheme.lower()
    )
    if scheme is None or not parts.hostname:
        raise RelayError("not a ws://, wss:// or http(s):// URL", url=relay_url)
    return parts._replace(scheme=scheme, fragment="").geturl()


async def fetch_relay_info(
    relay_url: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a timeout becomes a RelayError, not a cancel
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> RelayInfo:
    """Fetch and parse a relay's NIP-11 document.

    Args:
        relay_url: the relay's websocket (or http) URL.
        timeout: seconds for the whole exchange.
        max_bytes: the largest document accepted.

    Returns:
        The parsed document.

    Raises:
        RelayError: the relay cannot be reached, times out, answers with a status other than
            200, or sends a body larger than ``max_bytes``.
        ProtocolError: the body is not a JSON object.
    """
    url = http_url(relay_url)
    try:
        response = await http.get(
            url, accept="application/nostr+json", max_bytes=max_bytes, timeout=timeout
        )
    except http.HttpError as exc:
        raise RelayError(f"NIP-11 request failed: {exc}", url=relay_url) from None
    return parse_relay_info(response.body)
