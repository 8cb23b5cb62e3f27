"""An independent NIP-47 wallet service: Alby's ``NWCWalletService`` (``@getalby/sdk`` from npm).

``alby/wallet_service.mjs`` runs it on Node with a small in-memory ledger behind it (the part
the SDK leaves to each implementer); the event kinds, tags, encryption and JSON on the wire are
all Alby's. The npm packages are pinned by ``alby/package-lock.json`` and installed by ``make
test`` (``npm ci``). The client keys stay here: the service is told only their public keys, and
the test builds each connection URI itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from dvmkit.nostr.keys import Keys
from dvmkit.payments.nip47 import ConnectionURI

HERE = Path(__file__).resolve().parent / "alby"
SCRIPT = HERE / "wallet_service.mjs"
#: Node starts and connects in well under a second; slow CI machines get room.
START_DEADLINE = 30.0


@dataclass(frozen=True, slots=True)
class AlbyWallet:
    """A running service: ``wallet`` is its NIP-47 key, ``node`` the key its invoices name."""

    wallet: str
    node: str
    relays: tuple[str, ...]

    def uri(self, client: Keys) -> ConnectionURI:
        return ConnectionURI(wallet=self.wallet, relays=self.relays, keys=client)


@contextlib.asynccontextmanager
async def alby_wallet(
    relays: Sequence[str], accounts: Mapping[Keys, int]
) -> AsyncIterator[AlbyWallet]:
    """Run the service on ``relays`` with one account per client key (msat balance each).

    Fails (never skips) when the npm packages are missing: run ``make test``.
    """
    if not (HERE / "node_modules" / "@getalby" / "sdk").is_dir():
        pytest.fail(
            f"@getalby/sdk is not installed in {HERE}: run `make test` (it runs `npm ci` there)",
            pytrace=False,
        )
    args = [str(SCRIPT)]
    for relay in relays:
        args += ["--relay", relay]
    for keys, msat in accounts.items():
        args += ["--account", f"{keys.public_key}={msat}"]
    # stderr goes to a file, not a pipe: a chatty service must never block on a full pipe.
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            "node", *args, cwd=HERE, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
        assert process.stdout is not None
        try:
            try:
                async with asyncio.timeout(START_DEADLINE):
                    line = await process.stdout.readline()
                ready = json.loads(line)
            except (TimeoutError, ValueError):
                process.kill()
                await process.wait()
                errors.seek(0)
                said = errors.read().decode(errors="replace")[-4000:]
                pytest.fail(f"the Alby wallet service did not start:\n{said}", pytrace=False)
            yield AlbyWallet(wallet=ready["wallet"], node=ready["node"], relays=tuple(relays))
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()
