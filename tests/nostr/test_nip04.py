"""NIP-04 (legacy NIP-90 encrypted params): round trips, nostr-sdk both ways, malformed input."""

from __future__ import annotations

import base64

import nostr_sdk
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import DecryptionError, EncryptionError, InvalidKey
from dvmkit.nostr import nip04
from dvmkit.nostr.keys import Keys

ALICE = Keys(bytes.fromhex("67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"))
BOB = Keys(bytes.fromhex("0beebd062ec8735f4243466049d7747ef5d6594ee838de147f8aab842b15e273"))
IV = bytes(range(16))
SDK_ALICE = nostr_sdk.SecretKey.parse(ALICE.secret_hex())
SDK_BOB = nostr_sdk.SecretKey.parse(BOB.secret_hex())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _aes(plaintext_padded: bytes, iv: bytes = IV) -> bytes:
    """Raw AES-256-CBC with the shared key, for forging payloads with chosen plaintext."""
    encryptor = Cipher(algorithms.AES(ALICE.shared_x(BOB.public_key)), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext_padded) + encryptor.finalize()


@given(st.text(max_size=500))
def test_round_trip(text: str) -> None:
    payload = nip04.encrypt(ALICE, BOB.public_key, text)
    assert nip04.decrypt(BOB, ALICE.public_key, payload) == text


def test_the_wire_form_and_the_key_is_the_unhashed_shared_x() -> None:
    payload = nip04.encrypt(ALICE, BOB.public_key, "hello", iv=IV)
    ciphertext, iv = payload.split("?iv=")
    assert base64.b64decode(iv) == IV
    padder = padding.PKCS7(128).padder()
    assert base64.b64decode(ciphertext) == _aes(padder.update(b"hello") + padder.finalize())
    # The shared secret is symmetric, so either side decrypts.
    assert nip04.decrypt(ALICE, BOB.public_key, payload) == "hello"


def test_a_fresh_iv_each_time() -> None:
    assert nip04.encrypt(ALICE, BOB.public_key, "x") != nip04.encrypt(ALICE, BOB.public_key, "x")


@given(st.text(max_size=500))
def test_nostr_sdk_decrypts_ours(text: str) -> None:
    payload = nip04.encrypt(ALICE, BOB.public_key, text)
    alice_pub = nostr_sdk.PublicKey.parse(ALICE.public_key)
    assert nostr_sdk.nip04_decrypt(SDK_BOB, alice_pub, payload) == text


@given(st.text(max_size=500))
def test_we_decrypt_nostr_sdks(text: str) -> None:
    payload = nostr_sdk.nip04_encrypt(SDK_ALICE, nostr_sdk.PublicKey.parse(BOB.public_key), text)
    assert nip04.decrypt(BOB, ALICE.public_key, payload) == text


GOOD = nip04.encrypt(ALICE, BOB.public_key, "hello", iv=IV)
GOOD_CT, GOOD_IV = GOOD.split("?iv=")
ZERO_PAD_BYTE = _b64(_aes(b"hello" + bytes(11)))
PAD_BYTE_TOO_BIG = _b64(_aes(b"hello" + bytes(10) + b"\x11"))
NOT_UTF8 = _b64(_aes(b"\xff\xfe" + bytes([14] * 14)))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "must be '<base64 ciphertext>\\?iv=<base64 iv>'"),
        (GOOD_CT, "must be '<base64"),
        (f"{GOOD_CT}?iv={GOOD_IV}?iv={GOOD_IV}", "must be '<base64"),
        (f"{GOOD_CT}?IV={GOOD_IV}", "must be '<base64"),
        (f"{GOOD_CT[:-1]}!?iv={GOOD_IV}", "ciphertext is not valid base64"),
        (f"{GOOD_CT}?iv={GOOD_IV[:-2]}", "iv is not valid base64"),
        (f"{GOOD_CT}?iv=ф{GOOD_IV[1:]}", "iv is not valid base64"),
        (f"{GOOD_CT}?iv= {GOOD_IV}", "iv is not valid base64"),
        (f"{GOOD_CT}?iv={_b64(bytes(15))}", "iv must be 16 bytes, got 15"),
        (f"{GOOD_CT}?iv={_b64(bytes(32))}", "iv must be 16 bytes, got 32"),
        (f"{GOOD_CT}?iv=", "iv must be 16 bytes, got 0"),
        (f"?iv={GOOD_IV}", "multiple of 16 bytes, got 0"),
        (f"{_b64(bytes(17))}?iv={GOOD_IV}", "multiple of 16 bytes, got 17"),
        (f"{ZERO_PAD_BYTE}?iv={GOOD_IV}", "PKCS7"),
        (f"{PAD_BYTE_TOO_BIG}?iv={GOOD_IV}", "PKCS7"),
        (f"{NOT_UTF8}?iv={GOOD_IV}", "UTF-8"),
    ],
)
def test_malformed_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecryptionError, match=reason):
        nip04.decrypt(BOB, ALICE.public_key, payload)


def test_bad_inputs() -> None:
    with pytest.raises(DecryptionError, match="str"):
        nip04.decrypt(BOB, ALICE.public_key, GOOD.encode())  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        nip04.decrypt(BOB, "ff" * 32, GOOD)
    with pytest.raises(InvalidKey):
        nip04.encrypt(ALICE, "not a key", "x")
    with pytest.raises(EncryptionError, match="16 bytes"):
        nip04.encrypt(ALICE, BOB.public_key, "x", iv=bytes(8))
    with pytest.raises(EncryptionError, match="surrogate"):
        nip04.encrypt(ALICE, BOB.public_key, "\udc00")
    with pytest.raises(EncryptionError, match="str"):
        nip04.encrypt(ALICE, BOB.public_key, b"x")  # type: ignore[arg-type]


@given(st.text(max_size=200), st.data())
def test_tampered_payloads_fail_cleanly_or_decrypt_to_text(text: str, data: st.DataObject) -> None:
    # NIP-04 has no MAC: tampering is caught only when padding or UTF-8 breaks, so the only
    # promise is "a DecryptionError or a str", never a foreign exception.
    raw = bytearray(nip04.encrypt(ALICE, BOB.public_key, text).encode())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 6))
    try:
        result = nip04.decrypt(BOB, ALICE.public_key, raw.decode("latin-1"))
    except DecryptionError:
        return
    assert isinstance(result, str)


@given(st.one_of(st.text(max_size=300), st.builds("{}?iv={}".format, st.text(), st.text())))
def test_arbitrary_text_never_raises_a_foreign_exception(text: str) -> None:
    try:
        result = nip04.decrypt(BOB, ALICE.public_key, text)
    except DecryptionError:
        return
    assert isinstance(result, str)
