"""Checks the relay applies to client input, each failing with a NIP-01 machine-readable reason.

Cheap checks (shape, sizes, timestamps) run before the id hash and the BIP-340 verification,
so that a flood of oversized or stale events costs little. Reasons use the NIP-01 prefixes
(``invalid:``, ``blocked:``, ``auth-required:``, ...), so clients can tell what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dvmkit.errors import InvalidEvent, InvalidFilter
from dvmkit.nostr import nip40, nip42
from dvmkit.nostr.event import Event, event_from_dict_fast, verification_problem
from dvmkit.nostr.filters import Filter
from dvmkit.relay.limits import RelayLimits

_MAX_SQLITE_INT = 2**63 - 1


class Rejected(Exception):
    """Input refused; ``reason`` is the full NIP-01 message, prefix included."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Accepted(NamedTuple):
    """A verified event ready to store or deliver.

    A named tuple rather than a frozen dataclass: one is built per published event, and a
    tuple is immutable just the same at a fifth of the construction cost.
    """

    event: Event
    raw: bytes
    expiration: int | None


def validate_event(data: object, *, limits: RelayLimits, now: int) -> Accepted:
    """Check an event from an EVENT message: shape, limits, NIP-40, id and signature.

    Raises:
        Rejected: with an ``invalid:`` reason naming the first failed check.
    """
    event = event_from_dict_fast(data)
    if event is None:
        # The lean check only says yes or "look closer"; the precise one says what is wrong.
        try:
            event = Event.from_dict(data)
        except InvalidEvent as exc:
            raise Rejected(f"invalid: {exc}") from None
    if len(event.content) > limits.max_content_length:
        raise Rejected(f"invalid: content is longer than {limits.max_content_length} characters")
    if len(event.tags) > limits.max_event_tags:
        raise Rejected(f"invalid: event has more than {limits.max_event_tags} tags")
    if event.created_at > now + limits.created_at_upper_limit:
        raise Rejected("invalid: event created_at is too far in the future")
    if event.created_at < now - limits.created_at_lower_limit:
        raise Rejected("invalid: event created_at is too far in the past")
    expiration = _expiration(event)
    # NIP-40: relays SHOULD drop events that have already expired.
    if expiration is not None and expiration <= now:
        raise Rejected("invalid: event has expired")
    raw = event.to_json_bytes()
    if len(raw) > limits.max_event_bytes:
        raise Rejected(f"invalid: event is larger than {limits.max_event_bytes} bytes")
    verify_id_and_signature(event)
    return Accepted(event, raw, expiration)


def verify_id_and_signature(event: Event) -> None:
    """Raises: Rejected: the id is not the hash of the content, or the signature is bad."""
    problem = verification_problem(event)
    if problem is not None:
        raise Rejected(f"invalid: {problem}")


def _expiration(event: Event) -> int | None:
    expires = nip40.expiration(event)
    # SQLite integers are signed 64-bit; anything later is "never" for practical purposes.
    return None if expires is None else min(expires, _MAX_SQLITE_INT)


def validate_auth(data: object, *, challenge: str, relay_url: str, now: int, window: int) -> str:
    """Check a NIP-42 AUTH event against this connection's challenge; return its pubkey.

    Raises:
        Rejected: with an ``invalid:`` reason.
    """
    if not isinstance(data, dict):
        raise Rejected("invalid: AUTH needs an event object")
    try:
        return nip42.verify_auth_event(data, relay_url, challenge, now=now, window=window)
    except InvalidEvent as exc:
        raise Rejected(f"invalid: {exc}") from None


def parse_filters(raw: Sequence[object], *, limits: RelayLimits) -> tuple[Filter, ...]:
    """Parse the filters of a REQ or COUNT message.

    Raises:
        Rejected: with an ``invalid:`` reason (no filter, too many, or a malformed one).
    """
    if not raw:
        raise Rejected("invalid: at least one filter is required")
    if len(raw) > limits.max_filters:
        raise Rejected(f"invalid: too many filters (at most {limits.max_filters})")
    filters = []
    for item in raw:
        try:
            flt = Filter.from_dict(item)
        except InvalidFilter as exc:
            raise Rejected(f"invalid: {exc}") from None
        if flt.search is not None:
            raise Rejected("invalid: search (NIP-50) is not supported by this relay")
        sizes = [len(v) for v in (flt.ids, flt.authors, flt.kinds) if v is not None]
        sizes.extend(len(values) for _, values in flt.tags)
        if any(size > limits.max_filter_values for size in sizes):
            raise Rejected(
                f"invalid: a filter field has more than {limits.max_filter_values} values"
            )
        filters.append(flt)
    return tuple(filters)


def valid_sub_id(sub_id: object, limits: RelayLimits) -> bool:
    """NIP-01: a subscription id is a non-empty string of at most 64 characters."""
    return isinstance(sub_id, str) and 0 < len(sub_id) <= limits.max_subid_length
