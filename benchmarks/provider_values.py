"""Values of the provider benchmark: its sizes, and what one phase and one DVM measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.provider_procs import Memory
from benchmarks.timing import percentile


@dataclass(frozen=True, slots=True)
class Sizes:
    sequential: int
    burst: int  # requests per burst for dvmkit's DVM
    nostrdvm_burst: int  # ... and for nostrdvm (RESULTS.md: it drops a third of 3,000)
    bursts: int
    burst_deadline: float  # seconds from publishing a burst
    stall: float  # a burst also ends after this long without any result
    job_timeout: float  # per sequential job
    settle: float  # seconds of quiet before reading RSS
    start_timeout: float
    customers: int  # requests go round-robin from this many customer keys


# Ten customers: one customer's 3,000 at once would be refused by dvmkit's per-customer limit
# (Limits.per_customer, 1,000 queued or running), and a burst comes from many customers anyway.
FULL = Sizes(200, 3000, 500, 3, 120.0, 30.0, 10.0, 2.0, 60.0, 10)
QUICK = Sizes(20, 100, 100, 3, 30.0, 10.0, 10.0, 0.5, 60.0, 10)


@dataclass(slots=True)
class Phase:
    """One sequential run or one burst."""

    name: str
    requests: int
    answered: int
    latencies_ms: list[float]
    wall_s: float
    dvm_cpu_s: float
    relay_cpu_s: float | None
    client_cpu_s: float
    ended: str  # "all answered", "deadline" or "stalled"
    memory_after: Memory | None = None
    relay_rejected: int = 0
    refused: int = 0  # unanswered with an error feedback from the DVM (a subset of lost)
    client_open_cpu_s: float = 0.0  # of client_cpu_s: opening answer wraps (--encrypted)

    @property
    def lost(self) -> int:
        return self.requests - self.answered

    @property
    def rate(self) -> float:
        return self.answered / self.wall_s if self.wall_s > 0 else 0.0

    def pct(self, p: float) -> float | None:
        return percentile(self.latencies_ms, p) if self.latencies_ms else None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "answered": self.answered,
            "lost": self.lost,
            "refused_by_dvm": self.refused,
            "relay_rejected": self.relay_rejected,
            "ended": self.ended,
            "wall_s": round(self.wall_s, 4),
            "jobs_per_s": round(self.rate, 1),
            "latency_ms": {
                f"p{p}": None if self.pct(p) is None else round(self.pct(p) or 0.0, 3)
                for p in (50, 90, 99, 100)
            },
            "dvm_cpu_s": round(self.dvm_cpu_s, 2),
            "relay_cpu_s": None if self.relay_cpu_s is None else round(self.relay_cpu_s, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "client_open_cpu_s": round(self.client_open_cpu_s, 2),
            "rss_after_mib": None if self.memory_after is None else self.memory_after.rss_mib,
        }


@dataclass(slots=True)
class Outcome:
    """Everything measured for one DVM."""

    startup_s: float = 0.0
    warmed: int = 0  # customers whose warm-up job was answered
    idle: Memory | None = None
    sequential: Phase | None = None
    bursts: list[Phase] = field(default_factory=list)
    matched: Phase | None = None  # one burst of nostrdvm's size, when the sizes differ
    peak: Memory | None = None
    exit_code: int | None = None
    client: dict[str, Any] = field(default_factory=dict)
