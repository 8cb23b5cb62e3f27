"""``dvm relay`` as a subprocess: URL on the first stdout line, durability across SIGKILL,
clean exits and one-line errors.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys

from .wire import wire

COMMAND = [sys.executable, "-m", "dvmkit.relay"]


@asynccontextmanager
async def relay_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("ws://127.0.0.1:"), url
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_events_acknowledged_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "relay.sqlite3"
    keys = Keys.generate()
    events = [sign_event(keys, kind=5100, content=f"job {i}") for i in range(300)]
    async with relay_process("--db", str(db), "--port", "0") as (proc, url), wire(url) as conn:
        for event in events:
            await conn.send(["EVENT", event.to_dict()])
        oks = [await conn.recv() for _ in events]
        assert oks == [["OK", e.id, True, ""] for e in events]
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    async with relay_process("--db", str(db), "--port", "0") as (_, url), wire(url) as conn:
        got, end = await conn.fetch("all", {"authors": [keys.public_key], "limit": 1000})
        assert end == ["EOSE", "all"]
        assert sorted(e["id"] for e in got) == sorted(e.id for e in events)


async def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    async with relay_process("--memory", "--port", "0") as (proc, url):
        async with wire(url) as conn:
            event = sign_event(Keys.generate(), kind=1)
            assert (await conn.publish(event))[2] is True
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0


async def test_db_and_memory_together_is_a_usage_error(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "--db", str(tmp_path / "x.db"), "--memory", stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"either --db or --memory" in err


async def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *COMMAND,
            "--memory",
            "--port",
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 1
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"error: port {port} on 127.0.0.1 is already in use;"
        " stop the other program or choose another port"
    ]


async def test_default_db_is_created_under_dot_dvmkit(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "--port", "0", cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("ws://")
        assert (tmp_path / ".dvmkit" / "relay.sqlite3").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
