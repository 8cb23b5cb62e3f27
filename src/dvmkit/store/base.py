"""The job store interface and its values: one :class:`JobStore`, several backends.

A job's identity is its request event id (the inner id for a gift-wrapped request), so the
same request arriving from five relays, or re-published, lands in one row (DESIGN.md §4.3).

The store is also the provider's *outbox*: every state change is written together with the
signed events that announce it, in one transaction, before any of them is published
(DESIGN.md §5). After a crash the provider reads :meth:`JobStore.unfinished` and
:meth:`JobStore.pending_outbox` and re-sends what was never marked sent, with the same event
ids. Sending stays at-least-once: a relay may see an event twice, never a different one.

Every backend runs through ``tests/store/test_conformance.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self

from dvmkit.nostr.event import Event
from dvmkit.protocol.job import Dialect
from dvmkit.store.lifecycle import JobState

__all__ = [
    "KEEP",
    "OWED",
    "REFUNDED",
    "JobRecord",
    "JobStore",
    "Keep",
    "OutboxEvent",
    "OutboxItem",
    "PaymentEntry",
    "StoreStats",
]

#: ``JobRecord.refund`` of a paid job that failed and was not (yet) given its money back.
OWED: Final = "owed"
#: ``JobRecord.refund`` of a paid job that failed and whose money went back to the customer.
REFUNDED: Final = "refunded"


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


#: Default of :meth:`JobStore.transition`'s field arguments: leave the stored value as it is.
KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the store holds it.

    Times are Unix seconds (floats, so latencies can be computed from them). ``payment_ref``
    is an opaque public reference (a bolt11 invoice or a payment hash); never put secrets
    such as Cashu proofs in it, or anywhere else in a record.
    """

    id: str  # the request event id (the inner one for a wrapped request)
    dialect: Dialect
    customer: str  # the requester's pubkey (hex)
    kind: int  # the request's kind
    request: str  # the request event's JSON, as received (decrypted for wrapped requests)
    state: JobState
    created_at: float
    updated_at: float
    expires_at: float | None = None  # when an unpaid or queued job expires
    price_msat: int = 0
    paid_msat: int = 0
    payment_ref: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_event_id: str | None = None
    attempts: int = 0  # how many times a run was started (see ``add_attempt``)
    # how a private (gift-wrapped) request came, ``str(Envelope)`` ("simple:21059"); None for
    # a public one. ``request`` is then the inner event; for the "nip59" form it is the rumor,
    # whose ``sig`` is all zeros (a rumor has none: the seal it came in was verified).
    envelope: str | None = None
    payment_method: str | None = None  # how it was paid: bolt11, zap, cashu
    refund: str | None = None  # OWED or REFUNDED for a paid job that failed; else None


@dataclass(frozen=True, slots=True)
class PaymentEntry:
    """A confirmed payment, in the store's payment ledger.

    ``key`` is unique across the whole ledger (the payment hash of an invoice or zap, a digest
    of a Cashu token's proofs), so one payment can never release two jobs, or one twice. It
    is public: never a preimage or a proof's secret.
    """

    key: str
    job_id: str
    method: str
    amount_msat: int
    created_at: float = 0.0  # set by the store when it commits


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A signed event to publish once the transition that produced it is committed."""

    event_id: str
    event_json: str
    relays: tuple[str, ...] = ()  # where it goes, besides the provider's own relays

    @classmethod
    def from_event(cls, event: Event, relays: Iterable[str] = ()) -> OutboxEvent:
        """Wrap a signed event for the outbox."""
        return cls(event.id, event.to_json(), tuple(relays))


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An event in the outbox: ``seq`` orders the outbox, ``sent_at`` is None until sent."""

    seq: int
    job_id: str
    event_id: str
    event_json: str
    relays: tuple[str, ...]
    created_at: float
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of a store's own counters (not of the jobs; see :meth:`JobStore.counts`)."""

    backend: str
    pending: int  # operations submitted and not yet answered
    transactions: int  # write transactions committed
    writes: int  # write operations committed
    reads: int  # read operations answered
    failures: int  # operations answered with a StoreError
    largest_batch: int  # most writes committed in one transaction


class JobStore(Protocol):
    """What the provider needs from a durable job store.

    A store is an async context manager: entering opens it (and starts whatever thread or
    pool it owns), leaving flushes every write already submitted and closes it. Each write
    returns only after its transaction has committed. A caller cancelled while waiting may
    still have its write committed; read the job again to find out.

    Raises (every method):
        StoreError: the database failed or refused a value (e.g. an integer beyond 64 bits,
            a string that is not valid Unicode), or the store is closed.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def insert(self, record: JobRecord, *, outbox: Sequence[OutboxEvent] = ()) -> bool:
        """Store a new job, and the events announcing it, unless a job with its id exists.

        Returns:
            True if stored; False if the id was already there (nothing is changed then).
        """
        ...

    async def transition(
        self,
        job_id: str,
        *,
        expect: JobState | Collection[JobState],
        to: JobState,
        outbox: Sequence[OutboxEvent] = (),
        expires_at: float | Keep | None = KEEP,
        price_msat: int | Keep = KEEP,
        paid_msat: int | Keep = KEEP,
        payment_ref: str | Keep | None = KEEP,
        error_code: str | Keep | None = KEEP,
        error_message: str | Keep | None = KEEP,
        result_event_id: str | Keep | None = KEEP,
        payment_method: str | Keep | None = KEEP,
        refund: str | Keep | None = KEEP,
        payment: PaymentEntry | None = None,
        add_attempt: bool = False,
    ) -> bool:
        """Compare-and-set: move the job to ``to`` if it is in one of ``expect``.

        The new state, the given fields, ``updated_at``, the ``outbox`` events and the
        ``payment`` ledger entry are written in one transaction, or not at all.

        Args:
            job_id: the job.
            expect: the state(s) the job must be in.
            to: the new state; must be allowed from every state in ``expect``.
            outbox: signed events announcing the change, published after this returns.
            payment: a confirmed payment for ``job_id`` to enter in the ledger with the change.
            add_attempt: add one to ``attempts`` (a run is starting).

        Returns:
            True if the job moved; False if it is unknown, in another state (for example,
            cancelled meanwhile), or ``payment``'s key is already in the ledger (a payment
            presented twice). Nothing is written when False.

        Raises:
            ValueError: the transition is not allowed by ``lifecycle.TRANSITIONS``, or
                ``payment`` names another job.
        """
        ...

    async def late_payment(self, payment: PaymentEntry) -> bool:
        """Enter a payment confirmed for a job that had already ended unpaid (cancelled or
        expired while the payment came): the ledger row, and the job's ``paid_msat``,
        ``payment_method`` and ``refund = OWED``, in one transaction. Money that came is
        never unrecorded.

        Returns:
            False (nothing written) when the key is already in the ledger, or the job is
            unknown, unfinished, or already paid.
        """
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        ...

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state is a key)."""
        ...

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        customer: str | None = None,
        refund: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally only in one state, of one customer, or with one
        ``refund`` mark (``OWED``: what ``dvm jobs --owed`` lists)."""
        ...

    async def payments(self, job_id: str | None = None) -> list[PaymentEntry]:
        """The payment ledger (of one job, or all), oldest first."""
        ...

    async def unfinished(self) -> list[JobRecord]:
        """Every job not in a terminal state, oldest first: what to resume on start."""
        ...

    async def pending_outbox(self, *, limit: int = 1000, after: int = 0) -> list[OutboxItem]:
        """Unsent outbox events in the order they were written, with ``seq`` above ``after``."""
        ...

    async def job_events(self, job_id: str) -> list[OutboxItem]:
        """Every outbox event of one job, sent or not, in order (to answer a re-published
        request with the same events)."""
        ...

    async def mark_sent(self, event_ids: Iterable[str]) -> int:
        """Mark outbox events as sent; returns how many were pending."""
        ...

    async def expire_due(self, now: float) -> list[str]:
        """Move unpaid ``received``/``payment_required``/``queued`` jobs whose ``expires_at``
        is at or before ``now`` to ``expired``; returns their ids, soonest deadline first."""
        ...

    async def purge(self, *, older_than: float) -> int:
        """Delete finished jobs last updated before ``older_than``, with their outbox
        events, keeping any job with an unsent event. Returns how many jobs were deleted.

        A purged request that arrives again is a new job, so keep jobs for longer than the
        provider accepts old requests."""
        ...

    def stats(self) -> StoreStats:
        """A snapshot of the store's counters (cheap; no I/O)."""
        ...
