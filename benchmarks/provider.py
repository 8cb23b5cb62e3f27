"""The provider benchmark: dvmkit's DVM against nostrdvm 1.1.8, both with a no-op echo handler.

Each DVM runs in its own process on a fresh process of the same relay (dvmkit's, by default),
one DVM after the other in the same run, and gets the same legacy NIP-90 requests: kind 5050
with ``["i", text, "text"]`` and no ``p`` tag, answered by a kind-6050 result carrying
``["e", request id]``. With ``--encrypted`` the subjects are instead dvmkit's DVM twice, fed
modern kind-25000 requests in the clear, then the same requests gift-wrapped (kind 21059,
simplified form), and encrypted throughput is printed as a ratio of plaintext
(:mod:`benchmarks.provider_jobs`). The customer (:mod:`benchmarks.provider_client`) signs
(and wraps) every request before the clock starts. Measured per subject:

- start-up (spawn until it answers a job) and idle RSS right after;
- sequential: one job at a time, latency publish -> result received, p50/p99;
- bursts: all requests of a burst written at once, then results awaited until a deadline;
  throughput = answered / (last result - publish), p50/p99 latency, lost = unanswered;
- RSS (VmRSS) after each burst and the peak (VmHWM), from ``/proc``.

Goals (the issue / DESIGN.md §8) are printed with whether this run met them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.provider_client import ClientError, Customer
from benchmarks.provider_jobs import ENCRYPTED, SUBJECTS, Form, Subject, requests
from benchmarks.provider_procs import DvmProcess, DvmUnavailable, nostrdvm_python, spawn
from benchmarks.provider_report import fill, fill_encrypted
from benchmarks.provider_values import FULL, QUICK, Outcome, Phase, Sizes
from benchmarks.report import Report, environment
from benchmarks.servers import RelayProcess, RelayUnavailable
from benchmarks.servers import start as start_relay
from dvmkit.nostr.keys import Keys

__all__ = ["DVMS", "RELAYS", "run"]

T = TypeVar("T")
DVMS = ("ours", "nostrdvm")
RELAYS = ("ours", "localrelay")
SCRIPTS = {"ours": "dvmkit_echo.py", "nostrdvm": "nostrdvm_echo.py"}
#: ``build(customers, count, label)``: requests as (id, input text, frame), for one subject.
Build = Callable[[Sequence[Keys], int, str], list[tuple[str, str, bytes]]]


class _Clock:
    """CPU of the DVM, the relay and this process (and its opening of wraps) over one phase."""

    def __init__(self, dvm: DvmProcess, relay: RelayProcess, client: Customer) -> None:
        self._dvm, self._relay, self._client = dvm, relay, client
        self.dvm0, self.relay0, self.own0, self.open0 = (
            dvm.cpu_seconds(),
            relay.cpu_seconds(),
            time.process_time(),
            client.open_cpu_s,
        )

    def phase(
        self, name: str, requests: int, answered: list[float], wall: float, ended: str
    ) -> Phase:
        relay = self._relay.cpu_seconds()
        relay_cpu = None if relay is None or self.relay0 is None else relay - self.relay0
        return Phase(
            name, requests, len(answered), answered, wall,
            self._dvm.cpu_seconds() - self.dvm0, relay_cpu, time.process_time() - self.own0, ended,
            client_open_cpu_s=self._client.open_cpu_s - self.open0,
        )  # fmt: skip


async def wait_ready(
    client: Customer, dvm: DvmProcess, build: Build, keys: Keys, limit_s: float, every: float
) -> float:
    """Send a job every ``every`` seconds until one is answered; seconds from spawn to that
    answer.

    Raises:
        DvmUnavailable: the DVM exited or answered nothing within ``timeout``.
    """
    sent: list[str] = []
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        if not dvm.alive():
            raise DvmUnavailable(f"the DVM exited during start-up: {dvm.log_tail()}")
        ((rid, text, frame),) = build([keys], 1, "ready")
        sent.append(rid)
        answered = client.expect({rid: text})
        client.send([frame])
        await asyncio.wait({answered}, timeout=every)
        done = [client.results[r] for r in sent if r in client.results]
        if done:
            return min(done) - dvm.spawned_at
    raise DvmUnavailable(f"the DVM answered no job within {limit_s:.0f} s: {dvm.log_tail()}")


async def warm(client: Customer, build: Build, customers: Sequence[Keys], s: Sizes) -> int:
    """One job from each customer, one at a time (nostrdvm looks each new customer up on the
    relay first); returns how many were answered."""
    answered = 0
    for rid, text, frame in build(customers, len(customers), "warm"):
        done = client.expect({rid: text})
        client.send([frame])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.job_timeout):
                await done
        answered += rid in client.results
    return answered


async def run_sequential(
    client: Customer, dvm: DvmProcess, relay: RelayProcess, build: Build, keys: Sequence[Keys],
    s: Sizes,
) -> Phase:  # fmt: skip
    jobs = build(keys, s.sequential, "seq")
    latencies: list[float] = []
    clock = _Clock(dvm, relay, client)
    begin = time.perf_counter()
    for rid, text, frame in jobs:
        answered = client.expect({rid: text})
        sent_at = client.send([frame])
        try:
            async with asyncio.timeout(s.job_timeout):
                await answered
        except TimeoutError:
            continue
        if rid in client.results:
            latencies.append((client.results[rid] - sent_at) * 1000)
    wall = time.perf_counter() - begin
    ended = "all answered" if len(latencies) == len(jobs) else "not all answered"
    phase = clock.phase("sequential", len(jobs), latencies, wall, ended)
    phase.refused = sum(rid in client.errors for rid, _, _ in jobs)
    return phase


async def run_burst(
    client: Customer, dvm: DvmProcess, relay: RelayProcess, build: Build, keys: Sequence[Keys],
    n: int,
    name: str,
    s: Sizes,
) -> Phase:  # fmt: skip
    jobs = build(keys, n, name)
    ids = [rid for rid, _, _ in jobs]
    frames = [frame for _, _, frame in jobs]
    answered = client.expect({rid: text for rid, text, _ in jobs})
    rejected0 = sum(client.rejected.values())
    clock = _Clock(dvm, relay, client)
    sent_at = client.send(frames)
    ended = "all settled"
    while not answered.done():
        now = time.perf_counter()
        if now >= sent_at + s.burst_deadline:
            ended = "deadline"
            break
        if now - max(sent_at, client.last_settled_at) >= s.stall:
            ended = "stalled"
            break
        await asyncio.wait({answered}, timeout=min(1.0, sent_at + s.burst_deadline - now))
    client.open_sealed()  # the wraps that came before the deadline or the stall, if any
    if answered.done():
        answered.result()  # re-raises a lost connection
    times = [client.results[rid] for rid in ids if rid in client.results]
    wall = (max(times) if times else time.perf_counter()) - sent_at
    latencies = [(t - sent_at) * 1000 for t in times]
    phase = clock.phase(name, n, latencies, wall, ended)
    phase.relay_rejected = sum(client.rejected.values()) - rejected0
    phase.refused = sum(rid in client.errors for rid in ids)
    if ended == "all settled" and not phase.refused:
        phase.ended = "all answered"
    return phase


class Watch:
    """What a run reads besides the DVM, at the points :func:`measure` gives it: here nothing
    (``provider --paid`` reads its wallet's share, :mod:`benchmarks.provider_paid`)."""

    async def phase(self, work: Awaitable[Phase]) -> Phase:
        """Run one measured phase: the sequential one, or a burst."""
        return await work

    def idle(self) -> None:
        """Right after the DVM's idle RSS was read."""

    def peak(self) -> None:
        """Right after the DVM's peak RSS was read."""


async def measure(
    name: str,
    client: Customer,
    relay: RelayProcess,
    form: Form,
    start: Callable[[Keys], DvmProcess],
    s: Sizes,
    *,
    every: float,
    burst_size: int,
    matched: int | None = None,
    watch: Watch | None = None,
) -> Outcome:
    """Subscribe ``client`` for fresh customers, start a DVM and run every phase against it
    with requests of ``form``; the DVM is stopped here, the client left to its owner.

    Args:
        start: spawns the DVM with the keys it is given.
        every: seconds between start-up probes (:func:`wait_ready`).
        burst_size: requests per burst.
        matched: one more burst of this size, after the RSS readings, if given.
        watch: what else to read along the way (:class:`Watch`).
    """
    watch = watch or Watch()
    customers = [Keys.generate() for _ in range(s.customers)]
    dvm_keys = Keys.generate()
    build: Build = partial(requests, form, dvm_keys.public_key)
    await client.subscribe(customers, form)
    out = Outcome()
    dvm = start(dvm_keys)
    try:
        out.startup_s = await wait_ready(client, dvm, build, customers[0], s.start_timeout, every)
        out.warmed = await warm(client, build, customers, s)
        await asyncio.sleep(s.settle)  # idle: nothing to await, just time passing
        out.idle = dvm.memory()
        watch.idle()
        progress(f"{name}: ready in {out.startup_s:.2f} s, idle RSS {out.idle.rss_mib:.1f} MiB")
        out.sequential = await watch.phase(run_sequential(client, dvm, relay, build, customers, s))
        progress(f"{name}: sequential {out.sequential.summary()}")
        for k in range(s.bursts):
            burst = await watch.phase(
                run_burst(client, dvm, relay, build, customers, burst_size, f"burst{k + 1}", s)
            )
            await asyncio.sleep(s.settle)  # let the DVM finish its writes before reading RSS
            burst.memory_after = dvm.memory()
            out.bursts.append(burst)
            progress(f"{name}: {burst.name} {burst.summary()}")
        out.peak = dvm.memory()
        watch.peak()
        if matched is not None:
            out.matched = await watch.phase(
                run_burst(client, dvm, relay, build, customers, matched, "matched", s)
            )
            progress(f"{name}: {out.matched.name} {out.matched.summary()}")
    finally:
        out.exit_code = dvm.stop()
    return out


def client_counts(client: Customer) -> dict[str, Any]:
    """What the customer saw besides the phases' answers: wrong, repeated or stray results,
    refusals by the relay, statuses and other messages."""
    return {
        "wrong_content": client.wrong_content,
        "duplicate_results": client.duplicates,
        "results_for_unknown_requests": client.unknown,
        "relay_rejected": dict(client.rejected),
        "feedback_statuses": dict(client.feedback),
        "other_messages": client.notices,
    }


def _run_subject(
    subject: Subject, relay: RelayProcess, *, python: Path | str, workdir: Path, s: Sizes
) -> Outcome:
    """One subject on its relay, on an event loop of its own."""
    return asyncio.run(_measure(subject, relay, python, workdir, s))


async def _measure(
    subject: Subject, relay: RelayProcess, python: Path | str, workdir: Path, s: Sizes
) -> Outcome:
    def start(keys: Keys) -> DvmProcess:
        return spawn(
            subject.dvm, python=python, script=SCRIPTS[subject.dvm], relay_url=relay.url,
            secret_hex=keys.secret_bytes().hex(), workdir=workdir,
        )  # fmt: skip

    # A stored (legacy) request sent before the DVM subscribed is read when it does; an
    # ephemeral one (kind 25000, 21059) is lost, so those are sent more often.
    every = 1.0 if subject.form == "legacy" else 0.1
    size = s.nostrdvm_burst if subject.dvm == "nostrdvm" else s.burst
    # Burst latency grows with the burst's size (it is the queue draining), so the latency
    # ratio needs one burst of nostrdvm's size too.
    matched = s.nostrdvm_burst if subject.name == "ours" and s.nostrdvm_burst != s.burst else None
    with contextlib.closing(await Customer.open(relay.url)) as client:
        out = await measure(
            subject.name, client, relay, subject.form, start, s,
            every=every, burst_size=size, matched=matched,
        )  # fmt: skip
    out.client = client_counts(client)
    if subject.form == "wrapped":
        out.client |= {
            "wraps_opened": client.opened,
            "unopenable_wraps": client.unopenable,
            "open_cpu_s": round(client.open_cpu_s, 3),
            "open_us_per_wrap": round(client.open_cpu_s * 1e6 / max(client.opened, 1), 1),
        }
    return out


def progress(text: str) -> None:
    print(f"[bench provider] {text}", file=sys.stderr, flush=True)


def new_report(*, quick: bool, settings: dict[str, Any]) -> Report:
    """An empty report of this benchmark, plain or ``--paid``, and the environment it ran in."""
    packages = ("dvmkit", "websockets", "orjson", "coincurve", "cryptography")
    return Report(
        benchmark="provider", quick=quick, environment=environment(packages), settings=settings
    )


def on_fresh_relay(
    report: Report,
    subject: str,
    relay: str,
    workdir: Path,
    measure: Callable[[RelayProcess], T],
    *,
    errors: tuple[type[Exception], ...],
) -> T | None:
    """Start a fresh process of ``relay`` (its store in ``workdir / "relay"``), run ``measure``
    on it, stop it; None, with the reason in ``report``, if either could not run.

    Args:
        errors: what ``measure`` raises when the subject cannot be measured; anything else
            ends the run.
    """
    progress(f"starting relay {relay} for {subject}")
    try:
        process = start_relay(relay, workdir / "relay")
    except RelayUnavailable as exc:
        report.subjects[subject] = {"available": False, "reason": f"relay: {exc}"}
        report.notes.append(f"{subject} not measured: relay {relay}: {exc}")
        return None
    try:
        return measure(process)
    except errors as exc:
        report.subjects[subject] = {"available": False, "reason": str(exc)}
        report.notes.append(f"{subject} not measured: {exc!r}")
        return None
    finally:
        process.stop()


def run(
    *,
    quick: bool = False,
    dvms: Sequence[str] = DVMS,
    relay: str = "ours",
    nostrdvm_burst: int | None = None,
    encrypted: bool = False,
) -> Report:
    """Measure each subject in turn, each on a fresh relay process; return the report.

    Args:
        dvms: the DVMs of the default run (legacy requests, dvmkit against nostrdvm).
        encrypted: instead, dvmkit's DVM with modern requests in the clear and gift-wrapped.
    """
    s = QUICK if quick else FULL
    if nostrdvm_burst is not None:
        s = replace(s, nostrdvm_burst=nostrdvm_burst)
    subjects = ENCRYPTED if encrypted else tuple(SUBJECTS[name] for name in dvms)
    if encrypted:
        request = (
            "kind 25000, category echo, one i tag (text), p = the DVM; encrypted: that signed"
            " request in a simplified gift wrap (kind 21059, p = the DVM), answered in 21059"
            " wraps to the customer; one connection"
        )
        sizes: dict[str, int] = {sub.name: s.burst for sub in subjects}
    else:
        request = "kind 5050, one i tag (text), no p tag; one connection"
        sizes = {"ours": s.burst, "nostrdvm": s.nostrdvm_burst}
    report = new_report(
        quick=quick,
        settings={
            "encrypted": encrypted,
            "relay": relay,
            "relay_process": "a fresh one per subject (same command), each on an empty store",
            "sequential_jobs": s.sequential,
            "burst_requests": sizes,
            "bursts": s.bursts,
            "burst_deadline_s": s.burst_deadline,
            "burst_stall_s": s.stall,
            "settle_s": s.settle,
            "request": request,
            "customers": s.customers,
            "aggregate": "bursts: best of the bursts (rates: highest, latencies: lowest)",
        },
    )
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="dvmkit-bench-provider-") as tmp:
        for subject in subjects:
            name = subject.name
            try:
                python = (
                    sys.executable if subject.dvm == "ours" else nostrdvm_python(create=not quick)
                )
            except DvmUnavailable as exc:
                report.subjects[name] = {"available": False, "reason": str(exc)}
                report.notes.append(f"{name} not measured: {exc}")
                continue
            workdir = Path(tmp) / name
            (workdir / "relay").mkdir(parents=True)
            work = partial(_run_subject, subject, python=python, workdir=workdir, s=s)
            errors = (DvmUnavailable, ClientError, TimeoutError, OSError)
            outcome = on_fresh_relay(report, name, relay, workdir, work, errors=errors)
            if outcome is not None:
                outcomes[name] = outcome
    if encrypted:
        fill_encrypted(report, outcomes)
    else:
        fill(report, outcomes, s.burst, s.nostrdvm_burst)
    return report
