"""``python -m benchmarks {crypto,relay,store,provider,customer} [--json] [--quick]``.

``python -m benchmarks provider --encrypted``: gift-wrapped jobs against plaintext ones.
``python -m benchmarks provider --paid``: paid jobs (dev wallet, NWC) against free ones.

Human output is a table on stdout; ``--json`` writes one JSON object on stdout instead.
Progress goes to stderr so that stdout stays parseable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("benchmark", choices=("crypto", "relay", "store", "provider", "customer"))
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the runner works")
    parser.add_argument(
        "--relays",
        default="ours,localrelay,nostr-relay",
        help="relay benchmark only: comma-separated subset of ours,localrelay,nostr-relay",
    )
    parser.add_argument(
        "--dvms",
        default=None,
        help="provider benchmark only: comma-separated subset of ours,nostrdvm (default both)",
    )
    parser.add_argument(
        "--dvm-relay",
        default="ours",
        choices=("ours", "localrelay"),
        help="provider benchmark only: the relay both DVMs run on",
    )
    parser.add_argument(
        "--nostrdvm-burst",
        type=int,
        default=None,
        help="provider benchmark only: requests per nostrdvm burst (default 500; quick 100)",
    )
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="provider benchmark only: dvmkit's DVM with modern jobs in the clear and"
        " gift-wrapped (kind 21059), wrapped throughput as a ratio of plaintext; no nostrdvm",
    )
    parser.add_argument(
        "--paid",
        action="store_true",
        help="provider benchmark only: dvmkit's DVM with free and with paid jobs (bolt11 over"
        " NWC into the dev wallet, paid by the customer), paid as a ratio of free; no nostrdvm",
    )
    args = parser.parse_args(argv)
    if args.benchmark == "crypto":
        from benchmarks import crypto

        report = crypto.run(quick=args.quick)
    elif args.benchmark == "provider":
        if args.encrypted and args.paid:
            parser.error("--encrypted and --paid are separate runs: give one of them")
        for mode in ("encrypted", "paid"):
            if getattr(args, mode) and (args.dvms is not None or args.nostrdvm_burst is not None):
                parser.error(f"--{mode} measures dvmkit's DVM only: drop --dvms, --nostrdvm-burst")
        if args.paid:
            from benchmarks import provider_paid

            report = provider_paid.run(quick=args.quick, relay=args.dvm_relay)
        else:
            from benchmarks import provider

            dvms = tuple(n.strip() for n in (args.dvms or "ours,nostrdvm").split(",") if n.strip())
            unknown = set(dvms) - set(provider.DVMS)
            if unknown:
                parser.error(f"unknown DVMs: {', '.join(sorted(unknown))}")
            report = provider.run(
                quick=args.quick,
                dvms=dvms,
                relay=args.dvm_relay,
                nostrdvm_burst=args.nostrdvm_burst,
                encrypted=args.encrypted,
            )
    elif args.benchmark == "customer":
        from benchmarks import customer

        report = customer.run(quick=args.quick)
    elif args.benchmark == "store":
        from benchmarks import store as store_bench

        report = store_bench.run(quick=args.quick)
    else:
        from benchmarks import relay as relay_bench

        names = tuple(n.strip() for n in args.relays.split(",") if n.strip())
        unknown = set(names) - set(relay_bench.RELAYS)
        if unknown:
            parser.error(f"unknown relays: {', '.join(sorted(unknown))}")
        report = relay_bench.run(quick=args.quick, relays=names)
    if args.json:
        sys.stdout.buffer.write(report.to_json() + b"\n")
        sys.stdout.flush()
    else:
        report.render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
