"""``python -m benchmarks {crypto,relay,store} [--json] [--quick]``.

Human output is a table on stdout; ``--json`` writes one JSON object on stdout instead.
Progress goes to stderr so that stdout stays parseable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("benchmark", choices=("crypto", "relay", "store"))
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the runner works")
    parser.add_argument(
        "--relays",
        default="ours,localrelay,nostr-relay",
        help="relay benchmark only: comma-separated subset of ours,localrelay,nostr-relay",
    )
    args = parser.parse_args(argv)
    if args.benchmark == "crypto":
        from benchmarks import crypto

        report = crypto.run(quick=args.quick)
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
