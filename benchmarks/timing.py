"""Interleaved best-of-N timing for CPU-bound operations.

Each case is a function that runs one round (a loop over its pre-built inputs) and returns how
many operations it did. Rounds run A B C A B C ..., so a noisy moment on the machine hits every
case rather than one, and the best round of each is kept: the least-disturbed measurement is the
closest to what the code costs. The garbage collector is off during a round so that a collection
triggered by one case's garbage is not billed to the next case.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    run: Callable[[], int]


@dataclass(frozen=True, slots=True)
class Rates:
    """Operations per second for every round of one case."""

    name: str
    rounds: tuple[float, ...]

    @property
    def best(self) -> float:
        return max(self.rounds)


def measure(cases: Sequence[Case], *, rounds: int, warmup: int = 1) -> dict[str, Rates]:
    """Run ``warmup`` untimed rounds of every case, then ``rounds`` timed interleaved rounds.

    Returns:
        The rates of each case by name.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    for _ in range(warmup):
        for case in cases:
            case.run()
    results: dict[str, list[float]] = {case.name: [] for case in cases}
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            for case in cases:
                gc.collect()
                gc.disable()
                start = time.perf_counter()
                ops = case.run()
                elapsed = time.perf_counter() - start
                gc.enable()
                results[case.name].append(ops / elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
        else:  # pragma: no cover - only when the caller had disabled gc itself
            gc.disable()
    return {name: Rates(name, tuple(values)) for name, values in results.items()}


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (so p99 of 100 samples is the 99th smallest)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
