"""A DVM in its own process, for the crash and burst tests (run as a script, not collected).

::

    DVM_TEST_SECRET=<hex> [DVM_TEST_NWC=<nostr+walletconnect URI>] \
        python tests/provider/dvm_script.py --relay URL [--relay URL ...] --db PATH
        [--gate] [--price MSAT]

Secrets come from the environment so that they never show in ``ps`` (an NWC URI holds the
key that spends the DVM's wallet). The DVM serves legacy kind 5050 and the modern category
``text`` with one handler that answers ``done: <input>``; with ``--price`` each job costs that
many msat, paid by bolt11 into the NWC wallet of ``$DVM_TEST_NWC``. On stdout, one line
each, flushed at once:

    ready <pubkey>            listening (after resume, with the subscription open)
    start <job id>            the handler began a job (only with --gate); a priced job's
                              payment was confirmed by then

With ``--gate`` the handler waits, after reporting ``start``, until a line arrives on stdin:
the parent decides when jobs finish, so it can kill the process mid-job or cut the relay off
before a result is sent. SIGTERM or the end of stdin stops the DVM cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM, Job, Limits
from dvmkit.provider.payments import NWCPayments

KIND = 5050
CATEGORY = "text"
POLL_INTERVAL = 0.5  # lookup_invoice between the wallet's notifications


def _say(*words: str) -> None:
    sys.stdout.write(" ".join(words) + "\n")
    sys.stdout.flush()


def build(
    relays: list[str], db: str, keys: Keys, *, gate: asyncio.Event | None, price: int = 0
) -> DVM:
    """The DVM under test: one handler, in both dialects; priced when ``price``."""
    # Many jobs of one customer in flight at once are the point of these tests.
    limits = Limits(per_customer=100_000, processing_notice=60.0)
    payments = (
        NWCPayments(os.environ["DVM_TEST_NWC"], poll_interval=POLL_INTERVAL) if price else None
    )
    dvm = DVM(
        name="crash test",
        categories=[CATEGORY],
        legacy_kinds=[KIND],
        relays=relays,
        keys=keys,
        store_path=db,
        limits=limits,
        price_msat=price,
        payments=payments,
    )

    @dvm.job
    async def work(input: str, job: Job) -> str:
        if gate is not None:
            _say("start", job.id)
            await gate.wait()
        return f"done: {input}"

    return dvm


async def main(relays: list[str], db: str, keys: Keys, *, gated: bool, price: int) -> None:
    gate = asyncio.Event() if gated else None
    dvm = build(relays, db, keys, gate=gate, price=price)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_stdin() -> None:
        line = os.read(sys.stdin.fileno(), 4096)
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            stop.set()
        elif gate is not None:
            gate.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    async with dvm.running():
        _say("ready", dvm.public_key)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--relay", action="append", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--price", type=int, default=0, help="msat a job (0: free)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    keys = Keys.parse(os.environ["DVM_TEST_SECRET"])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.relay, args.db, keys, gated=args.gate, price=args.price))
