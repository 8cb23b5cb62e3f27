"""`dvm serve --builtin NAME`: a built-in DVM served from the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvmkit.cli.main import app
from dvmkit.dvms import BUILTINS

from .conftest import ask, customer_on

runner = CliRunner()


async def test_serve_builtin_echo_answers(tmp_path: Path, relay_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NOSTR_SECRET_KEY", "DVMKIT_RELAYS")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "dvm"),
        "serve",
        "--builtin",
        "echo",
        "--relay",
        relay_url,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(15):
            line = await proc.stderr.readline()
        assert line.startswith(b"dvm: serving dvmkit echo as npub1"), line
        async with customer_on(relay_url) as customer:
            answer = await ask(customer, 5050, text="from the command line")
        assert answer.content == "from the command line"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.communicate()
    assert proc.returncode == 0
    assert (tmp_path / ".dvmkit" / "dvmkit-echo.key").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--builtin", "nope"], "the built-ins are " + ", ".join(BUILTINS)),
        (["x.py:dvm", "--builtin", "echo"], "not both"),
        ([], "--builtin NAME"),
    ],
)
def test_bad_builtin_choices_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_builds_with_a_param_schema(name: str) -> None:
    from dvmkit import dvms

    dvm = dvms.build(name, relays=["ws://127.0.0.1:1"])
    assert dvm.name == f"dvmkit {name}"
    assert dvm.params_schema()["type"] == "object"
