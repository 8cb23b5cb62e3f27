"""The customer benchmark: dvmkit's customer client and ``dvm ask`` against the echo DVM.

dvmkit's relay (``python -m dvmkit.relay --memory``) and the built-in echo DVM (``dvm serve
--builtin echo``) each run in their own process; the customer client runs in this one. Measured:

- the client, per dialect (modern category ``echo`` open request, kind 25000; legacy kind 5050
  targeted at the DVM): sequential jobs, one at a time, latency request() -> result() p50/p99;
  then concurrent jobs, ``in_flight`` at once, throughput and p50/p99; lost = no result;
- ``dvm ask`` (both dialects) as a subprocess, spawn to exit with the result on stdout, against
  the same running setup; next to ``python -c pass`` (the interpreter's own start, the floor),
  ``python -c "import dvmkit.cli.main"`` and ``dvm --help``.

There is no peer customer CLI to compare with, so the ratios are against the floor; and the CPU
each process spent in a client phase says which side limits the client's throughput.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.customer_procs import Runs, dvm_command, spawn_echo, timed_runs
from benchmarks.customer_report import fill
from benchmarks.provider_procs import DvmProcess, DvmUnavailable
from benchmarks.report import Report, environment
from benchmarks.servers import RelayProcess, RelayUnavailable
from benchmarks.servers import start as start_relay
from dvmkit.customer import Customer, CustomerTimeouts
from dvmkit.errors import DVMError
from dvmkit.nostr.keys import Keys

__all__ = ["Sizes", "run"]

LEGACY_KIND = 5050
DIALECTS = ("modern", "legacy")


@dataclass(frozen=True, slots=True)
class Sizes:
    sequential: int
    concurrent: int
    in_flight: int
    cli_runs: int
    job_timeout: float  # seconds one job may take before it counts as lost


FULL = Sizes(sequential=1000, concurrent=1000, in_flight=100, cli_runs=10, job_timeout=30.0)
QUICK = Sizes(sequential=50, concurrent=50, in_flight=25, cli_runs=3, job_timeout=30.0)


@dataclass(slots=True)
class Phase:
    """One client phase: what was asked, what came back, how long and at what CPU cost."""

    name: str
    dialect: str
    requests: int
    latencies_ms: list[float] = field(default_factory=list)
    wrong: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def lost(self) -> int:
        return self.requests - self.answered


class _Cpu:
    """CPU seconds spent by the DVM, the relay and this process between start and ``take``."""

    def __init__(self, dvm: DvmProcess, relay: RelayProcess) -> None:
        self._dvm, self._relay = dvm, relay
        self._start = (dvm.cpu_seconds(), relay.cpu_seconds(), time.process_time())

    def take(self) -> dict[str, float | None]:
        d0, r0, c0 = self._start
        relay = self._relay.cpu_seconds()
        return {
            "dvm": round(self._dvm.cpu_seconds() - d0, 3),
            "relay": None if relay is None or r0 is None else round(relay - r0, 3),
            "client": round(time.process_time() - c0, 3),
        }


async def _one(customer: Customer, phase: Phase, dvm_pubkey: str, label: str, s: Sizes) -> None:
    text = f"echo {label} {os.urandom(4).hex()}"
    begin = time.perf_counter()
    try:
        if phase.dialect == "legacy":
            job = await customer.request(LEGACY_KIND, input=text, legacy=True, to=dvm_pubkey)
        else:
            job = await customer.request("echo", input=text)
        result = await job.result(timeout=s.job_timeout)
    except DVMError as exc:
        name = type(exc).__name__
        phase.failed[name] = phase.failed.get(name, 0) + 1
        return
    elapsed = (time.perf_counter() - begin) * 1000
    if result.content != text:
        phase.wrong += 1
        return
    phase.latencies_ms.append(elapsed)


async def _sequential(customer: Customer, phase: Phase, dvm_pubkey: str, s: Sizes) -> None:
    for i in range(phase.requests):
        await _one(customer, phase, dvm_pubkey, f"{phase.name} {i}", s)


async def _concurrent(customer: Customer, phase: Phase, dvm_pubkey: str, s: Sizes) -> None:
    gate = asyncio.Semaphore(s.in_flight)

    async def gated(i: int) -> None:
        async with gate:
            await _one(customer, phase, dvm_pubkey, f"{phase.name} {i}", s)

    async with asyncio.TaskGroup() as tg:
        for i in range(phase.requests):
            tg.create_task(gated(i))


async def _client(relay: RelayProcess, dvm: DvmProcess, dvm_pubkey: str, s: Sizes) -> list[Phase]:
    phases: list[Phase] = []
    timeouts = CustomerTimeouts(silence=s.job_timeout)
    async with Customer(relays=[relay.url], timeouts=timeouts) as customer:
        for dialect in DIALECTS:
            warm = Phase("warm-up", dialect, 5)
            await _sequential(customer, warm, dvm_pubkey, s)
            for name, size, drive in (
                ("sequential", s.sequential, _sequential),
                ("concurrent", s.concurrent, _concurrent),
            ):
                phase = Phase(name, dialect, size)
                cpu = _Cpu(dvm, relay)
                begin = time.perf_counter()
                await drive(customer, phase, dvm_pubkey, s)
                phase.wall_s = time.perf_counter() - begin
                phase.cpu_s = cpu.take()
                phases.append(phase)
                _progress(
                    f"{dialect} {name}: {phase.answered}/{phase.requests} answered in "
                    f"{phase.wall_s:.2f} s, lost {phase.lost}, wrong {phase.wrong}"
                )
    return phases


def _cli(relay: RelayProcess, dvm_pubkey: str, workdir: Path, s: Sizes) -> list[Runs]:
    dvm, _ = dvm_command()
    n = s.cli_runs
    runs = [
        timed_runs("python -c pass", [sys.executable, "-c", "pass"], count=n, expect=None,
                   workdir=workdir),
        timed_runs("import dvmkit.cli.main", [sys.executable, "-c", "import dvmkit.cli.main"],
                   count=n, expect=None, workdir=workdir),
        timed_runs("dvm --help", [*dvm, "--help"], count=n, expect=None, workdir=workdir),
    ]  # fmt: skip
    for dialect, args in (
        ("modern", ["echo", "hello cli", relay.url]),
        ("legacy", [str(LEGACY_KIND), "hello cli", relay.url, "--legacy", "--to", dvm_pubkey]),
    ):
        runs.append(
            timed_runs(f"dvm ask ({dialect})", [*dvm, "ask", *args], count=n,
                       expect="hello cli", workdir=workdir)
        )  # fmt: skip
        _progress(f"dvm ask ({dialect}): {runs[-1].correct}/{n} correct")
    return runs


def _progress(text: str) -> None:
    print(f"[bench customer] {text}", file=sys.stderr, flush=True)


def run(*, quick: bool = False) -> Report:
    """Start the relay and the echo DVM, measure the client then the CLI; return the report."""
    s = QUICK if quick else FULL
    _, dvm_runner = dvm_command()
    report = Report(
        benchmark="customer",
        quick=quick,
        environment=environment(("dvmkit", "websockets", "orjson", "coincurve", "typer")),
        settings={
            "relay": "ours (python -m dvmkit.relay --memory), own process",
            "dvm": "dvm serve --builtin echo, own process",
            "dvm_cli": dvm_runner,
            "sequential_jobs": s.sequential,
            "concurrent_jobs": s.concurrent,
            "in_flight": s.in_flight,
            "cli_runs": s.cli_runs,
            "job_timeout_s": s.job_timeout,
            "modern": "kind 25000, category echo, open request (no p tag), free result wins",
            "legacy": f"kind {LEGACY_KIND}, targeted at the DVM (p tag)",
            "client": "one Customer, one connection, in this process",
        },
    )
    dvm_keys = Keys.generate()
    with tempfile.TemporaryDirectory(prefix="dvmkit-bench-customer-") as tmp:
        workdir = Path(tmp)
        (workdir / "relay").mkdir()
        relay: RelayProcess | None = None
        dvm: DvmProcess | None = None
        try:
            relay = start_relay("ours", workdir / "relay")
            dvm = spawn_echo(
                relay_url=relay.url, secret_hex=dvm_keys.secret_bytes().hex(), workdir=workdir
            )
            _progress(f"relay {relay.url} and echo DVM up")
            phases = asyncio.run(_client(relay, dvm, dvm_keys.public_key, s))
            runs = _cli(relay, dvm_keys.public_key, workdir, s)
        except (RelayUnavailable, DvmUnavailable, DVMError, OSError) as exc:
            report.notes.append(f"not measured: {exc!r}")
            report.subjects["available"] = False
            return report
        finally:
            if dvm is not None:
                dvm.stop()
            if relay is not None:
                relay.stop()
    fill(report, phases, runs)
    return report
