"""The store benchmark runs end to end and reports every figure (speed is not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_store_benchmark_quick_reports_bursts_latency_and_goal() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "store", "--json", "--quick"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert report["benchmark"] == "store"
    figures = {fig["key"]: fig for fig in report["figures"]}
    assert set(figures) == {
        "burst:ours",
        "burst:ours-full",
        "burst:naive",
        "sequential_p50:ours",
        "sequential_p99:ours",
    }
    for fig in figures.values():
        assert fig["value"] > 0
        assert len(fig["rounds"]) == 3
    for key in ("burst:ours", "burst:ours-full"):
        assert set(figures[key]["ratios"]) == {figures["burst:naive"]["subject"]}
        # Group commit: far fewer transactions than the 4 writes per job of the naive way.
        assert max(figures[key]["extra"]["transactions_per_round"]) < 4 * 200
    assert figures["burst:naive"]["extra"]["transactions_per_round"] == [4 * 200] * 3
    (goal,) = report["goals"]
    assert goal["target"] == 3000
    assert isinstance(goal["met"], bool)
