"""A real Cashu mint for the payment tests: nutshell with its FakeWallet Lightning backend.

nutshell runs from its own virtualenv, ``.venv-mint`` (made by ``make mint``, which ``make
test`` depends on; the pins are in ``mint-requirements.txt`` beside this file), because it pins
websockets, cryptography and coincurve versions dvmkit cannot share (research/deps.md §4).

Each mint gets a free loopback port, a fresh database, a random private key, no input fee and
no FakeWallet delays, so a bolt11 mint quote is paid the moment it exists.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dvmkit.demo.mint import free_port, mint_env
from dvmkit.payments.cashu import CashuWallet

ROOT = Path(__file__).resolve().parents[2]
MINT_VENV = ROOT / ".venv-mint"
MINT_BIN = MINT_VENV / "bin" / "mint"
#: How long the mint may take to answer /v1/info (it takes ~1 s; CI machines are slow).
START_DEADLINE = 60.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/info", timeout=2) as response:
            return response.status == 200 and "pubkey" in json.loads(response.read())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def running_mint(workdir: Path) -> Iterator[str]:
    """Start ``mint`` in ``workdir`` and yield its URL once ``/v1/info`` answers; stop it after.

    Fails (never skips) when ``.venv-mint`` is missing: run ``make mint`` (or ``make test``).
    """
    if not MINT_BIN.exists():
        pytest.fail(
            f"the Cashu mint is not installed ({MINT_BIN} missing): run `make mint` "
            "(or `make test`) in the repository root",
            pytrace=False,
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = mint_env(MINT_BIN, workdir, port)
    log_path = workdir / "mint.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(MINT_BIN)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + START_DEADLINE
            while not _answers(url):
                if time.monotonic() > deadline:
                    pytest.fail(f"the mint did not answer in {START_DEADLINE} s; see {log_path}")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    # The pause between polls, cut short if the mint dies.
                    code = process.wait(timeout=0.05)
                    pytest.fail(f"the mint exited with {code}; see {log_path}")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session", name="cashu_mint")
def cashu_mint_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real nutshell mint (FakeWallet, no fees), one for the whole session.

    ``tests/conftest.py`` registers it for the whole suite: one mint process per session.
    """
    with running_mint(tmp_path_factory.mktemp("mint")) as url:
        yield url


async def funded(mint: str, sats: int) -> CashuWallet:
    """A Cashu wallet at ``mint`` holding ``sats`` freshly minted (FakeWallet pays the quote)."""
    wallet = CashuWallet(mint_url=mint)
    assert await wallet.mint(await wallet.request_mint(sats)) == sats
    return wallet
