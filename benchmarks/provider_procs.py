"""The DVMs under test, each in its own process, and what the benchmark reads from them.

dvmkit's DVM runs on this interpreter; nostrdvm 1.1.8 runs in its own venv
(``.venv-bench-nostrdvm``, created from PyPI on first use) because its pins (nostr-sdk 0.45.1,
pandas, ...) are none of dvmkit's business. Each DVM gets a scratch working directory, a minimal
environment and its secret key through that environment (never argv, which ``ps`` shows).
Memory and CPU come from ``/proc/<pid>``; a DVM is stopped by its pid and its own session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "provider_dvms"
NOSTRDVM_VENV = REPO / ".venv-bench-nostrdvm"
# The versions bench/nostrdvm-baseline measured: nostr-dvm 1.1.8 pins nostr-sdk 0.45.1.
NOSTRDVM_REQUIREMENTS = ("nostr-dvm==1.1.8", "nostr-sdk==0.45.1")
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DvmUnavailable(Exception):
    """The DVM could not be installed or started; the reason is the message."""


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    hwm_mib: float  # VmHWM: the peak resident size so far


def nostrdvm_python(*, create: bool) -> Path:
    """The interpreter of the nostrdvm venv, creating the venv first if ``create``.

    Raises:
        DvmUnavailable: the venv is missing (and not to be created) or could not be built.
    """
    python = NOSTRDVM_VENV / "bin" / "python"
    if python.exists() and _has_nostrdvm():
        return python
    if not create:
        raise DvmUnavailable(
            f"{NOSTRDVM_VENV.name} does not exist; a run without --quick creates it"
        )
    print(f"creating {NOSTRDVM_VENV} with {' '.join(NOSTRDVM_REQUIREMENTS)} ...", file=sys.stderr)
    # The venv's base is this interpreter's base, so both sides run the same CPython.
    base = getattr(sys, "_base_executable", sys.executable)
    steps = (
        [base, "-m", "venv", str(NOSTRDVM_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", *NOSTRDVM_REQUIREMENTS],
    )
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise DvmUnavailable(f"{' '.join(step[:4])} failed: {' | '.join(tail)}")
    if not _has_nostrdvm():
        raise DvmUnavailable(f"nostr_dvm is not importable in {NOSTRDVM_VENV}")
    return python


def _has_nostrdvm() -> bool:
    return any((NOSTRDVM_VENV / "lib").glob("python3*/site-packages/nostr_dvm/__init__.py"))


@dataclass(slots=True)
class DvmProcess:
    """One running DVM; ``stop`` ends it (and only it: the session it was started in)."""

    name: str
    process: subprocess.Popen[bytes]
    workdir: Path
    spawned_at: float
    secret_hex: str = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def memory(self) -> Memory:
        """VmRSS and VmHWM from ``/proc/<pid>/status`` (the kernel's own accounting)."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB (KiB) -> MiB
        return Memory(values["VmRSS"], values["VmHWM"])

    def cpu_seconds(self) -> float:
        """User+system CPU of the process, all its threads included."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # after the parenthesised command name
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, size: int = 600) -> str:
        """The end of the DVM's output, with its secret key blanked (nostrdvm prints it)."""
        try:
            text = (self.workdir / "dvm.log").read_text(errors="replace")
        except OSError:
            return ""
        if self.secret_hex:  # "".replace("", x) would put x between every character
            text = text.replace(self.secret_hex, "<secret>")
        return text[-size:]

    def log_count(self, needle: str) -> int:
        try:
            return (self.workdir / "dvm.log").read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        # Anything it left in the session we created for it goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the benchmark dies without stopping it (Linux
    prctl PR_SET_PDEATHSIG), so that a killed run leaves no DVM behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    name: str,
    *,
    script: str,
    relay_url: str,
    workdir: Path,
    secret_hex: str = "",
    python: Path | str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> DvmProcess:
    """Start ``provider_dvms/<script>`` with ``python`` in ``workdir``, output to ``dvm.log``.

    Args:
        secret_hex: the DVM's key, passed as BENCH_DVM_SECRET and blanked from its log tail;
            empty for the dev wallet, whose key is in its ledger.
        env: the script's own variables, besides the relay and the working directory.
    """
    child = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "BENCH_RELAY_URL": relay_url,
        "BENCH_WORKDIR": str(workdir),
    }
    if secret_hex:
        child["BENCH_DVM_SECRET"] = secret_hex
    if Path(python) == Path(sys.executable):
        # dvmkit runs from this checkout, installed or not (nostrdvm's venv has no use for it).
        child["PYTHONPATH"] = str(REPO / "src")
    child.update(env or {})
    cmd = [str(python), str(SCRIPTS / script)]
    return start(cmd, name, workdir=workdir, env=child, secret_hex=secret_hex)


def start(
    cmd: Sequence[str], name: str, *, workdir: Path, env: Mapping[str, str], secret_hex: str
) -> DvmProcess:
    """Run ``cmd`` in ``workdir`` with exactly ``env``, its output to ``dvm.log``, in a session
    of its own that dies with this process."""
    with (workdir / "dvm.log").open("wb") as log:
        process = subprocess.Popen(
            list(cmd),
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return DvmProcess(name, process, workdir, time.perf_counter(), secret_hex)


def wait_logged(process: DvmProcess, line: str, *, what: str, timeout: float) -> DvmProcess:
    """Return ``process`` once its log holds ``line``; stop it if it never does.

    Raises:
        DvmUnavailable: it exited, or did not log ``line`` within ``timeout`` seconds.
    """
    try:
        deadline = time.monotonic() + timeout
        while process.log_count(line) == 0:
            if not process.alive():
                raise DvmUnavailable(f"{what} exited: {process.log_tail()}")
            if time.monotonic() > deadline:
                raise DvmUnavailable(f"{what} did not say it serves within {timeout:.0f} s")
            # Another process's log line has nothing to await on; poll it a few times a second.
            time.sleep(0.02)
    except BaseException:
        process.stop()
        raise
    return process
