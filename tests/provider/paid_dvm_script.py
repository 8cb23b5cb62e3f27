"""A priced DVM in its own process, for the paid crash tests (run as a script, not collected).

::

    DVM_TEST_SECRET=<hex> DVM_TEST_NWC=<nostr+walletconnect URI> \\
        python tests/provider/paid_dvm_script.py --relay URL [--relay URL ...] --db PATH
        --price MSAT [--gate]

Both secrets come from the environment so that they never show in ``ps`` (the NWC URI holds
the key that spends the DVM's wallet). The DVM serves legacy kind 5050 and the modern
category ``text`` at ``--price`` msat a job, paid by bolt11 into its NWC wallet, with one
handler that answers ``done: <input>``. It speaks to its parent as ``dvm_script.py`` does
(``subprocess_dvm.DVMProcess`` drives both), one line each on stdout:

    ready <pubkey>            listening (after resume, with the subscription open)
    start <job id>            the handler began a job: its payment was confirmed (--gate)

With ``--gate`` the handler waits, after reporting ``start``, until a line arrives on stdin.
SIGTERM or the end of stdin stops the DVM cleanly.
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
    relays: list[str], db: str, keys: Keys, wallet: str, price: int, *, gate: asyncio.Event | None
) -> DVM:
    """The DVM under test: one priced handler, in both dialects."""
    # No processing notices: each job's events are its payment-required and its answer.
    limits = Limits(per_customer=100_000, processing_notice=600.0)
    dvm = DVM(
        name="paid crash test",
        categories=[CATEGORY],
        legacy_kinds=[KIND],
        relays=relays,
        keys=keys,
        store_path=db,
        limits=limits,
        price_msat=price,
        payments=NWCPayments(wallet, poll_interval=POLL_INTERVAL),
    )

    @dvm.job
    async def work(input: str, job: Job) -> str:
        if gate is not None:
            _say("start", job.id)
            await gate.wait()
        return f"done: {input}"

    return dvm


async def main(
    relays: list[str], db: str, keys: Keys, wallet: str, price: int, *, gated: bool
) -> None:
    gate = asyncio.Event() if gated else None
    dvm = build(relays, db, keys, wallet, price, gate=gate)
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
    parser.add_argument("--price", type=int, required=True)
    parser.add_argument("--gate", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    keys = Keys.parse(os.environ["DVM_TEST_SECRET"])
    wallet = os.environ["DVM_TEST_NWC"]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.relay, args.db, keys, wallet, args.price, gated=args.gate))
