"""What a running DVM reports about itself: for heartbeats, tests and operators."""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A snapshot: jobs running and queued now, counts so far, recent latency."""

    running: int
    queued: int
    done: int
    failed: int
    cancelled: int
    rejected: int
    ignored: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    #: gift wraps to this DVM that did not open or check out (forged, tampered, misaddressed)
    refused_wraps: int = 0


class Counters:
    """The engine's counters and a bounded window of job latencies."""

    def __init__(self, window: int = 2048) -> None:
        self.counts = collections.Counter[str]()
        self.latencies: collections.deque[float] = collections.deque(maxlen=window)

    def snapshot(self, *, running: int, queued: int) -> ProviderStats:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        c = self.counts
        return ProviderStats(
            running=running,
            queued=queued,
            done=c["done"],
            failed=c["failed"],
            cancelled=c["cancelled"],
            rejected=c["rejected"],
            ignored=c["ignored"],
            latency_p50_ms=pct(0.5),
            latency_p99_ms=pct(0.99),
            refused_wraps=c["refused_wraps"],
        )
