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
from pathlib import Path

import nostr_sdk
import pytest
from typer.testing import CliRunner

from customer.conftest import SdkResponder, customer_on, echo_dvm, make_dvm
from customer.test_discover import publish_dead_dvm
from dvmkit.cli.customer import MAX_STDIN_INPUT
from dvmkit.cli.main import app
from dvmkit.customer.request import build_request
from dvmkit.nostr.event import parse_event
from dvmkit.nostr.keys import Keys
from dvmkit.provider import Job
from dvmkit.relay.pool import RelayPool

SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
PUBKEY = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
DVM_BIN = str(Path(sys.executable).parent / "dvm")
runner = CliRunner()


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
    ghost = Keys.generate()
    # Silence after 3 s; an ephemeral request nobody acknowledged is re-sent after 2 s.
    code, out, err = await dvm_cli("ask", "text", "x", "--to", ghost.npub, "--timeout", "3", relay)
    assert (code, out) == (4, "")
    assert "dvm discover" in err
    lines = err.splitlines()
    assert lines[0].startswith("sent request ")
    assert lines[0].endswith(f" to {ghost.public_key[:12]}…")
    assert lines[1].startswith("republished request ")
    assert lines[-1].startswith("dvm: ")


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
        ["ask", "text", "x", "--legacy", "--to", "npub1nonsense"],
        ["ask", "text", "-", "--sec", "nsec1nonsense"],
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


# -- progress on stderr when piped, --quiet -------------------------------------------------


async def test_ask_prints_progress_lines_on_a_pipe(relay: str) -> None:
    dvm = make_dvm(relay)

    @dvm.job
    async def slow_echo(input: str, job: Job) -> str:
        await job.progress("warming up")
        await job.partial("hal\x1b[2Jf")
        return input

    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "hello", "--to", dvm.public_key, relay)
        assert (code, out) == (0, "hello\n"), err
        short = dvm.public_key[:12] + "…"
        lines = err.splitlines()
        assert lines[0].startswith("sent request ")
        assert lines[0].endswith(f" to {short}")
        assert f"processing by {short}: warming up" in lines
        assert f"partial result from {short}: hal [2Jf" in lines
        assert lines.index(f"processing by {short}: warming up") < lines.index(
            f"partial result from {short}: hal [2Jf"
        )
        assert "\x1b" not in err
        assert not any(line.startswith(("result", "dvm: ")) for line in lines)

        code, out, err = await dvm_cli(
            "ask", "text", "hello", "--to", dvm.public_key, "--quiet", "--json", relay
        )
        assert code == 0, err
        assert err == ""
        assert json.loads(out)["content"] == "hello"


async def test_ask_shows_offers_and_the_choice_on_a_pipe(relay: str) -> None:
    seller = SdkResponder(relay, offer_msat=5)
    async with seller.running():
        code, out, err = await dvm_cli("ask", "text", "deal", relay)
    assert (code, out) == (0, "sdk:deal\n"), err
    short = seller.pubkey[:12] + "…"
    lines = err.splitlines()
    assert lines[0].startswith("sent request ")
    assert lines[0].endswith(" (open)")
    assert lines[1:3] == [f"offer from {short}: 5 msat", f"chose {short} 5 msat (cheapest)"]
    assert lines[3].endswith(f" to {short}")
    assert len(lines) == 4


# -- input from stdin ----------------------------------------------------------------------


async def test_ask_reads_the_input_from_stdin(relay: str) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "-", "-q", relay, stdin=b"from a pipe\n")
        assert (code, out) == (0, "from a pipe\n"), err
        # No INPUT and stdin not a terminal: stdin is the input, as in nak.
        code, out, err = await dvm_cli(
            "ask", "text", "-q", relay, stdin="zwei\nZeilen 🙂\n".encode()
        )
        assert (code, out) == (0, "zwei\nZeilen 🙂\n"), err
        # An INPUT argument wins over stdin.
        code, out, err = await dvm_cli("ask", "text", "arg", "-q", relay, stdin=b"ignored")
        assert (code, out) == (0, "arg\n"), err


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"x" * (MAX_STDIN_INPUT + 1), f"over {MAX_STDIN_INPUT} bytes"),
    ],
)
async def test_ask_refuses_bad_stdin(relay: str, stdin: bytes, message: str) -> None:
    code, out, err = await dvm_cli("ask", "text", "-", relay, stdin=stdin)
    assert (code, out) == (2, "")
    assert err.startswith("dvm: ")
    assert message in err


# -- --legacy with a category --------------------------------------------------------------


async def test_ask_legacy_with_a_category_uses_the_kind_its_live_dvms_serve(relay: str) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "old school", "--legacy", "--json", relay)
    assert code == 0, err
    assert "category text: legacy kind 5050" in err.splitlines()
    answer = json.loads(out)
    assert (answer["content"], answer["dvm"]) == ("old school", dvm.public_key)
    async with RelayPool(relays=[relay]) as pool:
        (request,) = await pool.fetch({"ids": [answer["request"]]})
    assert request.kind == 5050
    assert request.tag_values("i") == ["old school"]


async def test_ask_legacy_with_a_category_says_which_kinds_exist(relay: str) -> None:
    modern_only = echo_dvm(relay, legacy_kinds=[])
    async with modern_only.running():
        code, out, err = await dvm_cli("ask", "text", "x", "--legacy", relay)
    assert (code, out) == (4, "")
    assert "no DVM of category 'text' announces a legacy NIP-90 kind" in err
    assert "without --legacy" in err
    await publish_dead_dvm(relay, beat_age=2000)
    code, out, err = await dvm_cli("ask", "text", "x", "--legacy", relay)
    assert (code, out) == (4, "")
    assert "dead ones announce 5050" in err


# -- dvm job cancel ------------------------------------------------------------------------


OTHER_SECRET = "11" * 32


@pytest.mark.parametrize(
    ("target", "targeted", "cancel_kind"),
    [
        ("text", True, 25000),  # modern, to a named DVM: a cancel status p-tagged to it
        ("text", False, 5),  # modern and open: relays kept no copy, a NIP-09 deletion by id
        (5050, False, 5),  # legacy: a NIP-09 deletion of the stored request
    ],
)
async def test_job_cancel_stops_a_running_job(
    relay: str, target: str | int, targeted: bool, cancel_kind: int
) -> None:
    dvm = make_dvm(relay)
    started, stopped = asyncio.Event(), asyncio.Event()
    never = asyncio.Event()

    @dvm.job
    async def blocked(input: str) -> str:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return input

    request = build_request(
        Keys.parse(SECRET), target, input="x", to=dvm.public_key if targeted else None
    )
    to = ["--to", dvm.keys.npub] if targeted else []
    async with dvm.running(), RelayPool(relays=[relay]) as pool:
        assert (await pool.publish(request, wait="all")).ok
        async with asyncio.timeout(10):
            await started.wait()
        code, out, err = await dvm_cli("job", "cancel", request.id, *to, relay, "--sec", SECRET)
        assert code == 0, err
        cancel = parse_event(out)
        assert (cancel.kind, cancel.pubkey, cancel.tag_values("e")) == (
            cancel_kind,
            PUBKEY,
            [request.id],
        )
        assert f"cancelled by {dvm.public_key}" in err.splitlines()
        async with asyncio.timeout(10):
            await stopped.wait()
        assert not never.is_set()


async def test_job_cancel_refuses_what_it_cannot_cancel(relay: str) -> None:
    dvm = echo_dvm(relay)
    done = build_request(Keys.parse(SECRET), 5050, input="x")
    async with dvm.running(), customer_on(relay) as customer:
        assert (await customer.pool.publish(done, wait="all")).ok
        assert (await customer.watch(done).result(timeout=10)).content == "x"
        code, out, err = await dvm_cli("job", "cancel", done.id, "--sec", OTHER_SECRET, relay)
        assert (code, out) == (2, "")
        assert "only its author can cancel it" in err
        code, out, err = await dvm_cli("job", "cancel", done.id, "--sec", SECRET, relay)
        assert code == 4
        assert f"job {done.id} had already ended (success)" in err
    code, out, err = await dvm_cli("job", "cancel", done.id, relay)
    assert (code, out) == (2, "")
    assert "--sec" in err
    code, out, err = await dvm_cli("job", "cancel", "f" * 63, "--sec", SECRET, relay)
    assert (code, out) == (2, "")
    assert "64 hex" in err
    nobody = "ab" * 32
    code, out, err = await dvm_cli(
        "job", "cancel", nobody, "--sec", SECRET, "--timeout", "0.5", relay
    )
    assert code == 4
    assert "no DVM confirmed the cancellation within 0.5 s" in err
    assert parse_event(out).tag_values("e") == [nobody]
    code, out, err = await dvm_cli("job", "cancel", nobody, "--no-wait", "--sec", SECRET, relay)
    assert code == 0, err
    assert parse_event(out).kind == 5
