"""Keys and BIP-340: every official vector, key parsing, and that secrets stay hidden."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest

from dvmkit.errors import InvalidKey
from dvmkit.nostr.keys import CURVE_ORDER, Keys, is_hex64, parse_public_key, verify_signature

VECTORS = Path(__file__).parent.parent / "vectors"


def bip340_vectors() -> list[dict[str, str]]:
    with (VECTORS / "bip340-test-vectors.csv").open() as f:
        return list(csv.DictReader(f))


def test_the_bip340_file_has_all_19_vectors() -> None:
    assert [int(v["index"]) for v in bip340_vectors()] == list(range(19))


@pytest.mark.parametrize("vector", bip340_vectors(), ids=lambda v: v["index"])
def test_bip340_vector(vector: dict[str, str]) -> None:
    pubkey = bytes.fromhex(vector["public key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    expected = vector["verification result"] == "TRUE"
    assert verify_signature(pubkey, signature, message) is expected
    if vector["secret key"]:
        keys = Keys(bytes.fromhex(vector["secret key"]))
        assert keys.public_key == vector["public key"].lower()
        assert keys.sign(message, bytes.fromhex(vector["aux_rand"])) == signature


def test_nip19_example_secret_derives_its_public_key() -> None:
    keys = Keys.parse("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5")
    assert keys.public_key == "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
    assert keys.secret_hex() == "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
    assert Keys.parse(keys.secret_hex()) == keys
    assert Keys.parse(keys.nsec()) == keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "64 hex characters or an nsec"),
        ("zz" * 32, "64 hex characters or an nsec"),
        ("00" * 32, "out of range"),
        (format(CURVE_ORDER, "064x"), "out of range"),
        ("ff" * 32, "out of range"),
        ("abc", "64 hex characters or an nsec"),
        ("nsec1qqqq", "invalid nsec"),
        ("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe6", "checksum"),
        # An npub where a secret belongs: refuse rather than guess.
        ("npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg", "64 hex"),
    ],
)
def test_bad_secret_keys_get_a_precise_error(text: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        Keys.parse(text)


def test_secret_never_shows_in_repr_str_or_pickle() -> None:
    keys = Keys.generate()
    for shown in (repr(keys), str(keys), f"{keys}", repr([keys])):
        assert keys.secret_hex() not in shown
        assert keys.nsec() not in shown
        assert keys.public_key in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)


def test_error_for_a_bad_key_does_not_echo_it() -> None:
    almost = "g" + Keys.generate().secret_hex()[1:]
    with pytest.raises(InvalidKey) as info:
        Keys.parse(almost)
    assert almost not in str(info.value)


def test_parse_public_key_accepts_hex_and_npub_and_rejects_points_off_the_curve() -> None:
    hex_key = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
    assert parse_public_key(hex_key) == hex_key
    assert parse_public_key(hex_key.upper()) == hex_key
    npub = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
    assert parse_public_key(npub) == hex_key
    # x = 5 has no point on secp256k1 (BIP-340 vector 5's public key).
    with pytest.raises(InvalidKey, match="not a point"):
        parse_public_key("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34")
    with pytest.raises(InvalidKey):
        parse_public_key("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5")
    with pytest.raises(InvalidKey):
        parse_public_key("12")


def test_shared_x_is_symmetric() -> None:
    a, b = Keys.generate(), Keys.generate()
    assert a.shared_x(b.public_key) == b.shared_x(a.public_key)
    assert len(a.shared_x(b.public_key)) == 32


def test_verify_signature_rejects_wrong_lengths_without_raising() -> None:
    keys = Keys.generate()
    sig = keys.sign(b"\x01" * 32)
    pub = bytes.fromhex(keys.public_key)
    assert verify_signature(pub, sig, b"\x01" * 32)
    assert not verify_signature(pub[:31], sig, b"\x01" * 32)
    assert not verify_signature(pub, sig[:63], b"\x01" * 32)
    assert not verify_signature(pub, sig, b"\x02" * 32)


def test_is_hex64() -> None:
    assert is_hex64("a" * 64)
    assert not is_hex64("A" * 64)
    assert not is_hex64("a" * 63)
    assert not is_hex64(None)
