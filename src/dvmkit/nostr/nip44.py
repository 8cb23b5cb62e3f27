"""NIP-44 v2: versioned encryption between two Nostr keys.

Every step is a public pure function (nostr-tools style) and the nonce is injectable, so the
official vectors (paulmillr/nip44) reproduce byte for byte::

    conversation key = HKDF-extract(sha256, ikm=ECDH x, salt="nip44-v2")
    message keys     = HKDF-expand(conversation key, info=nonce, L=76)
    padded           = length prefix || plaintext || zeros
    payload          = base64(0x02 || nonce || chacha20(padded) || hmac-sha256(nonce || ct))

Since 2026-06-28 (nips PR #1907) a plaintext may be 1 to 2^32-1 bytes: lengths below 65536
keep the u16 big-endian prefix, longer ones use ``00 00`` followed by a u32 big-endian length,
which old readers see as an empty (invalid) message rather than misreading it. There is no
upper bound on the payload size, so decryption is strictly linear in the input; a caller that
must bound its work bounds the size of what it accepts (the relay message limit does).

Every failure is a :class:`~dvmkit.errors.DecryptionError`, :class:`~dvmkit.errors.EncryptionError`
or :class:`~dvmkit.errors.InvalidKey`; no foreign exception escapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from dvmkit.errors import DecryptionError, EncryptionError, InvalidKey
from dvmkit.nostr.keys import Keys

VERSION = 2
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 2**32 - 1
#: Plaintexts at least this long use the 6-byte ``00 00 || u32`` prefix (NIP-44, 2026).
EXTENDED_PREFIX_THRESHOLD = 65536
#: The shortest valid payload: 1 version + 32 nonce + 2 prefix + 32 padding + 32 mac bytes.
MIN_PAYLOAD_BYTES = 99
MIN_PAYLOAD_CHARS = 132
_SALT = b"nip44-v2"
_MESSAGE_KEYS_LEN = 76
# cryptography's ChaCha20 takes a 16-byte nonce: a 4-byte little-endian block counter
# followed by the 12-byte RFC 8439 nonce. NIP-44 starts the counter at 0.
_COUNTER_ZERO = bytes(4)


def get_conversation_key(secret: Keys | bytes, public_key: str) -> bytes:
    """The 32-byte conversation key shared by ``secret`` and ``public_key`` (symmetric).

    Args:
        secret: our key pair, or a 32-byte secret key.
        public_key: the peer's x-only public key as 64 lowercase hex characters.

    Returns:
        HKDF-extract of the unhashed ECDH x coordinate with salt ``nip44-v2``.

    Raises:
        InvalidKey: the secret is out of range or the public key is not on the curve.
    """
    keys = secret if isinstance(secret, Keys) else Keys(secret)
    # HKDF-extract(salt, ikm) is exactly HMAC(salt, ikm) (RFC 5869 §2.2).
    return hmac.new(_SALT, keys.shared_x(public_key), hashlib.sha256).digest()


def get_message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """The per-message keys derived from the conversation key and the 32-byte nonce.

    Returns:
        ``(chacha_key, chacha_nonce, hmac_key)``: 32, 12 and 32 bytes.

    Raises:
        InvalidKey: the conversation key is not 32 bytes.
        EncryptionError: the nonce is not 32 bytes.
    """
    _check_conversation_key(conversation_key)
    if not isinstance(nonce, bytes) or len(nonce) != 32:
        raise EncryptionError("a NIP-44 nonce is 32 bytes")
    okm = HKDFExpand(hashes.SHA256(), _MESSAGE_KEYS_LEN, nonce).derive(conversation_key)
    return okm[:32], okm[32:44], okm[44:76]


def calc_padded_len(n: int) -> int:
    """The padded size of an ``n``-byte plaintext, without its length prefix.

    At least 32; then multiples of 32 up to 256, beyond that multiples of an eighth of the
    next power of two, so the size leaks only about 3 bits of the length.

    Raises:
        EncryptionError: ``n`` is outside [1, 2^32-1].
    """
    if not MIN_PLAINTEXT <= n <= MAX_PLAINTEXT:
        raise EncryptionError(f"plaintext length must be in [1, {MAX_PLAINTEXT}], got {n}")
    if n <= 32:
        return 32
    next_power = 1 << (n - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((n - 1) // chunk + 1)


def pad(plaintext: bytes) -> bytes:
    """Prefix the length and append zeros up to :func:`calc_padded_len`.

    Raises:
        EncryptionError: the plaintext is empty or longer than 2^32-1 bytes.
    """
    n = len(plaintext)
    if not MIN_PLAINTEXT <= n <= MAX_PLAINTEXT:
        raise EncryptionError(
            f"plaintext must be 1 to {MAX_PLAINTEXT} bytes (NIP-44), got {n} bytes"
        )
    if n < EXTENDED_PREFIX_THRESHOLD:
        prefix = n.to_bytes(2, "big")
    else:
        prefix = b"\x00\x00" + n.to_bytes(4, "big")
    out = bytearray(prefix)
    out += plaintext
    out += bytes(calc_padded_len(n) - n)
    return bytes(out)


def unpad(padded: bytes) -> bytes:
    """Undo :func:`pad`, checking that the prefix and the padded size agree.

    Raises:
        DecryptionError: the prefix is zero, non-canonical, or inconsistent with the size.
    """
    size = len(padded)
    if size < 2:
        raise DecryptionError("invalid padding: shorter than the length prefix")
    n = int.from_bytes(padded[:2], "big")
    prefix_len = 2
    if n == 0:
        if size < 6:
            raise DecryptionError("invalid padding: shorter than the extended length prefix")
        n = int.from_bytes(padded[2:6], "big")
        prefix_len = 6
        # Lengths below the threshold have exactly one encoding: the u16 prefix.
        if n < EXTENDED_PREFIX_THRESHOLD:
            raise DecryptionError(f"invalid padding: extended length prefix holds {n}, below 65536")
    expected = prefix_len + calc_padded_len(n)
    if size != expected:
        raise DecryptionError(
            f"invalid padding: length {n} needs {expected} padded bytes, got {size}"
        )
    return padded[prefix_len : prefix_len + n]


def encrypt(plaintext: str, conversation_key: bytes, *, nonce: bytes | None = None) -> str:
    """Encrypt ``plaintext`` into a base64 NIP-44 v2 payload.

    Args:
        plaintext: 1 to 2^32-1 bytes once UTF-8 encoded.
        conversation_key: from :func:`get_conversation_key`.
        nonce: 32 bytes; fresh random bytes when omitted (pass one only to reproduce vectors:
            reusing a nonce with the same key breaks confidentiality).

    Returns:
        The payload text.

    Raises:
        EncryptionError: empty or oversized plaintext, a lone surrogate, a bad nonce.
        InvalidKey: the conversation key is not 32 bytes.
    """
    if not isinstance(plaintext, str):
        raise EncryptionError("NIP-44 plaintext must be a str")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise EncryptionError("plaintext is not encodable as UTF-8 (lone surrogate)") from None
    if nonce is None:
        nonce = os.urandom(32)
    chacha_key, chacha_nonce, hmac_key = get_message_keys(conversation_key, nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, pad(data))
    mac = _mac(hmac_key, nonce, ciphertext)
    return base64.b64encode(b"".join((bytes((VERSION,)), nonce, ciphertext, mac))).decode()


def decrypt(payload: str, conversation_key: bytes) -> str:
    """Check and decrypt a NIP-44 v2 payload.

    The MAC is compared in constant time before anything is decrypted.

    Raises:
        DecryptionError: with a message saying which check failed (version, length, base64,
            MAC, padding, UTF-8).
        InvalidKey: the conversation key is not 32 bytes.
    """
    _check_conversation_key(conversation_key)
    data = _decode_payload(payload)
    nonce = data[1:33]
    ciphertext = data[33:-32]
    chacha_key, chacha_nonce, hmac_key = get_message_keys(conversation_key, nonce)
    if not hmac.compare_digest(_mac(hmac_key, nonce, ciphertext), data[-32:]):
        raise DecryptionError("invalid MAC: wrong key, or the payload was altered")
    plaintext = unpad(_chacha20(chacha_key, chacha_nonce, ciphertext))
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("decrypted plaintext is not valid UTF-8") from None


def encrypt_to(keys: Keys, public_key: str, plaintext: str) -> str:
    """Encrypt ``plaintext`` from ``keys`` to ``public_key`` with a fresh nonce.

    Raises:
        InvalidKey, EncryptionError: as :func:`get_conversation_key` and :func:`encrypt`.
    """
    return encrypt(plaintext, get_conversation_key(keys, public_key))


def decrypt_from(keys: Keys, public_key: str, payload: str) -> str:
    """Decrypt a payload that ``public_key`` encrypted to ``keys``.

    Raises:
        InvalidKey, DecryptionError: as :func:`get_conversation_key` and :func:`decrypt`.
    """
    return decrypt(payload, get_conversation_key(keys, public_key))


def _decode_payload(payload: str) -> bytes:
    if not isinstance(payload, str):
        raise DecryptionError("a NIP-44 payload must be a str")
    if not payload:
        raise DecryptionError("invalid payload length: 0 (payload is empty)")
    # NIP-44: '#' marks a non-base64 encoding reserved for future versions.
    if payload[0] == "#":
        raise DecryptionError("unsupported encryption version (payload starts with '#')")
    if len(payload) < MIN_PAYLOAD_CHARS:
        raise DecryptionError(
            f"invalid payload length: {len(payload)} characters, at least {MIN_PAYLOAD_CHARS}"
        )
    try:
        raw = payload.encode("ascii")
        data = base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DecryptionError("invalid base64 in payload") from None
    # Strict RFC 4648: refuse non-zero trailing bits, so one payload has one spelling and a
    # flipped character can never decode to the same bytes.
    if base64.b64encode(data) != raw:
        raise DecryptionError("invalid base64 in payload (non-canonical encoding)")
    if len(data) < MIN_PAYLOAD_BYTES:
        raise DecryptionError(
            f"invalid payload length: {len(data)} bytes decoded, at least {MIN_PAYLOAD_BYTES}"
        )
    if data[0] != VERSION:
        raise DecryptionError(f"unknown encryption version {data[0]}")
    return data


def _check_conversation_key(conversation_key: bytes) -> None:
    if not isinstance(conversation_key, bytes) or len(conversation_key) != 32:
        raise InvalidKey("a NIP-44 conversation key is 32 bytes")


def _chacha20(key: bytes, nonce: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, _COUNTER_ZERO + nonce), mode=None)
    return cipher.encryptor().update(data)


def _mac(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    mac = hmac.new(key, nonce, hashlib.sha256)
    mac.update(ciphertext)
    return mac.digest()
