"""Golden tests of the protocol tools of the `dvm` CLI, with a fixed key and timestamp."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nostr_sdk
import pytest
from typer.testing import CliRunner

from dvmkit.cli.main import app
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys

SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
PUBKEY = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
NPUB = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
runner = CliRunner()


def run(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_keys_generate_prints_a_consistent_key_pair() -> None:
    code, out, _ = run("keys", "generate")
    assert code == 0
    data = json.loads(out)
    keys = Keys.parse(data["secret"])
    assert Keys.parse(data["nsec"]) == keys
    assert data["pubkey"] == keys.public_key
    assert data["npub"] == keys.npub


def test_event_golden() -> None:
    code, out, err = run(
        "event",
        "-k",
        "5100",
        "-c",
        "hello",
        "-t",
        "i=hello;text",
        "-t",
        "param=model;x",
        "--sec",
        SECRET,
        "--ts",
        "1700000000",
    )
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    event = json.loads(out)
    assert event["id"] == "99213d2c7f25ee811632a9570287294557a86fe1cb9e66eb30e8e66dbbeb86f3"
    assert event["pubkey"] == PUBKEY
    assert event["tags"] == [["i", "hello", "text"], ["param", "model", "x"]]
    assert out == json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert nostr_sdk.Event.from_json(out).verify()


def test_event_takes_the_key_from_the_environment_as_nsec() -> None:
    code, out, _ = run("event", "-c", "x", "--ts", "1", env={"NOSTR_SECRET_KEY": NSEC})
    assert code == 0
    assert json.loads(out)["pubkey"] == PUBKEY


def test_bare_tag_name_is_a_one_element_tag() -> None:
    code, out, _ = run("event", "-t", "nsfw", "--sec", SECRET, "--ts", "1")
    assert code == 0
    assert json.loads(out)["tags"] == [["nsfw"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["event", "--sec", "nope"], "64 hex characters or an nsec"),
        (["event", "--sec", SECRET, "-k", "70000"], "kind must be an integer"),
        (["event", "--sec", SECRET, "-t", "=x"], "has no name"),
        (["decode", "npub1xyz"], "bech32"),
        (["encode", "npub", "xyz"], "public key"),
        (["encrypt", "--sec", SECRET, "--to", "00", "hi"], "public key"),
        (["decrypt", "--sec", SECRET, "--from", PUBKEY, "AAAA"], ""),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.startswith("dvm: ")
    assert err.count("\n") == 1
    assert message in err
    assert SECRET not in err


def test_verify_is_silent_for_valid_events_and_exits_123_for_invalid_ones() -> None:
    keys = Keys.parse(SECRET)
    good = sign_event(keys, kind=1, content="a", created_at=1).to_json()
    bad = json.loads(sign_event(keys, kind=1, content="b", created_at=1).to_json())
    bad["content"] = "tampered"
    assert run("verify", input=good + "\n" + good + "\n") == (0, "", "")
    code, out, err = run("verify", input=f"{good}\n\n{json.dumps(bad)}\nnot json\n")
    assert (code, out) == (123, "")
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("dvm: line 3: invalid event: id does not match")
    assert lines[1].startswith("dvm: line 4: invalid event: event is not valid JSON")


def test_decode_all_entities() -> None:
    code, out, _ = run(
        "decode",
        NPUB,
        NSEC,
        "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4mhxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p",
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"type": "npub", "pubkey": PUBKEY}
    # An nsec decodes to its public key only: the secret is never printed.
    assert rows[1] == {"type": "nsec", "pubkey": PUBKEY}
    assert SECRET not in out
    assert rows[2] == {
        "type": "nprofile",
        "pubkey": "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d",
        "relays": ["wss://r.x.com", "wss://djbas.sadkb.com"],
    }


def test_encode_round_trips_through_decode() -> None:
    event_id = "ab" * 32
    cases = [
        (["npub", PUBKEY], {"type": "npub", "pubkey": PUBKEY}),
        (["note", event_id], {"type": "note", "id": event_id}),
        (
            ["nprofile", NPUB, "-r", "wss://a.com"],
            {"type": "nprofile", "pubkey": PUBKEY, "relays": ["wss://a.com"]},
        ),
        (
            ["nevent", event_id, "--author", PUBKEY, "--kind", "5100", "-r", "wss://a.com"],
            {
                "type": "nevent",
                "id": event_id,
                "relays": ["wss://a.com"],
                "author": PUBKEY,
                "kind": 5100,
            },
        ),
        (
            ["naddr", "--pubkey", PUBKEY, "--kind", "31990", "-d", "dvm"],
            {"type": "naddr", "identifier": "dvm", "pubkey": PUBKEY, "kind": 31990, "relays": []},
        ),
    ]
    for args, expected in cases:
        code, out, err = run("encode", *args)
        assert (code, err) == (0, ""), args
        code, decoded, _ = run("decode", out.strip())
        assert json.loads(decoded) == expected
    assert run("encode", "npub", PUBKEY)[1] == NPUB + "\n"


def test_encrypt_decrypt_round_trip_and_nostr_sdk_agrees() -> None:
    other = Keys.generate()
    code, payload, _ = run("encrypt", "--sec", SECRET, "--to", other.npub, "hi there ✓")
    assert code == 0
    sdk = nostr_sdk.Keys.parse(other.secret_hex())
    assert (
        nostr_sdk.nip44_decrypt(
            sdk.secret_key(), nostr_sdk.PublicKey.parse(PUBKEY), payload.strip()
        )
        == "hi there ✓"
    )
    code, plain, _ = run("decrypt", "--sec", other.secret_hex(), "--from", PUBKEY, payload.strip())
    assert (code, plain) == (0, "hi there ✓\n")


def test_the_installed_entry_point_runs_and_hides_secrets_from_help() -> None:
    env = {**os.environ, "NOSTR_SECRET_KEY": SECRET}
    dvm = os.path.join(os.path.dirname(sys.executable), "dvm")
    result = subprocess.run(
        [dvm, "event", "--help"], capture_output=True, text=True, env=env, check=True
    )
    assert "NOSTR_SECRET_KEY" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    result = subprocess.run(
        [dvm, "event", "-c", "x", "--ts", "5"], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(result.stdout)["created_at"] == 5
