"""The processes of the customer benchmark: the built-in echo DVM, and timed ``dvm`` runs.

The echo DVM is the real ``dvm serve --builtin echo`` in its own process, its secret key in the
environment (never argv, which ``ps`` shows). ``timed_runs`` measures a command from spawn to
exit, which for ``dvm ask`` is start-to-result: it prints the result and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.provider_procs import REPO, DvmProcess, start, wait_logged

START_TIMEOUT = 30.0
READY_LINE = "dvm: serving "


def dvm_command() -> tuple[list[str], str]:
    """How to run the ``dvm`` CLI: the installed entry script next to this interpreter (what a
    user runs), else the same entry point through ``-c``; and which of the two it is."""
    script = Path(sys.executable).parent / "dvm"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], str(script)
    return [sys.executable, "-c", "from dvmkit.cli.main import main; main()"], "python -c main()"


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no inherited relay list or key can change what is measured."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO / "src"),
        **extra,
    }
    return env


def spawn_echo(*, relay_url: str, secret_hex: str, workdir: Path) -> DvmProcess:
    """Start ``dvm serve --builtin echo`` on ``relay_url``; return once it says it serves.

    Raises:
        DvmUnavailable: it exited or did not say so within :data:`START_TIMEOUT`.
    """
    cmd, _ = dvm_command()
    cmd += ["serve", "--builtin", "echo", "--relay", relay_url, "--db", str(workdir / "jobs.db")]
    env = child_env(workdir, NOSTR_SECRET_KEY=secret_hex, PYTHONUNBUFFERED="1")
    dvm = start(cmd, "echo", workdir=workdir, env=env, secret_hex=secret_hex)
    return wait_logged(dvm, READY_LINE, what="dvm serve", timeout=START_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Runs:
    """Wall times (ms) of ``count`` runs of one command, and how many printed what they should."""

    name: str
    command: str
    wall_ms: tuple[float, ...]
    correct: int


def timed_runs(
    name: str, cmd: Sequence[str], *, count: int, expect: str | None, workdir: Path
) -> Runs:
    """Run ``cmd`` ``count`` times, one after the other; time each from spawn to exit.

    A run is correct when it exits 0 and (if ``expect`` is given) its stdout is that line.
    """
    walls: list[float] = []
    correct = 0
    env = child_env(workdir)
    for _ in range(count):
        begin = time.perf_counter()
        done = subprocess.run(
            list(cmd), cwd=workdir, env=env, capture_output=True, timeout=60, check=False
        )
        walls.append((time.perf_counter() - begin) * 1000)
        ok = done.returncode == 0
        if expect is not None:
            ok = ok and done.stdout.decode(errors="replace").strip() == expect
        correct += ok
    shown = " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
    return Runs(name, shown[:120], tuple(walls), correct)
