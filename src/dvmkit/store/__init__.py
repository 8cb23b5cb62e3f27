"""Durable job stores: the provider's record of every job and its outbox (DESIGN.md §4.3, §5).

:class:`JobStore` is the interface; :class:`SQLiteJobStore` the default backend. A Postgres
backend implements the same protocol and passes the same conformance suite.
"""

from dvmkit.store.base import (
    KEEP,
    OWED,
    REFUNDED,
    JobRecord,
    JobStore,
    Keep,
    OutboxEvent,
    OutboxItem,
    PaymentEntry,
    StoreStats,
)
from dvmkit.store.lifecycle import (
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    can_transition,
    check_transition,
)
from dvmkit.store.sqlite import SQLiteJobStore

__all__ = [
    "KEEP",
    "OWED",
    "REFUNDED",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "JobRecord",
    "JobState",
    "JobStore",
    "Keep",
    "OutboxEvent",
    "OutboxItem",
    "PaymentEntry",
    "SQLiteJobStore",
    "StoreStats",
    "can_transition",
    "check_transition",
]
