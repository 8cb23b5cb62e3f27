"""The jobs one provider process holds in memory while they wait, queue or run.

The job store is the truth about every job; this is only what this process is doing about
some of them right now: the running task (so a cancel can stop it), the bound handler
arguments, whether a payment message may be taken for it, and what it was paid. It also
counts each customer's jobs, for ``Limits.per_customer``.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

from dvmkit.protocol.job import JobRequest
from dvmkit.provider.config import Paid
from dvmkit.provider.job import Job, Report


@dataclass(eq=False, slots=True)
class Held:
    """A job this process holds while it waits for payment, is queued or runs."""

    request: JobRequest
    job: Job
    admitted: float  # monotonic time, for latency
    task: asyncio.Task[None] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    unpaid: bool = False  # payment-required was committed: payment messages are taken
    paid: Paid | None = None  # what it was paid, for a refund if it fails


class HeldJobs:
    """The held jobs by request id, and how many each customer has."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._held: dict[str, Held] = {}
        self._per_customer: collections.Counter[str] = collections.Counter()

    def hold(self, request: JobRequest) -> Held:
        held = Held(request, Job(request, self._report), time.monotonic())
        self._held[request.id] = held
        self._per_customer[request.customer] += 1
        return held

    def release(self, job_id: str) -> None:
        """Forget a job (it ended, or was never taken on). Releasing twice is harmless."""
        held = self._held.pop(job_id, None)
        if held is not None:
            customer = held.request.customer
            self._per_customer[customer] -= 1
            if self._per_customer[customer] <= 0:
                del self._per_customer[customer]

    def get(self, job_id: str) -> Held | None:
        return self._held.get(job_id)

    def of(self, customer: str) -> int:
        """How many jobs ``customer`` has held here."""
        return self._per_customer[customer]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._held

    def __len__(self) -> int:
        return len(self._held)
