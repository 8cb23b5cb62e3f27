"""`dvm serve`: a DVM file served from the command line, keys kept in a 0600 file."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvmkit.cli.main import app
from dvmkit.cli.serve import apply_settings, load_dvm, load_or_create_key, read_config
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

DVM_FILE = """
from dvmkit.provider import DVM

dvm = DVM(name="Echo", about="returns its input", categories=["echo"], legacy_kinds=[5050])


@dvm.job
async def echo(input: str, times: int = 1) -> str:
    return " ".join([input] * times)
"""
runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "echo_dvm.py").write_text(DVM_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOSTR_SECRET_KEY", raising=False)
    monkeypatch.delenv("DVMKIT_RELAYS", raising=False)
    return tmp_path


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with Relay(port=0) as relay:
        yield relay.url


async def _serve(workdir: Path, *args: str) -> tuple[asyncio.subprocess.Process, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NOSTR_SECRET_KEY"}
    dvm = Path(sys.executable).parent / "dvm"
    proc = await asyncio.create_subprocess_exec(
        str(dvm),
        "serve",
        "echo_dvm.py:dvm",
        *args,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(15):
        line = await proc.stderr.readline()
    assert line.startswith(b"dvm: serving Echo as npub1"), line
    return proc, line


async def _stop(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    return out, err


async def _ask(relay: str, text: str) -> str:
    customer = Keys.generate()
    async with (
        RelayPool(relays=[relay]) as pool,
        pool.subscribe({"kinds": [6050], "#p": [customer.public_key]}) as sub,
    ):
        await sub.wait_stored()
        await pool.publish(
            sign_event(customer, kind=5050, tags=[["i", text, "text"], ["param", "times", "2"]])
        )
        async with asyncio.timeout(15):
            async for event in sub:
                return event.content
    raise AssertionError("no result")


async def test_serve_answers_jobs_and_keeps_its_key_private(workdir: Path, relay_url: str) -> None:
    proc, first = await _serve(workdir, "--relay", relay_url)
    try:
        assert await _ask(relay_url, "hi") == "hi hi"
    finally:
        out, err = await _stop(proc)
    err = first + err
    key_file = workdir / ".dvmkit" / "echo.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = Keys.parse(key_file.read_text())
    for secret in (keys.secret_hex(), keys.nsec()):
        assert secret.encode() not in out + err
    assert keys.npub.encode() in err
    # A second run reuses the key, so the DVM keeps its identity and its job store.
    proc, first = await _serve(workdir, "--relay", relay_url)
    await _stop(proc)
    assert keys.npub.encode() in first
    assert (workdir / ".dvmkit" / f"{keys.public_key[:16]}.jobs.sqlite3").exists()


def test_settings_precedence_flags_env_toml(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "dvm.toml").write_text(
        'relays = ["ws://127.0.0.1:1"]\nheartbeat_interval = 60\n'
        'db = "jobs.db"\n[limits]\nconcurrency = 3\njob_timeout = 9.5\n'
    )
    settings = read_config(workdir / "dvm.toml")
    dvm = load_dvm("echo_dvm.py:dvm")
    secret = Keys.generate()
    apply_settings(dvm, settings, relays=None, sec=secret.nsec(), key_file=None, db=None)
    assert list(dvm.relays) == ["ws://127.0.0.1:1"]
    assert (dvm.limits.concurrency, dvm.limits.job_timeout) == (3, 9.5)
    assert dvm.heartbeat_interval == 60
    assert dvm.keys == secret
    monkeypatch.setenv("DVMKIT_RELAYS", "ws://127.0.0.1:2, ws://127.0.0.1:3")
    apply_settings(dvm, settings, relays=None, sec=secret.nsec(), key_file=None, db=None)
    assert list(dvm.relays) == ["ws://127.0.0.1:2", "ws://127.0.0.1:3"]
    apply_settings(
        dvm, settings, relays=["ws://127.0.0.1:4"], sec=secret.nsec(), key_file=None, db=None
    )
    assert list(dvm.relays) == ["ws://127.0.0.1:4"]


def test_encryption_from_toml_env_or_flag(workdir: Path) -> None:
    (workdir / "dvm.toml").write_text('encryption = "required"\n')
    settings = read_config(workdir / "dvm.toml")
    dvm = load_dvm("echo_dvm.py:dvm")
    secret = Keys.generate().nsec()
    assert dvm.announcement(0).tag("encryption") == ("encryption", "nip44_v2")  # optional
    modes = []
    for flag in (None, "off"):
        apply_settings(
            dvm, settings, relays=None, sec=secret, key_file=None, db=None, encryption=flag
        )
        modes.append(dvm.encryption)
    assert modes == ["required", "off"]  # the TOML, then the flag over it
    assert dvm.announcement(0).tag("encryption") is None


def test_key_file_is_created_0600_and_refused_when_readable_by_others(workdir: Path) -> None:
    path = workdir / "keys" / "dvm.key"
    keys = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == keys
    path.chmod(0o644)
    code, err = _run("--key-file", str(path))
    assert code == 2
    assert "readable by others" in err
    assert keys.secret_hex() not in err


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["nope.py:dvm"], None, "no such file"),
        (["echo_dvm.py"], None, "write FILE.py:NAME"),
        (["echo_dvm.py:missing"], None, "is not a dvmkit DVM"),
        (["no_such_module_xyz:dvm"], None, "import failed: ModuleNotFoundError"),
        (["echo_dvm.py:dvm", "--sec", "zz"], None, "64 hex characters or an nsec"),
        (["echo_dvm.py:dvm"], "relays = [", "not valid TOML"),
        (["echo_dvm.py:dvm"], 'sec = "abc"', "keep secrets out of config files"),
        (["echo_dvm.py:dvm"], "colour = 1", "unknown setting 'colour'"),
        (["echo_dvm.py:dvm"], "[limits]\nspeed = 1", "unknown limit 'speed'"),
        (["echo_dvm.py:dvm"], "[limits]\nconcurrency = 0", "concurrency must be at least 1"),
        (["echo_dvm.py:dvm"], "heartbeat_interval = -1", "heartbeat_interval must be"),
        (["echo_dvm.py:dvm"], 'encryption = "maybe"', "encryption is optional, required or off"),
        (["echo_dvm.py:dvm", "--encryption", "on"], None, "encryption is optional, required"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    workdir: Path, args: list[str], config: str | None, message: str
) -> None:
    extra: list[str] = []
    if config is not None:
        (workdir / "bad.toml").write_text(config)
        extra = ["--config", "bad.toml"]
    result = runner.invoke(app, ["serve", *args, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("dvm: ")
    assert result.stderr.count("\n") == 1


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["serve", "echo_dvm.py:dvm", *args])
    return result.exit_code, result.stderr
