"""Smoke test for ``python -m benchmarks provider``: dvmkit's echo DVM, quick, on our relay.

It asserts the report's shape and that every job was answered with its own input; nothing
about speed (speed is only printed by the benchmark).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]
MEASURES = (
    "burst_rate",
    "burst_p50",
    "burst_p99",
    "seq_p50",
    "seq_p99",
    "rss_idle",
    "rss_bursts",
    "rss_peak",
)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "provider", *args],
        cwd=REPO,
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_provider_quick_serves_every_job_of_every_phase() -> None:
    result = _run("--quick", "--json", "--dvms", "ours")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert report["benchmark"] == "provider"
    assert report["quick"] is True
    ours = report["subjects"]["ours"]
    assert ours["available"] is True, ours
    assert "nostrdvm" not in report["subjects"]

    sequential = ours["sequential"]
    assert sequential["requests"] == report["settings"]["sequential_jobs"] > 0
    assert sequential["answered"] == sequential["requests"]
    assert sequential["refused_by_dvm"] == 0
    assert ours["customers_warmed"] == report["settings"]["customers"] > 1
    size = report["settings"]["burst_requests"]["ours"]
    assert len(ours["bursts"]) == report["settings"]["bursts"] == 3
    for burst in ours["bursts"]:
        assert burst["requests"] == size > 0
        assert burst["answered"] == size
        assert burst["lost"] == 0
        assert burst["refused_by_dvm"] == 0
        assert burst["relay_rejected"] == 0
        assert burst["ended"] == "all answered"
        assert burst["rss_after_mib"] > 0
    assert ours["lost"] == 0
    # Every result carried its request's input back, exactly once, and matched a request.
    client = ours["client"]
    assert client["wrong_content"] == 0
    assert client["duplicate_results"] == 0
    assert client["results_for_unknown_requests"] == 0

    figures = {fig["key"]: fig for fig in report["figures"]}
    assert set(figures) == {f"{m}:ours" for m in MEASURES}
    for fig in figures.values():
        assert fig["subject"] == "dvmkit DVM"
        assert fig["value"] > 0
        assert fig["ratios"] == {}  # nostrdvm was not run, so nothing to compare with
    assert len(figures["burst_rate:ours"]["rounds"]) == 3
    assert len(figures["rss_bursts:ours"]["rounds"]) == 3

    goals = {goal["text"]: goal for goal in report["goals"]}
    assert len(goals) == 7
    for text, goal in goals.items():
        if "nostrdvm" in text:
            assert goal["met"] is None  # not measured in this run
        else:
            assert isinstance(goal["met"], bool)
    assert goals["zero lost (every job of every phase answered)"]["met"] is True


def test_provider_rejects_unknown_dvm_names() -> None:
    result = _run("--quick", "--dvms", "ours,dvmx")
    assert result.returncode == 2
    assert b"unknown DVMs: dvmx" in result.stderr


def test_provider_encrypted_quick_answers_every_wrapped_and_plain_job() -> None:
    result = _run("--encrypted", "--quick", "--json")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert report["quick"] is True
    assert report["settings"]["encrypted"] is True
    assert set(report["subjects"]) == {"plaintext", "encrypted"}  # no nostrdvm in this mode
    for name, subject in report["subjects"].items():
        assert subject["available"] is True, subject
        assert subject["lost"] == 0, name
        assert subject["sequential"]["answered"] == report["settings"]["sequential_jobs"] > 0
        size = report["settings"]["burst_requests"][name]
        assert len(subject["bursts"]) == report["settings"]["bursts"] == 3
        for burst in subject["bursts"]:
            assert burst["answered"] == burst["requests"] == size > 0
            assert burst["lost"] == 0
            assert burst["ended"] == "all answered"
        client = subject["client"]
        assert client["wrong_content"] == 0
        assert client["duplicate_results"] == 0
        assert client["results_for_unknown_requests"] == 0
    # Every answer to a wrapped job came wrapped, and opened with every check passing.
    wrapped = report["subjects"]["encrypted"]["client"]
    assert wrapped["unopenable_wraps"] == 0
    jobs = sum(b["requests"] for b in report["subjects"]["encrypted"]["bursts"])
    assert wrapped["wraps_opened"] >= jobs

    figures = {fig["key"]: fig for fig in report["figures"]}
    assert set(figures) == {f"{m}:{s}" for m in MEASURES for s in ("plaintext", "encrypted")}
    assert all(fig["ratios"] == {} for key, fig in figures.items() if key.endswith(":plaintext"))
    rate = figures["burst_rate:encrypted"]
    (share,) = rate["ratios"].values()
    assert share == rate["value"] / figures["burst_rate:plaintext"]["value"]
    for key in ("burst_p50", "burst_p99", "seq_p50", "seq_p99"):
        assert len(figures[f"{key}:encrypted"]["ratios"]) == 1

    goals = {goal["text"]: goal for goal in report["goals"]}
    ratio_goal = next(goal for text, goal in goals.items() if "plaintext (same DVM" in text)
    assert ratio_goal["value"] == share
    assert isinstance(ratio_goal["met"], bool)  # measured; whether it was met is not asserted
    lost_goal = next(goal for text, goal in goals.items() if text.startswith("zero lost"))
    assert lost_goal["met"] is True


def test_provider_encrypted_refuses_nostrdvm_options() -> None:
    result = _run("--encrypted", "--quick", "--dvms", "ours")
    assert result.returncode == 2
    assert b"--encrypted measures dvmkit's DVM only" in result.stderr


def test_provider_paid_quick_pays_and_answers_every_job() -> None:
    result = _run("--paid", "--quick", "--json")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert report["quick"] is True
    settings = report["settings"]
    assert settings["paid"] is True
    price = settings["price_msat"]
    assert price > 0
    assert set(report["subjects"]) == {"free", "paid"}  # no nostrdvm in this mode
    for name, subject in report["subjects"].items():
        assert subject["available"] is True, subject
        assert subject["lost"] == 0, name
        assert subject["sequential"]["answered"] == settings["sequential_jobs"] > 0
        size = settings["burst_requests"][name]
        assert len(subject["bursts"]) == settings["bursts"] == 3
        for burst in subject["bursts"]:
            assert burst["answered"] == burst["requests"] == size > 0
            assert burst["lost"] == 0
            assert burst["refused_by_dvm"] == 0
            assert burst["ended"] == "all answered"
        client = subject["client"]
        assert client["wrong_content"] == 0
        assert client["duplicate_results"] == 0
        assert client["results_for_unknown_requests"] == 0
    assert "payment" not in report["subjects"]["free"]
    assert "payment-required" not in report["subjects"]["free"]["client"]["feedback_statuses"]

    # Every paid job was asked for, paid once through the wallet, and the ledger agrees.
    payment = report["subjects"]["paid"]["payment"]
    jobs = settings["sequential_jobs"] + settings["bursts"] * settings["burst_requests"]["paid"]
    assert payment["payments"] == payment["invoices"] >= jobs
    assert payment["pay_failures"] == {}
    assert payment["overpriced_invoices"] == payment["payment_required_without_invoice"] == 0
    assert payment["answered_unpaid"] == 0
    balances = payment["balances_msat"]
    assert balances["dvm"] == payment["payments"] * price
    assert balances["customer"] == payment["deposit_msat"] - balances["dvm"]
    assert payment["wallet_exit_code"] == 0
    # One invoice per job; each job also costs a pay_invoice and at least one lookup_invoice.
    assert payment["wallet_invoices"] == payment["payments"]
    assert payment["wallet_requests"] >= 3 * payment["payments"]
    for phase in ("sequential", "burst1", "burst2", "burst3"):
        steps = payment["steps_ms"][phase]
        assert set(steps) == {
            "request_to_invoice",
            "invoice_to_pay_call",
            "pay_invoice",
            "paid_to_result",
        }
        assert all(step is not None for step in steps.values())

    figures = {fig["key"]: fig for fig in report["figures"]}
    assert set(figures) == {f"{m}:{s}" for m in MEASURES for s in ("free", "paid")}
    assert all(fig["ratios"] == {} for key, fig in figures.items() if key.endswith(":free"))
    for m in MEASURES:
        paid, free = figures[f"{m}:paid"], figures[f"{m}:free"]
        (share,) = paid["ratios"].values()
        expected = paid["value"] / free["value"]
        assert paid["extra"]["paid_over_free"] == round(expected, 3)
        assert share == pytest.approx(expected if paid["better"] == "higher" else 1 / expected)
    assert "wallet_cpu_share" in figures["burst_rate:paid"]["extra"]

    goals = {goal["text"]: goal for goal in report["goals"]}
    assert len(goals) == 2
    assert all(goal["met"] is True for goal in goals.values()), goals


def test_provider_paid_refuses_other_modes() -> None:
    result = _run("--paid", "--encrypted", "--quick")
    assert result.returncode == 2
    assert b"--encrypted and --paid are separate runs" in result.stderr
    result = _run("--paid", "--quick", "--dvms", "ours")
    assert result.returncode == 2
    assert b"--paid measures dvmkit's DVM only" in result.stderr
