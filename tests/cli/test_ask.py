"""`dvm ask`, `dvm discover`, `dvm job request|wait`: real processes against real relays and DVMs.

Every exit code of the customer commands is exercised: 0 result, 2 bad input, 3 the DVM
answered error, 4 timeout / no live DVM / no relay, 5 payment refused or over the cap.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nostr_sdk
import pytest
from typer.testing import CliRunner

from customer.conftest import SdkResponder, echo_dvm, make_dvm
from dvmkit.cli.main import app
from dvmkit.nostr.keys import Keys
from dvmkit.relay.server import Relay

SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
PUBKEY = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
DVM_BIN = str(Path(sys.executable).parent / "dvm")
runner = CliRunner()


@pytest.fixture
async def relay() -> AsyncIterator[str]:
    async with Relay(port=0) as served:
        yield served.url


async def dvm_cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOSTR_SECRET_KEY", "DVMKIT_RELAYS")}
    proc = await asyncio.create_subprocess_exec(
        DVM_BIN,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ask_prints_the_result(relay: str) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "hello", "--param", "prefix=> ", relay)
        assert (code, out) == (0, "> hello\n"), err
        code, out, err = await dvm_cli("ask", "5050", "old", "--to", dvm.keys.npub, "--json", relay)
        assert code == 0, err
        data = json.loads(out)
        assert (data["content"], data["dvm"]) == ("old", dvm.public_key)


async def test_ask_exits_3_when_the_dvm_answers_error(relay: str) -> None:
    dvm = make_dvm(relay)

    @dvm.job
    async def picky(input: str, mode: str) -> str:
        return input

    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "x", relay)
    assert (code, out) == (3, "")
    assert "MISSING_PARAMETER" in err
    assert "dvm discover" in err


async def test_ask_exits_4_when_no_dvm_answers(relay: str) -> None:
    ghost = Keys.generate().npub
    code, out, err = await dvm_cli("ask", "text", "x", "--to", ghost, "--timeout", "1", relay)
    assert (code, out) == (4, "")
    assert "dvm discover" in err


async def test_ask_exits_4_when_no_relay_runs() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = await dvm_cli("ask", "text", "x", "--timeout", "8", f"ws://127.0.0.1:{port}")
    assert code == 4
    assert "dvm relay" in err


async def test_ask_exits_5_on_payment_or_cap(relay: str) -> None:
    seller = SdkResponder(relay, payment_msat=2000)
    dear = SdkResponder(relay, offer_msat=9000)
    async with seller.running():
        code, out, err = await dvm_cli("ask", "text", "x", "--to", seller.pubkey, relay)
        assert (code, out) == (5, ""), err
        assert "2000 msat" in err
    async with dear.running():
        code, out, err = await dvm_cli("ask", "text", "x", "--max-price", "100", relay)
        assert (code, out) == (5, ""), err
        assert "--max-price" in err


@pytest.mark.parametrize(
    "args",
    [
        ["ask", "7000", "x"],
        ["ask", "text", "x", "--to", "npub1nonsense"],
        ["ask", "text", "x", "--legacy"],
        ["ask", "text", "x", "--param", "novalue"],
        ["ask", "text", "x", "--choose", "random"],
        ["ask", "text", "x", "not-a-relay"],
    ],
)
async def test_ask_exits_2_on_bad_input(relay: str, args: list[str]) -> None:
    code, out, err = await dvm_cli(*args, relay)
    assert (code, out) == (2, ""), err
    assert err.startswith("dvm: ")


async def test_discover_prints_json_lines_when_piped(relay: str) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli("discover", "text", relay)
    assert code == 0, err
    (line,) = out.splitlines()
    info = json.loads(line)
    assert (info["pubkey"], info["name"], info["alive"]) == (dvm.public_key, "Echo", True)


async def test_job_request_publishes_and_job_wait_streams_to_the_result(relay: str) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli(
            "job", "request", "-k", "5050", "-i", "w", "--publish", relay
        )
        assert code == 0, err
        assert "success" in err
        request = json.loads(out)
        code, out, err = await dvm_cli("job", "wait", request["id"], relay)
    assert code == 0, err
    updates = [json.loads(line) for line in out.splitlines()]
    assert updates[-1]["type"] == "success"
    assert (updates[-1]["content"], updates[-1]["dvm"]) == ("w", dvm.public_key)


async def test_job_wait_exits_4_on_silence(relay: str) -> None:
    code, out, _ = await dvm_cli("job", "wait", "ab" * 32, "--timeout", "0.5", relay)
    assert code == 4
    assert json.loads(out.splitlines()[-1])["type"] == "timeout"


def test_job_request_golden() -> None:
    result = runner.invoke(
        app,
        [
            "job",
            "request",
            "--category",
            "text",
            "-i",
            "hello",
            "--param",
            "lang=es",
            "--sec",
            SECRET,
            "--ts",
            "1700000000",
        ],
    )
    assert result.exit_code == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["id"] == GOLDEN_ID
    assert (event["pubkey"], event["kind"], event["created_at"]) == (PUBKEY, 25000, 1700000000)
    assert event["tags"] == [
        ["category", "text"],
        ["t", "text"],
        ["i", "hello", "text"],
        ["param", "lang", "es"],
    ]
    assert nostr_sdk.Event.from_json(result.stdout).verify()


def test_job_request_reads_a_template_on_stdin() -> None:
    template = json.dumps({"kind": 5050, "tags": [["output", "text/plain"]], "content": ""})
    result = runner.invoke(
        app, ["job", "request", "-i", "x", "--sec", SECRET, "--ts", "1"], input=template
    )
    assert result.exit_code == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["kind"] == 5050
    assert event["tags"] == [["output", "text/plain"], ["i", "x", "text"]]


@pytest.mark.parametrize("stdin", ["{not json", "[1]", '{"tags": 5}'])
def test_job_request_refuses_a_bad_template(stdin: str) -> None:
    result = runner.invoke(app, ["job", "request", "-k", "5050", "--sec", SECRET], input=stdin)
    assert result.exit_code == 2
    assert result.stderr.startswith("dvm: ")


GOLDEN_ID = "c1e25de4d83b5f39c80197be2cda836aff3af2ec2f5b4f720b26b57b85a3f83c"
