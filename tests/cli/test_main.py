"""The `dvm` entry point starts light: every command's heavy machinery loads only when run."""

from __future__ import annotations

import subprocess
import sys

# asyncio, sqlite and websockets cost start time on every `dvm` call, `dvm --help` included;
# the commands import them inside (relay.py, serve.py, store.py, customer.py, wallet.py).
HEAVY = ("asyncio", "sqlite3", "websockets", "dvmkit.provider", "dvmkit.store")


def test_importing_the_cli_loads_no_event_loop_store_or_provider() -> None:
    script = (
        "import sys, dvmkit.cli.main\n"
        f"print(','.join(sorted(m for m in sys.modules "
        f"if any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"loaded at start: {result.stdout.strip()}"
