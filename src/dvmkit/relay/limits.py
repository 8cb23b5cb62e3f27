"""Limits that protect dvmkit's relay, and the token bucket that enforces rates.

The defaults are sized for a DVM doing thousands of jobs per second over loopback: a provider
publishes two or three events per job on one connection and a customer may hold a
subscription per job, so per-connection rates and subscription counts are high, while sizes
stay bounded so that one client cannot exhaust memory. Every limit is published in the NIP-11
``limitation`` object (:meth:`RelayLimits.nip11_limitation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayLimits:
    """Per-relay and per-connection limits.

    Attributes:
        max_message_length: bytes of one incoming message the relay decodes and acts on.
            Larger messages (up to ``hard_message_length``) are answered with ``OK false`` or
            a NOTICE without being decoded; beyond that the websocket is closed with 1009.
        hard_message_length: the websocket frame limit.
        max_event_bytes: bytes of an event's canonical JSON.
        max_content_length: characters of an event's ``content``.
        max_event_tags: tags of one event.
        max_subscriptions: open subscriptions per connection.
        max_filters: filters in one REQ or COUNT.
        max_filter_values: values in one filter field (``ids``, ``authors``, ``#x``, ...).
        max_limit: events returned for one REQ (a larger ``limit`` is clamped).
        default_limit: events returned per filter when the filter gives no ``limit``.
        max_subid_length: characters of a subscription id (NIP-01: 1-64).
        created_at_lower_limit: seconds in the past an event's ``created_at`` may lie.
        created_at_upper_limit: seconds in the future an event's ``created_at`` may lie.
        events_per_second: sustained EVENT messages per connection.
        events_burst: EVENT messages a connection may send at once before the rate applies.
        requests_per_second: sustained REQ, COUNT, CLOSE, AUTH and unknown messages.
        requests_burst: burst size for those.
        max_connections: concurrent websocket connections; more get HTTP 503.
        max_outbox_bytes: bytes queued for one slow connection before it is dropped.
        auth_window: seconds a NIP-42 AUTH event's ``created_at`` may differ from now.
    """

    max_message_length: int = 1_048_576
    hard_message_length: int = 4_194_304
    max_event_bytes: int = 524_288
    max_content_length: int = 262_144
    max_event_tags: int = 2_500
    max_subscriptions: int = 4_096
    max_filters: int = 64
    max_filter_values: int = 10_000
    max_limit: int = 5_000
    default_limit: int = 500
    max_subid_length: int = 64
    created_at_lower_limit: int = 94_608_000  # three years, as strfry's default
    created_at_upper_limit: int = 900
    events_per_second: float = 20_000.0
    events_burst: int = 50_000
    requests_per_second: float = 20_000.0
    requests_burst: int = 50_000
    max_connections: int = 10_000
    max_outbox_bytes: int = 64 * 1_048_576
    auth_window: int = 600

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"RelayLimits.{name} must be positive, not {value!r}")
        if self.hard_message_length < self.max_message_length:
            raise ValueError("hard_message_length must be at least max_message_length")
        if not 1 <= self.max_subid_length <= 64:
            raise ValueError("max_subid_length must be in [1, 64] (NIP-01)")

    def nip11_limitation(self, *, auth_required: bool) -> dict[str, Any]:
        """The NIP-11 ``limitation`` object these limits produce."""
        return {
            "max_message_length": self.max_message_length,
            "max_subscriptions": self.max_subscriptions,
            "max_filters": self.max_filters,
            "max_limit": self.max_limit,
            "default_limit": self.default_limit,
            "max_subid_length": self.max_subid_length,
            "max_event_tags": self.max_event_tags,
            "max_content_length": self.max_content_length,
            "min_pow_difficulty": 0,
            "auth_required": auth_required,
            "payment_required": False,
            "restricted_writes": False,
            "created_at_lower_limit": self.created_at_lower_limit,
            "created_at_upper_limit": self.created_at_upper_limit,
        }


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty (the caller is over its rate)."""
        now = self._clock()
        tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
