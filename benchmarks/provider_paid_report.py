"""Figures, ratios and checks of ``provider --paid`` (see :mod:`benchmarks.provider_paid`).

The measures are the provider benchmark's own (:data:`benchmarks.provider_report.MEASURES`).
Each figure of the paid subject carries its ratio to the free one, oriented like every ratio of
these reports (above 1: better), and ``extra.paid_over_free``: the plain paid / free quotient
(for a latency, how many times longer a paid job took).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.provider_report import (
    MEASURES,
    Measure,
    best_burst,
    best_value,
    burst_load,
    subject_entry,
)
from benchmarks.provider_values import Outcome
from benchmarks.report import Figure, Goal, Report, ratio

if TYPE_CHECKING:
    from benchmarks.provider_paid import Paying

FREE, PAID = "free", "paid"


def _load(m: Measure, o: Outcome, paying: Paying | None) -> dict[str, Any]:
    """The provider benchmark's load of the best burst, and the dev wallet's share of it."""
    out = burst_load(m, o)
    best = best_burst(o)
    wallet = None if paying is None or best is None else paying.wallet_cpu_s.get(best.name)
    if out and best is not None and best.wall_s and wallet is not None:
        out["wallet_cpu_share"] = round(wallet / best.wall_s, 2)
        out["wallet_cpu_ms_per_job"] = round(wallet * 1000 / max(best.answered, 1), 3)
    return out


def fill_paid(
    report: Report,
    outcomes: dict[str, Outcome],
    paid: dict[str, Paying],
    labels: dict[str, str],
    price_msat: int,
) -> None:
    """Add subjects, figures, checks and notes of the free and the paid subject to ``report``."""
    values: dict[str, dict[str, float]] = {}
    for name, o in outcomes.items():
        report.subjects[name] = _subject(labels[name], o, paid.get(name))
        for m in MEASURES:
            if rounds := m.rounds(o):
                values.setdefault(m.key, {})[name] = best_value(m, rounds)
    for name, o in outcomes.items():
        for m in MEASURES:
            mine = values.get(m.key, {}).get(name)
            if mine is None:
                continue
            free = values[m.key].get(FREE)
            ratios, extra = {}, _load(m, o, paid.get(name))
            if name == PAID and free is not None:
                ratios[labels[FREE]] = ratio(mine, free, m.better)
                extra["paid_over_free"] = round(mine / free, 3) if free else None
            report.figures.append(
                Figure(
                    key=f"{m.key}:{name}", group=m.title, subject=labels[name], value=mine,
                    unit=m.unit, better=m.better, rounds=tuple(m.rounds(o)), ratios=ratios,
                    note={"best": "best burst", "last": "after the last burst"}.get(
                        m.aggregate, ""
                    ),
                    extra=extra,
                )
            )  # fmt: skip
    _goals(report, outcomes, paid.get(PAID), price_msat)
    _notes(report, outcomes, paid.get(PAID), labels)


def _subject(label: str, o: Outcome, paying: Paying | None) -> dict[str, Any]:
    out = subject_entry(label, o)
    if paying is not None:
        out["payment"] = {
            "payments": paying.payments,
            "answered_unpaid": paying.answered_unpaid,
            "deposit_msat": paying.deposit_msat,
            "balances_msat": None if paying.ledger is None else paying.ledger.balances,
            "wallet_requests": None if paying.ledger is None else paying.ledger.requests,
            "wallet_invoices": None if paying.ledger is None else paying.ledger.invoices,
            "steps_ms": paying.spent,
            "wallet_cpu_s": paying.wallet_cpu_s,
            "wallet_idle_rss_mib": paying.wallet_idle_rss_mib,
            "wallet_peak_mib": paying.wallet_peak_mib,
            "wallet_exit_code": paying.wallet_exit_code,
            **paying.client,
        }
    return out


def _goals(report: Report, outcomes: dict[str, Outcome], paying: Paying | None, price: int) -> None:
    measured = [report.subjects[n]["lost"] for n in (FREE, PAID) if n in outcomes]
    lost = float(sum(measured)) if len(measured) == 2 else None
    report.goals.append(
        Goal(
            "zero lost (every job of every phase answered, free and paid)",
            lost, 0.0, "jobs", None if lost is None else lost == 0,
        )
    )  # fmt: skip
    # The money adds up: no job answered unpaid, every payment in the DVM's account once, and
    # out of the customer's. Counted in jobs' worth of msat that do not add up.
    wrong: float | None = None
    held = {} if paying is None or paying.ledger is None else paying.ledger.balances
    if paying is not None and {"dvm", "customer"} <= set(held):
        due = paying.payments * price
        spent = paying.deposit_msat - held["customer"]
        off = abs(held["dvm"] - due) + abs(spent - due)
        wrong = paying.answered_unpaid + off / price
    report.goals.append(
        Goal(
            "paid jobs: none answered unpaid; the DVM's account got price x payments, the"
            " customer's lost as much (dev wallet ledger)",
            wrong, 0.0, "jobs", None if wrong is None else wrong == 0,
        )
    )  # fmt: skip


def _notes(
    report: Report, outcomes: dict[str, Outcome], paying: Paying | None, labels: dict[str, str]
) -> None:
    for name, o in outcomes.items():
        for b in o.bursts:
            if b.lost or b.relay_rejected:
                report.notes.append(
                    f"{labels[name]} {b.name}: {b.lost} of {b.requests} unanswered (ended:"
                    f" {b.ended}; {b.refused} with an error from the DVM), {b.relay_rejected}"
                    " refused by the relay"
                )
        if o.client.get("wrong_content") or o.client.get("duplicate_results"):
            report.notes.append(f"{labels[name]}: client saw {o.client}")
    if paying is not None:
        best = best_burst(outcomes[PAID]) if PAID in outcomes else None
        shown = (("sequential", "a sequential paid job"), (best and best.name, "the best burst"))
        for phase, what in shown:
            spent = paying.spent.get(phase or "") or {}
            steps = ", ".join(f"{k} {v['p50']} ms" for k, v in spent.items() if v is not None)
            if steps:
                report.notes.append(f"{what} ({phase}), p50 of each step: {steps}")
        cost = {
            n: fig.extra
            for n in (FREE, PAID)
            if (fig := report.figure(f"burst_rate:{n}")) is not None
        }
        if len(cost) == 2:
            free, paid = cost[FREE], cost[PAID]
            report.notes.append(
                f"CPU per job in the best burst: free {free['dvm_cpu_ms_per_job']} ms in the DVM;"
                f" paid {paid['dvm_cpu_ms_per_job']} ms in the DVM and"
                f" {paid.get('wallet_cpu_ms_per_job')} ms in the dev wallet. CPU share (CPU s per"
                f" s): free DVM {free['dvm_cpu_share']}; paid DVM {paid['dvm_cpu_share']}, wallet"
                f" {paid.get('wallet_cpu_share')}, customer {paid['client_cpu_share']}"
            )
        if paying.ledger is not None and paying.payments:
            per_job = paying.ledger.requests / paying.payments
            lookups = paying.ledger.requests - paying.ledger.invoices - paying.payments
            report.notes.append(
                f"the dev wallet answered {paying.ledger.requests:,} NIP-47 requests for"
                f" {paying.payments:,} paid jobs ({per_job:.2f} per job: make_invoice, pay_invoice"
                f" and {lookups / paying.payments:.2f} lookup_invoice; the DVM looks up once when"
                " it asks, again on the payment_received notification, and every"
                " nwc_poll_interval_s while a job waits)"
            )
        if paying.client.get("pay_failures") or paying.client.get("overpriced_invoices"):
            report.notes.append(f"the customer's payments: {paying.client}")
    report.notes.append(
        "Steps of a paid job: request_to_invoice = request written -> payment-required received"
        " (the DVM's make_invoice round trip to the wallet included), invoice_to_pay_call = the"
        " customer's own delay, pay_invoice = its NWC call, paid_to_result = paid -> result"
        " received (the DVM's wait for payment_received and its lookup_invoice). The dev wallet"
        " answers one NIP-47 request at a time and awaits the relay's OK for its answer and for"
        " each of its four notifications per payment before the next, so in a burst the steps"
        " that go through it are mostly its queue; a Lightning wallet behind NWC has its own,"
        " other speed."
    )
    report.notes.append(
        "Latency = request written -> result received by the customer, a paid job's payment"
        " round trips included (a burst is one write of every request, so its latencies include"
        " the queue). The DVM, the relay, the dev wallet and the customer share this machine's"
        " CPUs; *_cpu_share is CPU seconds per second of the best burst."
    )
