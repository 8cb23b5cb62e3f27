"""The provider's configuration: small frozen values, keyword-only, with real defaults."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import PaymentMessage, Refund
from dvmkit.provider.pricing import Price
from dvmkit.relay.pool import RelayPool

# Price lives with the price list; it is part of the provider's configuration all the same.
__all__ = ["Limits", "Paid", "PaymentProcessor", "PaymentRequest", "Price"]


@dataclass(frozen=True, slots=True)
class Limits:
    """How much a DVM takes on, and how long it waits.

    Attributes:
        concurrency: jobs running at once.
        max_queue: jobs admitted but not yet running; beyond it requests are answered
            ``error RATE_LIMITED`` instead of being dropped.
        per_customer: jobs one customer may have queued or running at once.
        job_timeout: seconds a handler may run before the job ends ``error TIMEOUT``.
        processing_notice: a job still running after this many seconds announces
            ``processing``; faster jobs go straight to their result (NIP-90 feedback is
            optional, and skipping it halves the events a quick job costs).
        max_future_skew: requests dated further ahead than this are ignored.
        request_lookback: on start, stored legacy requests this recent are read again (the
            store makes sure each runs once), so requests sent while the DVM was down are
            not missed.
        input_timeout: seconds to fetch a ``url`` or ``event`` input.
        max_input_bytes: the largest ``url`` input fetched.
        job_input_wait: seconds to wait for the result of an earlier job (``job`` input).
        extra_relays: how many relays named in requests' ``relays`` tags the DVM will also
            publish to (and keep connections to).
        payment_timeout: seconds a priced job waits in ``payment-required`` before it
            expires with ``error PAYMENT_TIMEOUT``.
        compact_results_above: a legacy result larger than this many bytes is sent without
            its copies of the request (``request`` and ``i`` tags); 64 KiB is the event limit
            of strfry's default configuration and of nostr-sdk's relay.
    """

    concurrency: int = 64
    max_queue: int = 10_000
    per_customer: int = 1_000
    job_timeout: float = 300.0
    processing_notice: float = 0.25
    max_future_skew: int = 600
    request_lookback: int = 3600
    input_timeout: float = 30.0
    max_input_bytes: int = 1 << 20
    job_input_wait: float = 60.0
    extra_relays: int = 16
    payment_timeout: float = 600.0
    compact_results_above: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_queue", "per_customer"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a customer is asked to pay: shown in ``payment-required`` in both dialects.

    ``details`` are the methods' details (a zap's lightning address, a Cashu mint), written
    into their ``payment`` tags (:mod:`dvmkit.protocol.payment`).
    """

    amount_msat: int
    methods: tuple[str, ...]
    bolt11: str | None = None
    reference: str | None = None  # a public reference (payment hash), never a secret
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Paid:
    """A payment the provider's own wallet, mint or LNURL server confirmed.

    ``key`` identifies the payment itself (an invoice's payment hash, a zap receipt's invoice
    hash, a digest of a Cashu token's proofs); the job store's ledger takes each key once.
    """

    amount_msat: int
    method: str
    key: str


class PaymentProcessor(Protocol):
    """How a DVM takes money (DESIGN.md §6): :mod:`dvmkit.provider.payments` has one per
    method (bolt11 over NWC, Cashu, zaps) and :class:`~dvmkit.provider.payments.Payments`
    to accept several.

    A priced job waits in ``payment-required`` until :meth:`confirm` returns: the provider's
    own wallet, mint or LNURL server must have confirmed the payment before the job runs.
    """

    @property
    def methods(self) -> Sequence[str]:
        """The methods it accepts: ``bolt11``, ``zap``, ``cashu``."""
        ...

    def serving(self, pool: RelayPool, keys: Keys) -> AbstractAsyncContextManager[object]:
        """Connect (wallet, mint, receipt subscription) for as long as the DVM serves.

        ``pool`` is the DVM's own relay pool, ``keys`` its identity.
        """
        ...

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        """Ask for ``amount_msat`` (e.g. make an invoice).

        ``expires_in`` is how long the job will wait (``Limits.payment_timeout``): nothing
        should stay payable longer, or money could arrive for a job that has expired.
        """
        ...

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        """Wait until the payment is confirmed.

        Raises:
            PaymentError: the payment failed or will not come (a spent token).
        """
        ...

    def deliver(self, message: PaymentMessage) -> bool:
        """A customer's payment message for a job waiting in :meth:`confirm`; True when this
        processor takes its method."""
        ...

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        """Give ``paid`` back for a job that failed, where the method allows; None when it
        cannot (the job is then recorded as owed).

        Raises:
            PaymentError: the refund was attempted and failed (the job is owed).
        """
        ...
