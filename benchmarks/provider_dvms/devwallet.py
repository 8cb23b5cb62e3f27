"""dvmkit's dev wallet (NIP-47) for ``python -m benchmarks provider --paid``, in its own process.

Started by ``benchmarks/provider_paid_procs.py`` with BENCH_RELAY_URL (where it serves) and
BENCH_WALLET_DB (its ledger, whose accounts the benchmark opened before). It prints
:data:`READY` once it is subscribed and its info event (13194) is on the relay, then serves
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal

from dvmkit.payments.devwallet import DevWallet

READY = "bench wallet: serving"


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    wallet = DevWallet(relays=[os.environ["BENCH_RELAY_URL"]], db=os.environ["BENCH_WALLET_DB"])
    async with wallet:
        print(READY, flush=True)
        await stop.wait()


asyncio.run(main())
