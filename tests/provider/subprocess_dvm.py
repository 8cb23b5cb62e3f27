"""Run ``dvm_script.py`` in a child process and talk to it: ready, started jobs, gate, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from dvmkit.nostr.keys import Keys

SCRIPT = Path(__file__).with_name("dvm_script.py")
START_TIMEOUT = 30.0  # interpreter start and imports on a loaded 2-core machine


class DVMProcess:
    """The provider in a subprocess; ``async with`` starts it, leaving kills it if alive.

    Args:
        relays: the relays it serves on.
        db: its SQLite job store.
        keys: its identity (passed in the environment, never on the command line).
        log: where its stderr goes (a file, so a chatty child can never block on a pipe).
        gate: hold every job in the handler until :meth:`release`.
        args: more command-line arguments for it.
        env: more environment for it (where secrets go, never in ``args``).
    """

    def __init__(
        self,
        *,
        relays: list[str],
        db: Path,
        keys: Keys,
        log: Path,
        gate: bool = False,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.relays = relays
        self.db = db
        self.keys = keys
        self.log = log
        self.gate = gate
        self.args = tuple(args)
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.jobs_started: set[str] = set()  # every job the handler reported

    async def __aenter__(self) -> DVMProcess:
        args = [sys.executable, str(SCRIPT), "--db", str(self.db), *self.args]
        for url in self.relays:
            args += ["--relay", url]
        if self.gate:
            args.append("--gate")
        env = {**os.environ, **self.env, "DVM_TEST_SECRET": self.keys.secret_hex()}
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
            )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                # Resumed jobs may start before the DVM listens (it resumes first).
                while (words := await self._read()) != ["ready", self.keys.public_key]:
                    assert words[0] == "start", words
        except BaseException:
            await self.kill()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self) -> list[str]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the DVM exited early:\n{self.stderr()}")
        words = line.decode().split()
        if words[0] == "start":
            self.jobs_started.add(words[1])
        return words

    async def started(self, count: int) -> set[str]:
        """Wait until the handler has reported ``count`` distinct jobs; return their ids.

        Bound it with a timeout."""
        while len(self.jobs_started) < count:
            words = await self._read()
            assert words[0] == "start", words
        return set(self.jobs_started)

    def release(self) -> None:
        """Open the gate: every job held in the handler, and every later one, finishes."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def kill(self) -> None:
        """SIGKILL (no cleanup of any kind runs in the child) and reap it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def terminate(self) -> int:
        """SIGTERM, for a clean stop; returns the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(START_TIMEOUT):
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def rss_bytes(self) -> int:
        """The child's resident set size, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the child has used, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]
