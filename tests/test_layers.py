"""Layers point down: the pure protocol core imports no I/O machinery (STYLE.md habit 1)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import dvmkit.nostr

FORBIDDEN = ("asyncio", "websockets", "sqlite3", "socket", "dvmkit.relay", "dvmkit.cli")


def test_nostr_core_imports_no_io() -> None:
    modules = [m.name for m in pkgutil.iter_modules(dvmkit.nostr.__path__, "dvmkit.nostr.")]
    assert "dvmkit.nostr.event" in modules
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        + f"or any(m.startswith(p) for p in {FORBIDDEN!r}))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"pure layer imported: {result.stdout.strip()}"
