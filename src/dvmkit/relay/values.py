"""The client pool's values: the settings it takes and the results and snapshots it returns.

All frozen: :class:`Timeouts` goes in; :class:`PublishResult` (one :class:`Outcome` per relay),
:class:`CountResult` (one :class:`CountOutcome` per relay), :class:`RelayStats` and
:class:`PoolStats` come out. :func:`backoff_delay` is the one retry schedule the pool uses for
reconnects and for ``rate-limited:`` refusals.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from dvmkit.errors import RelayError

OutcomeStatus = Literal["accepted", "duplicate", "rejected", "timeout", "not_connected", "pending"]
CountStatus = Literal["counted", "closed", "malformed", "timeout", "not_connected"]
ConnectionState = Literal["connecting", "connected", "backoff", "stopped"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines and intervals, in seconds.

    ``reconnect_initial`` doubles after each failed attempt up to ``reconnect_max`` (30 s,
    per issue 3), with jitter so that many clients do not reconnect in lockstep.
    """

    connect: float = 10.0
    publish: float = 10.0
    eose: float = 10.0
    close: float = 2.0
    nip11: float = 3.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    stable_after: float = 10.0  # a connection up this long resets the backoff
    count: float = 10.0  # NIP-45 COUNT answers; last so that positional use keeps working


DEFAULT_TIMEOUTS = Timeouts()


def backoff_delay(
    attempt: int, *, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter": a delay in [d/2, d], d = min(cap, initial*2^n)."""
    ceiling = min(cap, initial * 2.0 ** min(attempt, 32))
    return ceiling / 2 + ceiling / 2 * rand()


# -- publish ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one relay did with a published event; ``message`` is the relay's own text."""

    status: OutcomeStatus
    message: str = ""

    @property
    def ok(self) -> bool:
        """The relay has the event (it accepted it now or already had it)."""
        return self.status in ("accepted", "duplicate")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Per-relay outcomes of one publish; relays not finished when it returned are "pending"."""

    event_id: str
    outcomes: Mapping[str, Outcome]
    required: int

    @property
    def accepted(self) -> tuple[str, ...]:
        """Relays that have the event (accepted or duplicate)."""
        return tuple(url for url, o in self.outcomes.items() if o.ok)

    @property
    def ok(self) -> bool:
        """At least ``required`` relays have the event."""
        return len(self.accepted) >= self.required

    def raise_for_status(self) -> None:
        """Raise when fewer than ``required`` relays took the event.

        Raises:
            RelayError: listing every relay's outcome.
        """
        if not self.ok:
            detail = "; ".join(
                f"{u}: {o.status} {o.message}".strip() for u, o in self.outcomes.items()
            )
            raise RelayError(
                f"event {self.event_id} reached {len(self.accepted)} of {self.required} "
                f"required relays ({detail})"
            )


# -- count (NIP-45) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountOutcome:
    """One relay's answer to a NIP-45 COUNT.

    ``status`` is ``"counted"`` (``count`` holds the number, ``approximate`` whether the relay
    said it estimated it), ``"closed"`` (the relay refused with CLOSED, or dvmkit did not send
    because of the relay's NIP-11 limits; ``message`` says why), ``"malformed"`` (the relay
    answered with a COUNT that breaks NIP-45; ``message`` says how), ``"timeout"`` (sent, no
    answer by the deadline: relays without NIP-45 often stay silent) or ``"not_connected"``.
    """

    status: CountStatus
    count: int | None = None
    approximate: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        """The relay answered with a count."""
        return self.status == "counted"


@dataclass(frozen=True, slots=True)
class CountResult:
    """Per-relay answers to one COUNT. Relays count independently, so the numbers are not
    summed: the same event stored on two relays is counted by both."""

    outcomes: Mapping[str, CountOutcome]

    @property
    def counts(self) -> Mapping[str, int]:
        """The relays that answered, with their count."""
        return {u: o.count for u, o in self.outcomes.items() if o.count is not None}

    @property
    def errors(self) -> Mapping[str, str]:
        """The relays that did not answer with a count, with what happened instead."""
        return {u: f"{o.status} {o.message}".strip() for u, o in self.outcomes.items() if not o.ok}


# -- stats -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayStats:
    """A snapshot of one connection's counters."""

    url: str
    state: ConnectionState
    connected: bool
    latency: float | None
    sent: int
    received: int
    accepted: int
    duplicates: int
    rejected: int
    timeouts: int
    invalid: int
    malformed: int
    notices: int
    reconnects: int
    subscriptions: int
    authenticated: bool


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool: per relay, and summed."""

    relays: Mapping[str, RelayStats]
    connected: int
    subscriptions: int
    sent: int
    received: int
    rejected: int
    invalid: int
    reconnects: int
