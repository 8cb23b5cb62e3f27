"""The customer side: discover DVMs, send requests in either dialect, follow jobs to a result.

See :class:`~dvmkit.customer.client.Customer`.
"""

from __future__ import annotations

from dvmkit.customer.answers import Choose
from dvmkit.customer.budget import JobRefunded
from dvmkit.customer.client import Customer
from dvmkit.customer.job import Job
from dvmkit.customer.paying import PaymentFailed
from dvmkit.customer.request import build_request
from dvmkit.customer.values import (
    CustomerTimeouts,
    DVMInfo,
    JobResult,
    Update,
    UpdateType,
)
from dvmkit.protocol.envelope import Envelope

__all__ = [
    "Choose",
    "Customer",
    "CustomerTimeouts",
    "DVMInfo",
    "Envelope",
    "Job",
    "JobRefunded",
    "JobResult",
    "PaymentFailed",
    "Update",
    "UpdateType",
    "build_request",
]
