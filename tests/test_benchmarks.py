"""Smoke tests for the benchmark runner: it runs end to end and its JSON has the expected shape.

These assert nothing about speed (speed is only reported by ``python -m benchmarks``); they
prove the harness measures real work through real relays and prints a complete report.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from benchmarks import reference
from benchmarks.servers import nostr_relay_config
from benchmarks.timing import percentile

from dvmkit.nostr.keys import Keys

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path("/work/shared/vectors/nip44.vectors.json")
FIGURE_KEYS = {"key", "group", "subject", "value", "unit", "better", "rounds", "ratios", "note"}


def _run(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--json", "--quick"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    for fig in report["figures"]:
        assert fig.keys() >= FIGURE_KEYS
        assert len(fig["rounds"]) >= 3
        assert fig["value"] > 0
    return report


def test_crypto_quick_reports_every_figure_with_ratios_and_goals() -> None:
    report = _run("crypto")
    assert report["benchmark"] == "crypto"
    assert report["quick"] is True
    groups = {fig["group"] for fig in report["figures"]}
    assert groups == {"sign", "verify", "nip44"}
    ours = [fig for fig in report["figures"] if fig["subject"].startswith("dvmkit")]
    assert {fig["group"] for fig in ours} == {"sign", "verify", "nip44"}
    references = {fig["key"] for fig in report["figures"]} - {fig["key"] for fig in ours}
    for fig in ours:
        # Every figure of ours is compared with every reference of its group.
        group_refs = {key for key in references if key.startswith(fig["group"] + ":")}
        assert set(fig["ratios"]) == group_refs
        assert all(value > 0 for value in fig["ratios"].values())
    assert [goal["target"] for goal in report["goals"]] == [0.9] * 4
    assert all(isinstance(goal["met"], bool) for goal in report["goals"])


def test_relay_quick_measures_ours_against_localrelay() -> None:
    report = _run("relay", "--relays", "ours,localrelay")
    assert report["benchmark"] == "relay"
    assert report["subjects"]["ours"]["available"] is True
    assert report["subjects"]["localrelay"]["available"] is True
    keys = {fig["key"] for fig in report["figures"]}
    for measure in ("publish_1", "publish_10", "fanout", "rtt_p50", "rtt_p99"):
        assert {f"{measure}:ours", f"{measure}:localrelay"} <= keys
    for fig in report["figures"]:
        if fig["key"].endswith(":ours"):
            assert set(fig["ratios"]) == {"nostr-sdk LocalRelay"}
        if fig["unit"] != "ms":
            assert fig["extra"]["complete"] is True
            assert fig["extra"]["rejected"] == 0
    # nostr-relay was not requested, so its goals are reported as not measured.
    unmeasured = [g for g in report["goals"] if "nostr-relay" in g["text"]]
    assert unmeasured
    assert all(g["met"] is None for g in unmeasured)
    assert not [n for n in report["notes"] if n.startswith("error")]


def test_runner_rejects_unknown_relay_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "relay", "--relays", "strfry"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"unknown relays: strfry" in result.stderr


def test_nip44_reference_matches_the_official_vectors() -> None:
    # The benchmark's ceiling must do the real NIP-44 work, or its ratio means nothing.
    vectors = orjson.loads(VECTORS.read_bytes())["v2"]["valid"]
    for case in vectors["encrypt_decrypt"]:
        key = bytes.fromhex(case["conversation_key"])
        payload = reference.nip44_encrypt(case["plaintext"], key, bytes.fromhex(case["nonce"]))
        assert payload == case["payload"]
        assert reference.nip44_decrypt(payload, key) == case["plaintext"]
    for case in vectors["get_conversation_key"]:
        shared = Keys(bytes.fromhex(case["sec1"])).shared_x(case["pub2"])
        assert reference.nip44_conversation_key(shared).hex() == case["conversation_key"]


def test_nip44_reference_rejects_a_tampered_payload() -> None:
    key = bytes(range(32))
    raw = bytearray(base64.b64decode(reference.nip44_encrypt("hello", key)))
    raw[40] ^= 1  # one ciphertext bit
    with pytest.raises(ValueError, match="MAC"):
        reference.nip44_decrypt(base64.b64encode(raw).decode(), key)


def test_raw_signer_signatures_verify_with_the_raw_verifier() -> None:
    keys = Keys.generate()
    signer = reference.RawSigner(keys.secret_bytes())
    assert signer.public_key == keys.public_key
    message = bytes(32)
    assert reference.verify(bytes.fromhex(signer.public_key), signer.sign32(message), message)
    assert not reference.verify(bytes.fromhex(signer.public_key), bytes(64), message)


def test_nostr_relay_config_is_generous_and_local() -> None:
    text = nostr_relay_config(port=4321, db_path=Path("/tmp/x.sqlite3"))
    assert "bind: 127.0.0.1:4321" in text
    assert "rate_limits" not in text
    assert "nostr_relay.validators.is_signed" in text
    assert "is_recent" not in text


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
