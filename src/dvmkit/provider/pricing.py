"""What a job costs: a price list a DVM declares, read against each request.

::

    DVM(..., price_msat=Pricing(
        per_job_msat=10_000,                       # every job
        per_kib_msat=1_000,                        # per started KiB of input
        params={"model": {"large": 50_000}},       # a param value that costs more
        free_for={"<a friend's pubkey>"},          # an allow-list that never pays
        free_jobs=3,                               # a free tier: 3 jobs a day per customer
    ))

A plain ``int`` is a fixed price, and a function of the :class:`JobRequest` may compute any
price; :class:`Pricing` covers what DVMs in the field charge by without code, and says in
announcements where its prices start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dvmkit.protocol.job import JobRequest
from dvmkit.store import JobStore

#: In ``Pricing.params``, the surcharge for any value not listed.
ANY_VALUE = "*"


@dataclass(frozen=True, slots=True)
class Pricing:
    """A price list, in millisats.

    Attributes:
        per_job_msat: charged for every job.
        per_kib_msat: charged per started KiB (1024 bytes, UTF-8) of the request's inputs as
            given (a ``url`` input counts its URL: the DVM has not fetched it yet).
        params: surcharges by param name, then value (``"*"``: any other value); a param
            given several values pays for each.
        free_for: customers (hex pubkeys) who never pay: an allow-list.
        free_jobs: jobs each customer gets free per ``free_window`` seconds (a free tier);
            counted from the DVM's own job store.
        free_window: the free tier's period.
    """

    per_job_msat: int = 0
    per_kib_msat: int = 0
    params: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    free_for: Collection[str] = frozenset()
    free_jobs: int = 0
    free_window: float = 86_400.0

    def __post_init__(self) -> None:
        amounts = [self.per_job_msat, self.per_kib_msat, self.free_jobs]
        amounts += [v for prices in self.params.values() for v in prices.values()]
        for value in amounts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("prices and free_jobs are non-negative whole numbers")
        if self.free_window <= 0:
            raise ValueError("free_window must be positive")
        # Frozen all the way down: a price list shared by tasks must not change under them.
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.params.items()}
        object.__setattr__(self, "params", MappingProxyType(frozen))
        object.__setattr__(self, "free_for", frozenset(k.lower() for k in self.free_for))

    def quote(self, request: JobRequest) -> int:
        """The price of ``request`` before any free tier or allow-list."""
        size = sum(len(i.data.encode()) for i in request.inputs)
        amount = self.per_job_msat + self.per_kib_msat * -(-size // 1024)
        for name, values in request.params:
            prices = self.params.get(name)
            if prices is None:
                continue
            for value in values:
                amount += prices.get(value, prices.get(ANY_VALUE, 0))
        return amount

    @property
    def starting_at(self) -> int:
        """The least a job can cost (what announcements show): the per-job price."""
        return self.per_job_msat

    def is_free_for(self, customer: str) -> bool:
        return customer in self.free_for


Price = int | Pricing | Callable[[JobRequest], int] | Callable[[JobRequest], Awaitable[int]]
"""What ``DVM(price_msat=...)`` takes: a fixed price, a price list, or a function."""


async def price_of(price: Price, request: JobRequest, *, store: JobStore, now: float) -> int:
    """What ``request`` costs under ``price``, free tier and allow-list included.

    Raises:
        ValueError: a price function returned something other than a non-negative int.
        Exception: whatever a price function raised (the engine fails the job, not the DVM).
    """
    if isinstance(price, int):
        return price
    if isinstance(price, Pricing):
        if price.is_free_for(request.customer):
            return 0
        amount = price.quote(request)
        if amount and price.free_jobs and await _free_left(store, request.customer, price, now):
            return 0
        return amount
    value = price(request)
    if not isinstance(value, int):
        value = await value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a DVM's price must be a non-negative number of millisats")
    return value


async def _free_left(store: JobStore, customer: str, pricing: Pricing, now: float) -> bool:
    """True while ``customer`` has free jobs left in the free tier's current window.

    Counted from the job store: the free jobs it ran (or runs) lately. Jobs refused for bad
    input do not count, and neither do paid ones.
    """
    since = now - pricing.free_window
    limit = pricing.free_jobs + 64
    while True:
        recent = await store.list_jobs(customer=customer, limit=limit)  # newest first
        used = sum(
            1
            for r in recent
            if r.created_at >= since and r.price_msat == 0 and r.error_code is None
        )
        if used >= pricing.free_jobs:
            return False
        # Paid jobs of the window may fill a page and hide free ones older than them: read
        # on until the page reaches past the window, or holds every job there is.
        if len(recent) < limit or recent[-1].created_at < since:
            return True
        limit *= 2
