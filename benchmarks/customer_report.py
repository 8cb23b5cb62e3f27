"""Turn what the customer benchmark measured into figures, goals and notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.report import Figure, Goal, Report, ratio
from benchmarks.timing import percentile

if TYPE_CHECKING:
    from benchmarks.customer import Phase
    from benchmarks.customer_procs import Runs

ASK_GOAL_MS = 300.0
FLOOR = "python -c pass"


def fill(report: Report, phases: Sequence[Phase], runs: Sequence[Runs]) -> None:
    """Add the client's and the CLI's figures, the goals and the notes to ``report``."""
    for phase in phases:
        _phase(report, phase)
    _cli(report, runs)
    lost = sum(p.lost for p in phases)
    report.goals.append(
        Goal("customer client: no job lost (every request answered with its input)",
             float(lost), 0.0, "jobs", lost == 0)
    )  # fmt: skip
    report.notes += [
        "Client latency: from Customer.request() to Job.result() returning, one job at a time "
        "(sequential) or with the in-flight limit reached (concurrent: it includes queueing "
        "behind the other jobs, so it grows with in_flight).",
        "Client throughput: answered jobs / wall time of the phase. The CPU column says where "
        "the time went: relay CPU s / this process's share of the three processes' CPU; when "
        "the client's share is the largest, the client (signing, verifying, routing) is what "
        "limits the rate, not the DVM. Compare with `python -m benchmarks provider` (a raw "
        "pre-signed load on the same DVM) for the DVM's own capacity: that run is separate.",
        f"CLI: wall time from spawn to exit, result on stdout; ratio vs {FLOOR} = floor / "
        "value (always below 1: the floor is the interpreter start no Python CLI can beat); "
        "extra.over_floor_ms is what dvmkit itself adds: imports, connecting, the job round "
        "trip.",
    ]


def _phase(report: Report, phase: Phase) -> None:
    group = f"client {phase.dialect} {phase.name}"
    cpu = phase.cpu_s
    known = [v for v in cpu.values() if v is not None]
    total = sum(known)
    extra: dict[str, Any] = {
        "relay_cpu_s": cpu.get("relay"),
        "dvm_cpu_s": cpu.get("dvm"),
        "client_cpu_s": cpu.get("client"),
        "client_cpu_share": round((cpu.get("client") or 0.0) / total, 2) if total else 0.0,
        "answered": phase.answered,
        "requests": phase.requests,
        "lost": phase.lost,
        "wrong": phase.wrong,
        "failed": dict(phase.failed),
    }
    report.subjects[f"{phase.dialect}_{phase.name}"] = {
        **extra,
        "wall_s": round(phase.wall_s, 3),
    }
    key = f"{phase.dialect}_{phase.name}"
    rate = phase.answered / phase.wall_s if phase.wall_s > 0 else 0.0
    report.figures.append(
        Figure(f"{key}_rate", group, "throughput", rate, "jobs/s", "higher", extra=extra,
               note=f"{phase.answered}/{phase.requests} answered, {phase.lost} lost")
    )  # fmt: skip
    if phase.latencies_ms:
        for pct in (50, 99):
            value = percentile(phase.latencies_ms, pct)
            report.figures.append(
                Figure(f"{key}_p{pct}", group, f"latency p{pct}", value, "ms", "lower")
            )


def _cli(report: Report, runs: Sequence[Runs]) -> None:
    floor = next((r for r in runs if r.name == FLOOR), None)
    floor_p50 = percentile(floor.wall_ms, 50) if floor and floor.wall_ms else None
    for r in runs:
        if not r.wall_ms:
            continue
        p50 = percentile(r.wall_ms, 50)
        ratios: dict[str, float] = {}
        extra: dict[str, Any] = {"command": r.command, "correct": r.correct, "runs": len(r.wall_ms)}
        if floor_p50 is not None and r.name != FLOOR:
            ratios[FLOOR] = ratio(p50, floor_p50, "lower")
            extra["times_floor"] = round(p50 / floor_p50, 2) if floor_p50 > 0 else None
            extra["over_floor_ms"] = round(p50 - floor_p50, 1)
        slug = r.name.replace(" ", "_").replace("(", "").replace(")", "").replace("-", "")
        report.figures.append(
            Figure(f"cli_{slug}_p50", "cli wall time", r.name, p50, "ms", "lower",
                   rounds=tuple(round(w, 1) for w in r.wall_ms), ratios=ratios, extra=extra,
                   note="p50 of the runs, spawn to exit")
        )  # fmt: skip
        report.subjects[f"cli {r.name}"] = extra | {"p50_ms": round(p50, 1)}
        if r.name.startswith("dvm ask"):
            report.goals.append(
                Goal(f"{r.name}: start-to-result p50 < {ASK_GOAL_MS:.0f} ms "
                     f"({r.correct}/{len(r.wall_ms)} correct)",
                     p50, ASK_GOAL_MS, "ms", p50 < ASK_GOAL_MS and r.correct == len(r.wall_ms))
            )  # fmt: skip
