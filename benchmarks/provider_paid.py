"""``python -m benchmarks provider --paid``: paid jobs next to free ones, same DVM, same run.

The subjects are dvmkit's echo DVM (``provider_dvms/dvmkit_paid.py``) twice, each on a fresh
process of the same relay: free, then priced at :data:`PRICE_MSAT` and paid over NWC into
dvmkit's dev wallet (:class:`~dvmkit.payments.devwallet.DevWallet`, a real NIP-47 service with
instant settlement, in a process of its own: :mod:`benchmarks.provider_paid_procs` says why).
Both get the same modern requests (kind 25000, ``echo`` category, ``p`` = the DVM), from the
customer of :mod:`benchmarks.provider`, which for the paid subject pays every invoice as its
``payment-required`` arrives (:mod:`benchmarks.provider_paid_client`). A paid job's latency is
therefore request written -> ``make_invoice`` by the DVM -> ``payment-required`` -> the
customer's ``pay_invoice`` -> the wallet's ``payment_received`` -> the DVM's ``lookup_invoice``
-> result received.

The phases, sizes aside, are those of the default run (start-up, warm-up, sequential, bursts,
RSS after each): :func:`benchmarks.provider.measure` runs both. Every figure of the paid
subject carries its ratio to the free one (above 1: better, as everywhere in these reports);
the paid/free multiples themselves are each figure's ``extra.paid_over_free``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.provider import (
    Watch,
    client_counts,
    measure,
    new_report,
    on_fresh_relay,
    progress,
)
from benchmarks.provider_client import ClientError
from benchmarks.provider_paid_client import PayingCustomer
from benchmarks.provider_paid_procs import (
    LedgerSummary,
    open_accounts,
    read_ledger,
    spawn_dvm,
    start_wallet,
)
from benchmarks.provider_paid_report import fill_paid
from benchmarks.provider_procs import DvmProcess, DvmUnavailable
from benchmarks.provider_values import Outcome, Phase, Sizes
from benchmarks.report import Report
from benchmarks.servers import RelayProcess
from benchmarks.timing import percentile
from dvmkit.errors import DVMError
from dvmkit.nostr.keys import Keys
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient

__all__ = ["FULL", "PRICE_MSAT", "QUICK", "SUBJECTS", "PaidSubject", "run"]

PRICE_MSAT = 1_000
#: NWCPayments' default: a waiting job asks the wallet this often, besides its notification.
POLL_INTERVAL = 2.0
#: The customer's starting balance, in jobs: more than any run pays for.
DEPOSIT_JOBS = 100_000


@dataclass(frozen=True, slots=True)
class PaidSubject:
    name: str
    price_msat: int
    label: str


SUBJECTS = (
    PaidSubject("free", 0, "dvmkit DVM, free job"),
    PaidSubject("paid", PRICE_MSAT, f"dvmkit DVM, paid job ({PRICE_MSAT:,} msat, dev wallet)"),
)
# A paid burst is bounded by the wallet, which answers one NIP-47 request at a time (four or
# five per job): 300 jobs take seconds where the default run's 3,000 free ones take one.
FULL = Sizes(
    sequential=200, burst=300, nostrdvm_burst=300, bursts=3, burst_deadline=120.0, stall=30.0,
    job_timeout=10.0, settle=2.0, start_timeout=60.0, customers=10,
)  # fmt: skip
QUICK = Sizes(
    sequential=20, burst=20, nostrdvm_burst=20, bursts=3, burst_deadline=30.0, stall=10.0,
    job_timeout=10.0, settle=0.5, start_timeout=60.0, customers=10,
)  # fmt: skip


@dataclass(slots=True)
class Paying:
    """The paid subject's money side: where each phase's time went, and who holds what."""

    wallet_cpu_s: dict[str, float] = field(default_factory=dict)  # phase -> wallet CPU
    spent: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase -> step -> p50/p99
    payments: int = 0  # pay_invoice calls the wallet answered paid
    answered_unpaid: int = 0  # results for requests this customer never paid
    deposit_msat: int = 0  # the customer's balance before the run
    ledger: LedgerSummary | None = None  # after the run
    wallet_idle_rss_mib: float | None = None
    wallet_peak_mib: float | None = None
    wallet_exit_code: int | None = None
    client: dict[str, Any] = field(default_factory=dict)


#: A paid job's steps: (name, from, to), each a PayingCustomer timestamp map or ``results``.
STEPS = (
    ("request_to_invoice", "sent", "asked"),
    ("invoice_to_pay_call", "asked", "paying"),
    ("pay_invoice", "paying", "paid"),
    ("paid_to_result", "paid", "results"),
)


def _spent(client: PayingCustomer, ids: Iterable[str]) -> dict[str, Any]:
    """p50/p99 in ms of each step of :data:`STEPS` over the requests ``ids``."""
    ids = list(ids)
    out: dict[str, Any] = {}
    for step, start, end in STEPS:
        a: dict[str, float] = getattr(client, start)
        b: dict[str, float] = getattr(client, end)
        values = [(b[r] - a[r]) * 1000 for r in ids if r in a and r in b]
        out[step] = {f"p{p}": round(percentile(values, p), 3) for p in (50, 99)} if values else None
    return out


class _WalletWatch(Watch):
    """The paid subject's wallet: its CPU and the steps of the jobs sent in each phase, its
    RSS when the DVM's is read."""

    def __init__(self, client: PayingCustomer, wallet: DvmProcess, pay: Paying) -> None:
        self._client, self._wallet, self._pay = client, wallet, pay

    async def phase(self, work: Awaitable[Phase]) -> Phase:
        before = set(self._client.sent)
        cpu = self._wallet.cpu_seconds()
        phase = await work
        self._pay.wallet_cpu_s[phase.name] = round(self._wallet.cpu_seconds() - cpu, 3)
        sent = (r for r in self._client.sent if r not in before)
        self._pay.spent[phase.name] = _spent(self._client, sent)
        return phase

    def idle(self) -> None:
        self._pay.wallet_idle_rss_mib = self._wallet.memory().rss_mib

    def peak(self) -> None:
        self._pay.wallet_peak_mib = self._wallet.memory().hwm_mib


async def _measure(
    subject: PaidSubject,
    relay: RelayProcess,
    wallet: DvmProcess | None,
    wallet_uris: tuple[str, ConnectionURI] | None,
    workdir: Path,
    s: Sizes,
) -> tuple[Outcome, Paying]:
    def start(keys: Keys) -> DvmProcess:
        return spawn_dvm(
            relay_url=relay.url, secret_hex=keys.secret_bytes().hex(),
            workdir=workdir / "dvm", price_msat=subject.price_msat,
            wallet_uri=None if wallet_uris is None else wallet_uris[0],
            poll_interval=POLL_INTERVAL,
        )  # fmt: skip

    client = await PayingCustomer.open(relay.url)
    client.price_msat = subject.price_msat
    pay = Paying()
    watch = Watch() if wallet is None else _WalletWatch(client, wallet, pay)
    with contextlib.closing(client):
        async with contextlib.AsyncExitStack() as stack:
            if wallet_uris is not None:
                # The customer's own account: its NWC connection is the benchmark's, like the
                # rest of the customer (the wallet service is the other process).
                purse = NWCClient(wallet_uris[1], timeout=s.job_timeout)
                await stack.enter_async_context(purse)
                tg = await stack.enter_async_context(asyncio.TaskGroup())
                payer = tg.create_task(client.pay(purse), name="pay invoices")
                stack.callback(payer.cancel)  # runs first: the group then has nothing to wait on
            # Kind 25000 is ephemeral: a request sent before the DVM subscribed is lost, so
            # start-up probes are sent often (each paid probe is paid like any job).
            out = await measure(
                subject.name, client, relay, "modern", start, s,
                every=0.1, burst_size=s.burst, watch=watch,
            )  # fmt: skip
    out.client = client_counts(client)
    if wallet_uris is not None:
        pay.payments = len(client.paid)
        pay.answered_unpaid = sum(r not in client.paid for r in client.results)
        pay.client = {
            "invoices": len(client.asked),
            "pay_failures": dict(client.pay_failures),
            "overpriced_invoices": client.overpriced,
            "payment_required_without_invoice": client.unpriced,
        }
    return out, pay


def run(*, quick: bool = False, relay: str = "ours") -> Report:
    """Measure the free subject, then the paid one, each on a fresh relay; return the report."""
    s = QUICK if quick else FULL
    report = new_report(
        quick=quick,
        settings={
            "paid": True,
            "relay": relay,
            "relay_process": "a fresh one per subject (same command), each on an empty store",
            "price_msat": PRICE_MSAT,
            "wallet": "dvmkit dev wallet (NIP-47, NIP-44), in its own process, on the same relay",
            "nwc_poll_interval_s": POLL_INTERVAL,
            "sequential_jobs": s.sequential,
            "burst_requests": {sub.name: s.burst for sub in SUBJECTS},
            "bursts": s.bursts,
            "burst_deadline_s": s.burst_deadline,
            "burst_stall_s": s.stall,
            "settle_s": s.settle,
            "request": "kind 25000, category echo, one i tag (text), p = the DVM; one connection;"
            " paid: the customer pays each payment-required's bolt11 as it comes, concurrently,"
            " with its own NWC connection to the wallet",
            "customers": s.customers,
            "aggregate": "bursts: best of the bursts (rates: highest, latencies: lowest)",
        },
    )
    outcomes: dict[str, Outcome] = {}
    paid: dict[str, Paying] = {}
    with tempfile.TemporaryDirectory(prefix="dvmkit-bench-paid-") as tmp:
        for subject in SUBJECTS:
            name = subject.name
            workdir = Path(tmp) / name
            for sub in ("relay", "dvm", "wallet"):
                (workdir / sub).mkdir(parents=True)
            work = partial(_run_subject, subject, workdir=workdir, s=s)
            errors = (DvmUnavailable, ClientError, DVMError, TimeoutError, OSError)
            measured = on_fresh_relay(report, name, relay, workdir, work, errors=errors)
            if measured is None:
                continue
            outcomes[name], paying = measured
            if paying is not None:
                paid[name] = paying
    fill_paid(report, outcomes, paid, {sub.name: sub.label for sub in SUBJECTS}, PRICE_MSAT)
    return report


def _run_subject(
    subject: PaidSubject, relay: RelayProcess, *, workdir: Path, s: Sizes
) -> tuple[Outcome, Paying | None]:
    """One subject on its relay; a priced one with the dev wallet, started here and stopped
    before its ledger is read."""
    if not subject.price_msat:
        out, _ = asyncio.run(_measure(subject, relay, None, None, workdir, s))
        return out, None
    db = workdir / "wallet" / "ledger.sqlite3"
    deposit = subject.price_msat * DEPOSIT_JOBS
    uris = open_accounts(relay.url, db, deposit_msat=deposit)
    begin = time.perf_counter()
    wallet = start_wallet(relay_url=relay.url, db=db, workdir=db.parent)
    progress(f"{subject.name}: dev wallet serving in {time.perf_counter() - begin:.2f} s")
    try:
        out, paying = asyncio.run(_measure(subject, relay, wallet, uris, workdir, s))
    finally:
        exit_code = wallet.stop()
    paying.wallet_exit_code = exit_code
    paying.deposit_msat = deposit
    paying.ledger = read_ledger(db)
    return out, paying
