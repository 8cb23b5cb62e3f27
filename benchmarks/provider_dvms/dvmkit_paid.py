"""dvmkit's echo DVM for ``python -m benchmarks provider --paid``: kind 25000, ``echo`` category.

The same handler as ``dvmkit_echo.py``, free or priced. Started by
``benchmarks/provider_paid_procs.py`` with BENCH_RELAY_URL, BENCH_DVM_SECRET and BENCH_WORKDIR
(as the echo DVM), BENCH_PRICE_MSAT (0: free) and, when priced, BENCH_NWC_URI: the DVM's own
dev-wallet account, taken from the environment so that it never shows in ``ps`` or a log.
BENCH_NWC_POLL is the seconds between ``lookup_invoice`` calls of a job waiting for payment.
Serves until SIGTERM.
"""

from __future__ import annotations

import os
from pathlib import Path

from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM
from dvmkit.provider.payments import NWCPayments

price = int(os.environ["BENCH_PRICE_MSAT"])
# Popped, not read: nothing this process starts inherits the wallet secret.
wallet = os.environ.pop("BENCH_NWC_URI", None)
payments = None
if price:
    assert wallet is not None, "a priced DVM needs BENCH_NWC_URI"
    payments = NWCPayments(wallet, poll_interval=float(os.environ["BENCH_NWC_POLL"]))

dvm = DVM(
    name="bench-echo",
    about="echo",
    categories=["echo"],
    relays=[os.environ["BENCH_RELAY_URL"]],
    keys=Keys.parse(os.environ["BENCH_DVM_SECRET"]),
    store_path=str(Path(os.environ["BENCH_WORKDIR"]) / "jobs.sqlite3"),
    price_msat=price,
    payments=payments,
)


@dvm.job
async def echo(input: str) -> str:
    return input


dvm.run()
