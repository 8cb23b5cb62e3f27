"""The demo's Cashu mint: nutshell's ``mint`` with its FakeWallet, in a temporary directory.

nutshell lives in a virtualenv of its own (``make mint`` makes ``.venv-mint``), because it pins
websockets, cryptography and coincurve versions dvmkit cannot share (research/deps.md §4); the
demo starts its ``mint`` the way the payment tests do (``tests/payments/mint.py``): a free
loopback port, a fresh database and key, no fees, and a FakeWallet that pays its own mint
quotes at once. A demo run from a pip install has no such binary: :meth:`DemoMint.url` then
says what is missing, and the Cashu step fails with that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
from pathlib import Path
from types import TracebackType

import orjson

from dvmkit import http
from dvmkit.errors import DVMError

#: Where ``make mint`` puts nutshell's ``mint``, relative to the repository (the current
#: directory of ``make demo``).
DEFAULT_MINT_BIN = Path(".venv-mint") / "bin" / "mint"
#: How long the mint may take to answer ``/v1/info`` (about 1-2 s on a laptop).
START_DEADLINE = 30.0
_POLL = 0.05


def mint_binary(option: str | None, environ: dict[str, str] | None = None) -> Path:
    """The ``mint`` to run: ``option`` (``--mint-bin``), else ``$DVMKIT_MINT_BIN``, else
    :data:`DEFAULT_MINT_BIN` (relative to the current directory)."""
    env = os.environ if environ is None else environ
    return Path(option or env.get("DVMKIT_MINT_BIN") or DEFAULT_MINT_BIN)


def mint_env(binary: Path, workdir: Path, port: int) -> dict[str, str]:
    """The environment of a throwaway nutshell mint on ``127.0.0.1:port``: FakeWallet (a
    bolt11 quote is paid the moment it exists), a fresh database and key in ``workdir``, no
    input fee, no rate limit. The tests' mint (tests/payments/mint.py) starts the same way."""
    return {
        "PATH": f"{binary.parent.resolve()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),  # nutshell reads ~/.cashu/.env and writes ~/.cashu
        "CASHU_DIR": str(workdir / "cashu"),
        "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
        "MINT_LISTEN_HOST": "127.0.0.1",
        "MINT_LISTEN_PORT": str(port),
        "MINT_PRIVATE_KEY": secrets.token_hex(32),
        "MINT_DATABASE": str(workdir / "db"),
        "MINT_INPUT_FEE_PPK": "0",
        "MINT_RATE_LIMIT": "false",  # 20 swaps a minute per IP otherwise
        "MINT_QUOTE_BACKEND_CHECK_RATE_LIMIT": "0",
        "FAKEWALLET_DELAY_INCOMING_PAYMENT": "0",
        "FAKEWALLET_DELAY_OUTGOING_PAYMENT": "0",
    }


class DemoMint:
    """nutshell's mint as a child process, from ``async with`` to its end.

    Entering starts the process and returns at once, so the mint boots while the rest of the
    demo starts; :meth:`url` waits until it answers. Leaving stops it and removes its
    directory (database, keys, log).

    Args:
        binary: nutshell's ``mint`` executable.
        deadline: seconds :meth:`url` waits for ``/v1/info``.
    """

    def __init__(self, binary: Path, *, deadline: float = START_DEADLINE) -> None:
        self.binary = binary
        self.deadline = deadline
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._url: str | None = None
        self._problem: str | None = None

    def __repr__(self) -> str:
        return f"DemoMint(binary={str(self.binary)!r}, url={self._url!r})"

    async def __aenter__(self) -> DemoMint:
        if not self.binary.is_file():
            self._problem = (
                f"the Cashu mint is not installed ({self.binary} is missing): run `make mint` "
                "in dvmkit's repository, or set DVMKIT_MINT_BIN to nutshell's `mint`"
            )
            return self
        self._dir = tempfile.TemporaryDirectory(prefix="dvmkit-demo-mint-")
        workdir = Path(self._dir.name)
        port = free_port()
        self._url = f"http://127.0.0.1:{port}"
        env = mint_env(self.binary, workdir, port)
        try:
            with (workdir / "mint.log").open("wb") as log:
                self._process = await asyncio.create_subprocess_exec(
                    str(self.binary.resolve()),
                    cwd=workdir,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
        except OSError as exc:
            self._problem = f"the Cashu mint {self.binary} did not start: {exc}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        try:
            if process is not None and process.returncode is None:
                process.terminate()
                try:
                    async with asyncio.timeout(10):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
        finally:
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None

    async def url(self) -> str:
        """The mint's URL, once ``/v1/info`` answers.

        Raises:
            DVMError: no ``mint`` binary, or it exited or stayed silent past the deadline
                (with the last line of its log).
        """
        if self._problem is not None:
            raise DVMError(self._problem)
        process, url = self._process, self._url
        if process is None or url is None:
            raise DVMError("the Cashu mint is not running: use 'async with DemoMint(...)'")
        try:
            async with asyncio.timeout(self.deadline):
                while not await _answers(url):
                    with contextlib.suppress(TimeoutError):
                        # The pause between polls, cut short if the mint dies.
                        async with asyncio.timeout(_POLL):
                            code = await process.wait()
                            last = self._last_log_line()
                            raise DVMError(f"the Cashu mint exited with {code}: {last}")
        except TimeoutError:
            raise DVMError(
                f"the Cashu mint did not answer within {self.deadline:g} s: "
                + self._last_log_line()
            ) from None
        return url

    def _last_log_line(self) -> str:
        if self._dir is None:
            return "no log"
        try:
            lines = (Path(self._dir.name) / "mint.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        last = next((line.strip() for line in reversed(lines) if line.strip()), "an empty log")
        return last[:300]


def free_port() -> int:
    """A loopback port free right now (the mint binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers(url: str) -> bool:
    try:
        response = await http.get(f"{url}/v1/info", accept="application/json", timeout=2.0)
        return "pubkey" in orjson.loads(response.body)
    except (DVMError, orjson.JSONDecodeError, TypeError):
        return False
