"""NIP-44 v2 against the official vectors (paulmillr/nip44), the 2026 extended length prefix,
nostr-sdk as the independent implementation, and hostile payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import DecryptionError, EncryptionError, InvalidKey
from dvmkit.nostr import nip44
from dvmkit.nostr.keys import Keys

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "nip44.vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())["v2"]
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]

ALICE = Keys(bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000001"))
BOB = Keys(bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000002"))
CONV = nip44.get_conversation_key(ALICE, BOB.public_key)
NONCE = bytes(range(32))


def _chacha(key: bytes, nonce: bytes, data: bytes) -> bytes:
    # An independent ChaCha20 call for inspecting and forging plaintexts in tests.
    return Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), mode=None).encryptor().update(data)


def _decrypted_padded(payload: str, conv: bytes) -> bytes:
    data = base64.b64decode(payload)
    chacha_key, chacha_nonce, _ = nip44.get_message_keys(conv, data[1:33])
    return _chacha(chacha_key, chacha_nonce, data[33:-32])


def _forge(padded: bytes, conv: bytes = CONV, nonce: bytes = NONCE) -> str:
    """A correctly authenticated payload around arbitrary padded bytes."""
    chacha_key, chacha_nonce, hmac_key = nip44.get_message_keys(conv, nonce)
    ciphertext = _chacha(chacha_key, chacha_nonce, padded)
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac).decode()


def test_vector_file_is_the_one_nip44_publishes() -> None:
    digest = hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest()
    assert digest == "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"


# -- valid vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VALID["get_conversation_key"])
def test_conversation_key_vectors(vector: dict[str, str]) -> None:
    secret = bytes.fromhex(vector["sec1"])
    assert nip44.get_conversation_key(secret, vector["pub2"]).hex() == vector["conversation_key"]
    assert (
        nip44.get_conversation_key(Keys(secret), vector["pub2"]).hex() == vector["conversation_key"]
    )


@pytest.mark.parametrize("vector", VALID["get_message_keys"]["keys"])
def test_message_key_vectors(vector: dict[str, str]) -> None:
    conv = bytes.fromhex(VALID["get_message_keys"]["conversation_key"])
    chacha_key, chacha_nonce, hmac_key = nip44.get_message_keys(
        conv, bytes.fromhex(vector["nonce"])
    )
    assert chacha_key.hex() == vector["chacha_key"]
    assert chacha_nonce.hex() == vector["chacha_nonce"]
    assert hmac_key.hex() == vector["hmac_key"]


@pytest.mark.parametrize(("length", "padded"), VALID["calc_padded_len"])
def test_padded_length_vectors(length: int, padded: int) -> None:
    assert nip44.calc_padded_len(length) == padded


@pytest.mark.parametrize("vector", VALID["encrypt_decrypt"])
def test_encrypt_decrypt_vectors(vector: dict[str, str]) -> None:
    sec1, sec2 = bytes.fromhex(vector["sec1"]), bytes.fromhex(vector["sec2"])
    conv = nip44.get_conversation_key(sec1, Keys(sec2).public_key)
    assert conv.hex() == vector["conversation_key"]
    # The key is symmetric: the other side derives the same one.
    assert nip44.get_conversation_key(sec2, Keys(sec1).public_key) == conv
    payload = nip44.encrypt(vector["plaintext"], conv, nonce=bytes.fromhex(vector["nonce"]))
    assert payload == vector["payload"]
    assert nip44.decrypt(payload, conv) == vector["plaintext"]


@pytest.mark.parametrize("vector", VALID["encrypt_decrypt_long_msg"])
def test_long_message_vectors(vector: dict[str, Any]) -> None:
    plaintext = vector["pattern"] * vector["repeat"]
    assert hashlib.sha256(plaintext.encode()).hexdigest() == vector["plaintext_sha256"]
    conv = bytes.fromhex(vector["conversation_key"])
    payload = nip44.encrypt(plaintext, conv, nonce=bytes.fromhex(vector["nonce"]))
    assert hashlib.sha256(payload.encode()).hexdigest() == vector["payload_sha256"]
    assert nip44.decrypt(payload, conv) == plaintext


# -- invalid vectors ----------------------------------------------------------------------


def test_zero_length_plaintext_is_rejected() -> None:
    assert 0 in INVALID["encrypt_msg_lengths"]
    with pytest.raises(EncryptionError, match="1 to 4294967295"):
        nip44.encrypt("", CONV)
    with pytest.raises(EncryptionError):
        nip44.pad(b"")


@pytest.mark.parametrize("length", [n for n in INVALID["encrypt_msg_lengths"] if n != 0])
def test_lengths_the_vector_file_calls_invalid_are_valid_since_2026(length: int) -> None:
    # The vector file predates nips PR #1907; 65536+ bytes now take the 6-byte prefix.
    plaintext = "x" * length
    payload = nip44.encrypt(plaintext, CONV, nonce=NONCE)
    decoded_len = len(base64.b64decode(payload))
    assert decoded_len == 1 + 32 + 6 + nip44.calc_padded_len(length) + 32
    assert _decrypted_padded(payload, CONV)[:6] == b"\x00\x00" + length.to_bytes(4, "big")
    assert nip44.decrypt(payload, CONV) == plaintext


@pytest.mark.parametrize("vector", INVALID["get_conversation_key"], ids=lambda v: v["note"])
def test_invalid_conversation_key_vectors(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidKey):
        nip44.get_conversation_key(bytes.fromhex(vector["sec1"]), vector["pub2"])


_NOTE_WORDS = {
    "unknown encryption version": "encryption version",
    "invalid base64": "base64",
    "invalid MAC": "MAC",
    "invalid padding": "padding",
    "invalid payload length": "payload length",
}


@pytest.mark.parametrize("vector", INVALID["decrypt"], ids=lambda v: v["note"])
def test_invalid_decrypt_vectors(vector: dict[str, str]) -> None:
    word = next(w for note, w in _NOTE_WORDS.items() if vector["note"].startswith(note))
    with pytest.raises(DecryptionError, match=word):
        nip44.decrypt(vector["payload"], bytes.fromhex(vector["conversation_key"]))


# -- the extended length prefix (NIP-44, 2026-06-28) --------------------------------------


@pytest.mark.parametrize(
    ("length", "prefix"),
    [
        (65535, b"\xff\xff"),
        (65536, b"\x00\x00\x00\x01\x00\x00"),
        (65537, b"\x00\x00\x00\x01\x00\x01"),
    ],
)
def test_extended_prefix_boundary(length: int, prefix: bytes) -> None:
    plaintext = "a" * length
    padded = nip44.pad(plaintext.encode())
    assert padded[: len(prefix)] == prefix
    assert len(padded) == len(prefix) + nip44.calc_padded_len(length)
    assert nip44.unpad(padded) == plaintext.encode()
    payload = nip44.encrypt(plaintext, CONV, nonce=NONCE)
    assert _decrypted_padded(payload, CONV) == padded
    assert nip44.decrypt(payload, CONV) == plaintext


def test_a_multibyte_text_over_65535_bytes_round_trips() -> None:
    text = "🦄" * 20_000  # 80,000 UTF-8 bytes from 20,000 characters
    assert nip44.decrypt(nip44.encrypt_to(ALICE, BOB.public_key, text), CONV) == text


@pytest.mark.parametrize(
    ("padded", "reason"),
    [
        (b"", "shorter than the length prefix"),
        (b"\x00", "shorter than the length prefix"),
        (b"\x00\x00\x00\x01", "shorter than the extended"),
        (b"\x00\x00" + (100).to_bytes(4, "big") + b"a" * 100 + bytes(28), "below 65536"),
        (b"\x00\x00" + bytes(4) + bytes(32), "holds 0"),
        (b"\x00\x05hello" + bytes(26), "needs 34 padded bytes, got 33"),
        (b"\x00\x05hello" + bytes(28), "needs 34 padded bytes, got 35"),
        (
            b"\x00\x00\x00\x01\x00\x00" + b"a" * 65536 + b"\x00",
            "needs 65542 padded bytes, got 65543",
        ),
    ],
)
def test_unpad_rejects_inconsistent_padding(padded: bytes, reason: str) -> None:
    with pytest.raises(DecryptionError, match=reason):
        nip44.unpad(padded)


def test_a_non_canonical_extended_prefix_is_rejected_after_the_mac() -> None:
    padded = b"\x00\x00" + (5).to_bytes(4, "big") + b"hello" + bytes(27)
    with pytest.raises(DecryptionError, match="below 65536"):
        nip44.decrypt(_forge(padded), CONV)


def test_a_huge_claimed_length_is_rejected_without_allocating() -> None:
    # 2^32-1 claimed in a 38-byte padded blob: rejected by arithmetic alone.
    padded = b"\x00\x00\xff\xff\xff\xff" + bytes(32)
    with pytest.raises(DecryptionError, match="4294967295"):
        nip44.decrypt(_forge(padded), CONV)


def test_a_plaintext_that_is_not_utf8_is_rejected() -> None:
    with pytest.raises(DecryptionError, match="UTF-8"):
        nip44.decrypt(_forge(nip44.pad(b"\xff\xfe\xfd")), CONV)


# -- input checks -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, -1, 2**32])
def test_calc_padded_len_rejects_impossible_lengths(length: int) -> None:
    with pytest.raises(EncryptionError):
        nip44.calc_padded_len(length)


def test_encrypt_rejects_bad_inputs() -> None:
    with pytest.raises(EncryptionError, match="surrogate"):
        nip44.encrypt("\ud800", CONV)
    with pytest.raises(EncryptionError, match="nonce"):
        nip44.encrypt("hi", CONV, nonce=bytes(31))
    with pytest.raises(InvalidKey, match="conversation key"):
        nip44.encrypt("hi", bytes(31))
    with pytest.raises(EncryptionError, match="str"):
        nip44.encrypt(b"hi", CONV)  # type: ignore[arg-type]


def test_decrypt_rejects_bad_inputs() -> None:
    payload = nip44.encrypt("hello", CONV, nonce=NONCE)
    with pytest.raises(InvalidKey):
        nip44.decrypt(payload, bytes(16))
    with pytest.raises(DecryptionError, match="MAC"):
        nip44.decrypt(payload, nip44.get_conversation_key(ALICE, ALICE.public_key))
    with pytest.raises(DecryptionError, match="str"):
        nip44.decrypt(payload.encode(), CONV)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError, match="base64"):
        nip44.decrypt(payload[:60] + "\n" + payload[61:], CONV)
    with pytest.raises(DecryptionError, match="base64"):
        nip44.decrypt(payload[:-4] + "====", CONV)


def test_non_canonical_base64_is_rejected() -> None:
    # 100 bytes end in "xx==": the last character's low 4 bits must be zero.
    payload = base64.b64encode(b"\x02" + bytes(99)).decode()
    assert payload.endswith("AA==")
    with pytest.raises(DecryptionError, match="non-canonical"):
        nip44.decrypt(payload[:-3] + "B==", CONV)


def test_132_characters_that_decode_to_fewer_than_99_bytes_are_rejected() -> None:
    payload = base64.b64encode(b"\x02" + bytes(96)).decode()
    assert len(payload) == 132
    with pytest.raises(DecryptionError, match="97 bytes"):
        nip44.decrypt(payload, CONV)


def test_fresh_nonces_differ() -> None:
    assert nip44.encrypt_to(ALICE, BOB.public_key, "x") != nip44.encrypt_to(
        ALICE, BOB.public_key, "x"
    )
    payload = nip44.encrypt_to(ALICE, BOB.public_key, "x")
    assert nip44.decrypt_from(BOB, ALICE.public_key, payload) == "x"


# -- properties ---------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=2000))
def test_pad_unpad_round_trip(data: bytes) -> None:
    padded = nip44.pad(data)
    assert len(padded) == 2 + nip44.calc_padded_len(len(data))
    assert nip44.unpad(padded) == data


@given(st.text(min_size=1, max_size=300), st.data())
def test_any_bit_flip_is_a_decryption_error(text: str, data: st.DataObject) -> None:
    payload = nip44.encrypt(text, CONV)
    raw = bytearray(payload.encode())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 6))
    with pytest.raises(DecryptionError):
        nip44.decrypt(raw.decode("latin-1"), CONV)


@given(st.text(min_size=1, max_size=300), st.data())
def test_any_truncation_is_a_decryption_error(text: str, data: st.DataObject) -> None:
    payload = nip44.encrypt(text, CONV)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecryptionError):
        nip44.decrypt(payload[:cut], CONV)


@given(st.binary(min_size=98, max_size=400))
def test_random_version_2_blobs_are_decryption_errors(blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        nip44.decrypt(base64.b64encode(b"\x02" + blob).decode(), CONV)


@given(st.text(max_size=400))
def test_arbitrary_text_is_a_decryption_error(text: str) -> None:
    with pytest.raises(DecryptionError):
        nip44.decrypt(text, CONV)


# -- nostr-sdk 0.45.1, the independent implementation -------------------------------------

SDK_ALICE = nostr_sdk.SecretKey.parse(ALICE.secret_hex())
SDK_BOB = nostr_sdk.SecretKey.parse(BOB.secret_hex())


@given(st.text(min_size=1, max_size=1000))
def test_nostr_sdk_decrypts_ours(text: str) -> None:
    payload = nip44.encrypt_to(ALICE, BOB.public_key, text)
    assert (
        nostr_sdk.nip44_decrypt(SDK_BOB, nostr_sdk.PublicKey.parse(ALICE.public_key), payload)
        == text
    )


@given(st.text(min_size=1, max_size=1000))
def test_we_decrypt_nostr_sdks(text: str) -> None:
    payload = nostr_sdk.nip44_encrypt(
        SDK_ALICE, nostr_sdk.PublicKey.parse(BOB.public_key), text, nostr_sdk.Nip44Version.V2
    )
    assert nip44.decrypt_from(BOB, ALICE.public_key, payload) == text


def test_nostr_sdk_size_limits_against_ours() -> None:
    """nostr-sdk 0.45.1 predates the extended prefix.

    It decrypts our payloads up to 65535 bytes, refuses ours from 65536 bytes, and itself
    encrypts at most 65408 bytes (we decrypt those).
    """
    bob_pub = nostr_sdk.PublicKey.parse(BOB.public_key)
    alice_pub = nostr_sdk.PublicKey.parse(ALICE.public_key)
    longest = "a" * 65535
    assert nostr_sdk.nip44_decrypt(SDK_BOB, alice_pub, nip44.encrypt(longest, CONV)) == longest
    with pytest.raises(nostr_sdk.NostrSdkError):
        nostr_sdk.nip44_decrypt(SDK_BOB, alice_pub, nip44.encrypt("a" * 65536, CONV))
    theirs = nostr_sdk.nip44_encrypt(SDK_ALICE, bob_pub, "b" * 65408, nostr_sdk.Nip44Version.V2)
    assert nip44.decrypt(theirs, CONV) == "b" * 65408
    with pytest.raises(nostr_sdk.NostrSdkError):
        nostr_sdk.nip44_encrypt(SDK_ALICE, bob_pub, "b" * 65409, nostr_sdk.Nip44Version.V2)
