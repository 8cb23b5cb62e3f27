"""dvmkit's echo DVM for ``python -m benchmarks provider``: a no-op handler, legacy kind 5050.

Started by ``benchmarks/provider_procs.py`` with BENCH_RELAY_URL (the only relay it may use),
BENCH_DVM_SECRET (hex secret key, from the environment so it never shows in ``ps``) and
BENCH_WORKDIR (scratch directory for the job store). Serves until SIGTERM.
"""

from __future__ import annotations

import os
from pathlib import Path

from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM

dvm = DVM(
    name="bench-echo",
    about="echo",
    categories=["echo"],
    legacy_kinds=[5050],
    relays=[os.environ["BENCH_RELAY_URL"]],
    keys=Keys.parse(os.environ["BENCH_DVM_SECRET"]),
    store_path=str(Path(os.environ["BENCH_WORKDIR"]) / "jobs.sqlite3"),
)


@dvm.job
async def echo(input: str) -> str:
    return input


dvm.run()
