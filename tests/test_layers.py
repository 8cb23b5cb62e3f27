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


def imported_io(modules: list[str]) -> str:
    """What importing ``modules`` (in a fresh interpreter) pulls in of :data:`FORBIDDEN`."""
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
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("package", "module"),
    [("dvmkit.nostr", "dvmkit.nostr.event"), ("dvmkit.protocol", "dvmkit.protocol.job")],
)
def test_pure_core_imports_no_io(package: str, module: str) -> None:
    path = importlib.import_module(package).__path__
    modules = [package, *(m.name for m in pkgutil.iter_modules(path, f"{package}."))]
    assert module in modules
    bad = imported_io(modules)
    assert bad == "", f"pure layer imported: {bad}"


#: The payment codecs say they do no I/O: zaps are verified, invoices and tokens decoded,
#: NIP-47 bodies read without a connection.
PURE_PAYMENTS = ["zaps", "bolt11", "nip47", "cashu_token", "cashu_crypto", "cashu_cbor"]


def test_pure_payment_codecs_import_no_io() -> None:
    bad = imported_io([f"dvmkit.payments.{m}" for m in PURE_PAYMENTS])
    assert bad == "", f"a pure payment codec imported: {bad}"
