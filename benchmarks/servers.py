"""The relays under test, each started in its own process on 127.0.0.1.

Each relay gets its own interpreter (or runtime) so that the load generator never shares one
with it. ``start`` returns once the relay accepts websocket connections; ``RelayProcess.stop``
ends the process it started (by pid, then its own process group for workers it forked).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".venv-bench"
NOSTR_RELAY_REQUIREMENT = "nostr-relay==1.14"
START_TIMEOUT = 30.0
RELAYS = ("ours", "localrelay", "nostr-relay")

# nostr-sdk's LocalRelay, the rate limit raised far above anything the benchmark sends: its
# default lets only ~60 of 500 pipelined events through (research/deps.md §3).
_LOCALRELAY_SCRIPT = """
import asyncio, nostr_sdk as n
async def main():
    relay = (n.LocalRelayBuilder().addr("127.0.0.1")
             .rate_limit(n.RateLimit(max_reqs=1_000_000, notes_per_minute=1_000_000_000))
             .build())
    await relay.run()
    print(await relay.url(), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class RelayUnavailable(Exception):
    """The relay could not be installed or started; the reason is the message."""


@dataclass(slots=True)
class RelayProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    started_in: float
    output: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def cpu_seconds(self) -> float | None:
        """User+system CPU of the relay and every process it forked (Linux /proc), else None."""
        return _tree_cpu(self.process.pid)

    def stop(self) -> None:
        _stop(self.process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, workdir: Path) -> RelayProcess:
    """Start relay ``name`` (one of :data:`RELAYS`) with its files under ``workdir``.

    Raises:
        RelayUnavailable: it is not installed here (and could not be) or did not come up.
    """
    begin = time.perf_counter()
    if name == "ours":
        try:
            import dvmkit.relay.__main__  # noqa: F401 - only checks that it exists
        except ImportError as exc:
            raise RelayUnavailable(f"python -m dvmkit.relay is not available: {exc}") from None
        cmd = [sys.executable, "-m", "dvmkit.relay", "--port", "0", "--memory"]
        return _start_printing_url(name, cmd, workdir, begin)
    if name == "localrelay":
        return _start_printing_url(name, [sys.executable, "-c", _LOCALRELAY_SCRIPT], workdir, begin)
    if name == "nostr-relay":
        executable = ensure_nostr_relay()
        port = free_port()
        config = workdir / "nostr-relay.yaml"
        config.write_text(nostr_relay_config(port=port, db_path=workdir / "nostr-relay.sqlite3"))
        log = (workdir / "nostr-relay.log").open("wb")
        process = subprocess.Popen(
            [str(executable), "-c", str(config), "serve"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            _wait_listening(process, port, workdir / "nostr-relay.log")
        except BaseException:
            _stop(process)
            raise
        return RelayProcess(name, f"ws://127.0.0.1:{port}/", process, time.perf_counter() - begin)
    raise ValueError(f"unknown relay {name!r}")


def nostr_relay_config(*, port: int, db_path: Path) -> str:
    """A generous config for PyPI ``nostr-relay``: one worker, no rate limit, quiet logs.

    Only signature checking is kept among its validators (the other relays verify too); the
    size, recency and hellthread validators are dropped, and subscription limits are raised.
    """
    return f"""\
DEBUG: false
relay_name: dvmkit benchmark
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db_path}
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_signed
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 1000
max_limit: 100000
logging:
  version: 1
  root:
    level: WARNING
"""


def ensure_nostr_relay() -> Path:
    """The ``nostr-relay`` executable from ``.venv-bench``, creating that venv on first use.

    It lives in its own venv because its pins (python-rapidjson, aionostr, SQLAlchemy...) are no
    business of dvmkit's environment.

    Raises:
        RelayUnavailable: the venv could not be created or the package not installed.
    """
    executable = BENCH_VENV / "bin" / "nostr-relay"
    if executable.exists():
        return executable
    print(f"creating {BENCH_VENV} with {NOSTR_RELAY_REQUIREMENT} ...", file=sys.stderr)
    python = BENCH_VENV / "bin" / "python"
    steps = (
        [sys.executable, "-m", "venv", str(BENCH_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", NOSTR_RELAY_REQUIREMENT],
    )
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise RelayUnavailable(f"{' '.join(step[:4])} failed: {' | '.join(tail)}")
    if not executable.exists():
        raise RelayUnavailable(f"{executable} missing after installing {NOSTR_RELAY_REQUIREMENT}")
    return executable


def _start_printing_url(name: str, cmd: list[str], workdir: Path, begin: float) -> RelayProcess:
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        cmd,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    first_line: queue.Queue[str | None] = queue.Queue()
    output: deque[str] = deque(maxlen=20)

    def drain() -> None:
        # The relay's stdout must keep flowing or it blocks once the pipe buffer fills.
        assert process.stdout is not None
        first = True
        for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if first:
                first_line.put(line)
                first = False
            else:
                output.append(line)
        if first:
            first_line.put(None)

    threading.Thread(target=drain, name=f"{name}-stdout", daemon=True).start()
    try:
        try:
            url = first_line.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise RelayUnavailable(f"{name} printed no URL within {START_TIMEOUT:.0f} s") from None
        if url is None or not url.startswith("ws://127.0.0.1:"):
            log_tail = (workdir / f"{name}.log").read_text(errors="replace")[-500:]
            raise RelayUnavailable(f"{name} did not start (first line {url!r}): {log_tail}")
    except BaseException:
        _stop(process)
        raise
    return RelayProcess(name, url, process, time.perf_counter() - begin, output)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RelayUnavailable(f"exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        # A process coming up has no event to await; poll its port a few times a second.
        time.sleep(0.05)
    raise RelayUnavailable(f"not listening on {port} after {START_TIMEOUT:.0f} s: {_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-500:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    # Workers it forked (gunicorn) share the session we created for it; end any left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.stdout is not None:
        process.stdout.close()


def _tree_cpu(root: int) -> float | None:
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid ... utime(12) stime(13).
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    if root not in times:
        return None
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, ()))
    return total
