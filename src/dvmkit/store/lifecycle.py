"""A provider's job states and the transitions between them (DESIGN.md §5).

::

    received -> payment_required -> paid -> queued -> processing -> success | error
       (free jobs skip the payment states; queued is skipped when a slot is free)

    any unfinished state -> error | cancelled
    received, payment_required, queued -> expired      (deadline passed, nothing paid)
    processing -> queued                               (requeued after a restart)

``offer`` and ``partial`` are statuses a provider *announces*, not states a job is in: an offer
is sent while the job is ``received`` (or ``payment_required``), a partial result while it is
``processing``. Staying in a non-terminal state is a transition too, so that a partial result
or a new invoice is stored (with the event that announces it) by the same compare-and-set.

A job that has been paid never expires silently: DESIGN.md §5 wants a failed paid job refunded
or marked for refund, so ``paid`` can only move on to work, ``error`` or ``cancelled``, and
``expire_due`` skips queued jobs with a payment. ``success`` is reached only from
``processing``, and ``processing`` never from ``payment_required``: nothing runs unpaid.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from types import MappingProxyType

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "JobState", "can_transition", "check_transition"]


class JobState(enum.StrEnum):
    """Where a job is in its lifecycle; the value is what the store writes."""

    RECEIVED = "received"
    PAYMENT_REQUIRED = "payment_required"
    PAID = "paid"
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves."""
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCESS, JobState.ERROR, JobState.CANCELLED, JobState.EXPIRED}
)

_S = JobState
#: For each state, the states a job may move to (itself included for non-terminal states).
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        _S.RECEIVED: frozenset(
            {
                _S.RECEIVED,
                _S.PAYMENT_REQUIRED,
                _S.PAID,  # paid in the request itself (e.g. ecash attached to it)
                _S.QUEUED,
                _S.PROCESSING,
                _S.ERROR,
                _S.CANCELLED,
                _S.EXPIRED,
            }
        ),
        _S.PAYMENT_REQUIRED: frozenset(
            {_S.PAYMENT_REQUIRED, _S.PAID, _S.ERROR, _S.CANCELLED, _S.EXPIRED}
        ),
        _S.PAID: frozenset({_S.PAID, _S.QUEUED, _S.PROCESSING, _S.ERROR, _S.CANCELLED}),
        _S.QUEUED: frozenset({_S.QUEUED, _S.PROCESSING, _S.ERROR, _S.CANCELLED, _S.EXPIRED}),
        # processing -> queued: a job requeued after a restart or a lost worker.
        _S.PROCESSING: frozenset({_S.PROCESSING, _S.QUEUED, _S.SUCCESS, _S.ERROR, _S.CANCELLED}),
        _S.SUCCESS: frozenset(),
        _S.ERROR: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.EXPIRED: frozenset(),
    }
)


def can_transition(current: JobState, to: JobState) -> bool:
    """True when a job in ``current`` may move to ``to``."""
    return to in TRANSITIONS[current]


def check_transition(expect: Collection[JobState], to: JobState) -> None:
    """Check that a compare-and-set from any of ``expect`` to ``to`` is allowed.

    Args:
        expect: the states the job is expected to be in.
        to: the state it moves to.

    Raises:
        ValueError: ``expect`` is empty, or ``to`` is not reachable from one of its states
            (a programming error in the caller, never a property of the data).
    """
    if not expect:
        raise ValueError("expect names no state")
    for state in expect:
        if to not in TRANSITIONS[JobState(state)]:
            raise ValueError(f"a job cannot move from {state} to {to}")
