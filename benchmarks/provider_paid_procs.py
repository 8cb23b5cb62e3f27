"""The processes of ``provider --paid``: the dev wallet and the free or priced echo DVM.

The wallet runs in a process of its own rather than in the benchmark's. Every paid job costs it
three or four NIP-47 requests (``make_invoice`` and ``lookup_invoice`` from the DVM,
``pay_invoice`` from the customer), each a NIP-44 decryption, an encryption, a signature and a
SQLite write, plus four signed notifications per payment: in the customer's process that work
would share one event loop and one GIL with the customer, and its arrival stamps would be late
by whatever the wallet was doing. Apart, it is a service of its own, as a real wallet is, and
its CPU is read from ``/proc`` like the DVM's.

The benchmark opens the wallet's two accounts in its ledger before the wallet starts: the
DVM's connection URI goes to the DVM through its environment (never argv, never a log), the
customer's stays in the benchmark, which pays with it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from benchmarks.provider_procs import DvmProcess, spawn, wait_logged
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI

WALLET_READY = "bench wallet: serving"  # what provider_dvms/devwallet.py prints
START_TIMEOUT = 30.0


def open_accounts(relay_url: str, db: Path, *, deposit_msat: int) -> tuple[str, ConnectionURI]:
    """Create the wallet's ledger at ``db`` with an account for the DVM and a funded one for
    the customer; return the DVM's URI as text (for its environment) and the customer's."""
    wallet = DevWallet(relays=[relay_url], db=db)
    try:
        dvm = wallet.create_account(name="dvm")
        customer = wallet.create_account(name="customer", deposit_msat=deposit_msat)
    finally:
        wallet.ledger.close()
    return dvm.reveal(), customer


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What the wallet's ledger holds after the run (read once the wallet stopped)."""

    balances: dict[str, int]  # account name -> msat
    requests: int  # NIP-47 requests it answered (one saved response each)
    invoices: int  # invoices it made


def read_ledger(db: Path) -> LedgerSummary:
    """Balances through the ledger's API; the counts straight from its tables (read-only), as
    the ledger has no call for them."""
    wallet = DevWallet(db=db)
    try:
        balances = {name: balance for _, name, balance in wallet.ledger.accounts()}
    finally:
        wallet.ledger.close()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (requests,) = conn.execute("SELECT count(*) FROM responses").fetchone()
        (invoices,) = conn.execute("SELECT count(*) FROM invoices").fetchone()
    return LedgerSummary(balances, int(requests), int(invoices))


def start_wallet(*, relay_url: str, db: Path, workdir: Path) -> DvmProcess:
    """Start the dev wallet on ``relay_url``; return once it serves.

    Raises:
        DvmUnavailable: it exited or did not say it serves within :data:`START_TIMEOUT`.
    """
    env = {"BENCH_WALLET_DB": str(db)}
    wallet = spawn("wallet", script="devwallet.py", relay_url=relay_url, workdir=workdir, env=env)
    return wait_logged(wallet, WALLET_READY, what="the dev wallet", timeout=START_TIMEOUT)


def spawn_dvm(
    *,
    relay_url: str,
    secret_hex: str,
    workdir: Path,
    price_msat: int,
    wallet_uri: str | None,
    poll_interval: float,
) -> DvmProcess:
    """Start ``provider_dvms/dvmkit_paid.py``: free when ``price_msat`` is 0, else priced and
    paid into the wallet account ``wallet_uri``."""
    env = {"BENCH_PRICE_MSAT": str(price_msat), "BENCH_NWC_POLL": repr(poll_interval)}
    if wallet_uri is not None:
        env["BENCH_NWC_URI"] = wallet_uri
    return spawn(
        "ours",
        script="dvmkit_paid.py",
        relay_url=relay_url,
        workdir=workdir,
        secret_hex=secret_hex,
        env=env,
    )
