"""Layers point down: the pure cores import no I/O machinery (STYLE.md habit 1)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

FORBIDDEN = (
    "asyncio",
    "websockets",
    "sqlite3",
    "socket",
    "dvmkit.relay",
    "dvmkit.cli",
    "dvmkit.store",
    "dvmkit.provider",
    "dvmkit.customer",
)


@pytest.mark.parametrize(
    ("package", "module"),
    [("dvmkit.nostr", "dvmkit.nostr.event"), ("dvmkit.protocol", "dvmkit.protocol.job")],
)
def test_pure_core_imports_no_io(package: str, module: str) -> None:
    path = importlib.import_module(package).__path__
    modules = [package, *(m.name for m in pkgutil.iter_modules(path, f"{package}."))]
    assert module in modules
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
