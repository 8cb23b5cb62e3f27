"""`dvm wallet`: the dev wallet served and used from the shell, as real processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dvmkit.cli.main import app
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.relay.server import Relay

from .conftest import WAIT

DVM = str(Path(sys.executable).parent / "dvm")
runner = CliRunner()


async def dvm(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Run `dvm ARGS` to completion: exit code, stdout as JSON (or None), stderr."""
    proc = await asyncio.create_subprocess_exec(
        DVM,
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT * 2):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


async def test_serve_new_invoice_pay_balance_as_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "wallet.sqlite3")
    async with Relay(port=0) as relay:
        code, payee, _ = await dvm("wallet", "new", "--db", db, relay.url)
        assert code == 0
        code, payer, _ = await dvm("wallet", "new", "--db", db, "--deposit", "5000", relay.url)
        assert code == 0
        assert (payee["balance_msat"], payer["balance_msat"]) == (0, 5_000)
        assert ConnectionURI.parse(payer["uri"]).client == payer["account"]

        server = await asyncio.create_subprocess_exec(
            DVM, "wallet", "serve", "--db", db, relay.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None
        async with asyncio.timeout(WAIT):
            ready = json.loads(await server.stdout.readline())
        assert ready["wallet"] == payee["wallet"] == payer["wallet"]

        code, made, _ = await dvm(
            "wallet", "invoice", "--nwc", payee["uri"], "3000", "--description", "cli job"
        )
        assert code == 0
        assert (made["amount"], made["description"], made["state"]) == (3_000, "cli job", "pending")
        code, paid, _ = await dvm("wallet", "pay", "--nwc", payer["uri"], made["invoice"])
        assert code == 0
        assert hashlib.sha256(bytes.fromhex(paid["preimage"])).hexdigest() == made["payment_hash"]
        code, again, err = await dvm("wallet", "pay", "--nwc", payer["uri"], made["invoice"])
        assert (code, again) == (5, None)
        assert "PAYMENT_FAILED" in err
        for account, expected in ((payee, 3_000), (payer, 2_000)):
            code, balance, err = await dvm("wallet", "balance", env={"NWC_URI": account["uri"]})
            assert (code, balance) == (0, {"balance_msat": expected})
            assert ConnectionURI.parse(account["uri"]).keys.secret_hex() not in err

        server.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            _, server_err = await server.communicate()
        assert server.returncode == 0, server_err.decode()[-2000:]
        code, _, err = await dvm("wallet", "balance", "--nwc", payer["uri"], "--timeout", "0.5")
        assert code == 4
        assert "TIMEOUT" in err


def test_new_and_deposit_update_the_ledger(tmp_path: Path) -> None:
    db = str(tmp_path / "w.sqlite3")
    made = runner.invoke(app, ["wallet", "new", "--db", db, "--deposit", "700", "ws://127.0.0.1:9"])
    assert made.exit_code == 0, made.stderr
    account = json.loads(made.stdout)
    assert ConnectionURI.parse(account["uri"]).relays == ("ws://127.0.0.1:9",)
    more = runner.invoke(app, ["wallet", "deposit", "--db", db, account["account"], "300"])
    assert more.exit_code == 0
    assert json.loads(more.stdout) == {"account": account["account"], "balance_msat": 1_000}
    unknown = runner.invoke(app, ["wallet", "deposit", "--db", db, "ab" * 32, "300"])
    assert unknown.exit_code == 2
    assert "UNAUTHORIZED" in unknown.stderr


def test_bad_uri_exits_2_without_printing_the_secret() -> None:
    secret = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
    uri = f"nostr+walletconnect://{'ab' * 16}?relay=ws%3A%2F%2F127.0.0.1%3A9&secret={secret}"
    result = runner.invoke(app, ["wallet", "balance", "--nwc", uri])
    assert result.exit_code == 2
    assert "wallet public key" in result.stderr
    assert secret not in result.stderr + result.stdout
