"""The result of one benchmark run: figures, ratios and goals, printed as a table or as JSON.

A *figure* is one measured number (a rate or a latency) for one subject. Its ``ratios`` compare it
with reference figures measured in the same run, always oriented so that a ratio above 1 means
the subject did better: ``value / reference`` for rates, ``reference / value`` for latencies.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Literal

import orjson

Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number.

    ``rounds`` holds every round's value; ``value`` is the best of them for rates (the
    least-disturbed round) or the aggregate for latencies, as ``note`` says.
    """

    key: str
    group: str
    subject: str
    value: float
    unit: str
    better: Better = "higher"
    rounds: tuple[float, ...] = ()
    ratios: dict[str, float] = field(default_factory=dict)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Goal:
    """A target from DESIGN.md §8 and whether this run met it."""

    text: str
    value: float | None
    target: float
    unit: str
    met: bool | None  # None: could not be measured in this run (the subject was unavailable)


def ratio(value: float, reference: float, better: Better) -> float:
    """How many times better ``value`` is than ``reference`` (above 1: better)."""
    if better == "higher":
        return value / reference if reference > 0 else float("inf")
    return reference / value if value > 0 else float("inf")


def environment(packages: tuple[str, ...]) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }


@dataclass(slots=True)
class Report:
    """Everything one run printed; ``to_json`` is what ``--json`` writes."""

    benchmark: str
    quick: bool
    environment: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    subjects: dict[str, Any] = field(default_factory=dict)

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    def render(self) -> None:
        """Print the report for people: Rich tables on stdout."""
        from rich.console import Console
        from rich.table import Table

        console = Console(highlight=False)
        if not console.is_terminal:
            # Piped output keeps whole rows on one line, so it can be grepped and diffed.
            console = Console(highlight=False, width=200)
        title = f"dvmkit benchmark: {self.benchmark}" + (" (quick)" if self.quick else "")
        table = Table(title=title, title_justify="left")
        for column, justify in (
            ("group", "left"),
            ("subject", "left"),
            ("value", "right"),
            ("unit", "left"),
            ("rounds", "right"),
            ("ratios (>1 = better)", "left"),
            ("relay CPU s / client CPU share", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for fig in self.figures:
            ratios = ", ".join(f"{v:.2f}x vs {k}" for k, v in fig.ratios.items())
            table.add_row(
                fig.group,
                fig.subject,
                _fmt(fig.value),
                fig.unit,
                " ".join(_fmt(r) for r in fig.rounds),
                ratios,
                _load(fig.extra),
            )
        console.print(table)
        if self.goals:
            goals = Table(title="goals (DESIGN.md §8)", title_justify="left")
            for column in ("goal", "measured", "target", "met"):
                goals.add_column(column)
            for goal in self.goals:
                met = {True: "[green]yes[/]", False: "[red]NO[/]", None: "n/a"}[goal.met]
                measured = "-" if goal.value is None else f"{_fmt(goal.value)} {goal.unit}"
                goals.add_row(goal.text, measured, f"{_fmt(goal.target)} {goal.unit}", met)
            console.print(goals)
        for note in self.notes:
            console.print(f"- {note}", soft_wrap=True)
        env = self.environment
        console.print(
            f"[dim]{env['implementation']} {env['python']} on {env['platform']}, "
            f"{env['cpus']} CPUs; settings {self.settings}[/]"
        )


def _load(extra: dict[str, Any]) -> str:
    if "client_cpu_share" not in extra:
        return ""
    cpu = extra.get("relay_cpu_s")
    return f"{'-' if cpu is None else cpu} / {extra['client_cpu_share']}"


def _fmt(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
