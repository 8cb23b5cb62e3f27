"""Smoke test for ``python -m benchmarks customer``: quick sizes, real relay and echo DVM.

It asserts the report's shape and that every job (client and ``dvm ask``) came back with its
own input; nothing about speed (speed is only printed by the benchmark).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
PHASES = ("modern_sequential", "modern_concurrent", "legacy_sequential", "legacy_concurrent")
CLI = ("python -c pass", "import dvmkit.cli.main", "dvm --help", "dvm ask (modern)")


def test_customer_quick_answers_every_job_and_times_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "customer", "--quick", "--json"],
        cwd=REPO,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert report["benchmark"] == "customer"
    assert report["quick"] is True
    settings = report["settings"]
    subjects = report["subjects"]
    for name in PHASES:
        phase = subjects[name]
        size = settings["sequential_jobs" if "sequential" in name else "concurrent_jobs"]
        assert phase["requests"] == size > 0, name
        assert phase["answered"] == size, phase
        assert (phase["lost"], phase["wrong"], phase["failed"]) == (0, 0, {}), phase
        assert phase["client_cpu_s"] is not None
        assert phase["dvm_cpu_s"] is not None
    runs = settings["cli_runs"]
    for name in (*CLI, "dvm ask (legacy)"):
        cli = subjects[f"cli {name}"]
        assert cli["runs"] == runs > 0, cli
        assert cli["correct"] == runs, cli
        assert cli["p50_ms"] > 0
        if name != "python -c pass":
            assert cli["times_floor"] > 0, cli
    keys = {f["key"] for f in report["figures"]}
    for name in PHASES:
        assert {f"{name}_rate", f"{name}_p50", f"{name}_p99"} <= keys
    assert {"cli_dvm_ask_modern_p50", "cli_dvm_ask_legacy_p50", "cli_python_c_pass_p50"} <= keys
    goals = [g["text"] for g in report["goals"]]
    assert sum("dvm ask" in g for g in goals) == 2
    assert any("no job lost" in g for g in goals)
    lost_goal = next(g for g in report["goals"] if "no job lost" in g["text"])
    assert lost_goal["met"] is True
