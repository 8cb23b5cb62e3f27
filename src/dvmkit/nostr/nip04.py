"""NIP-04: the legacy encrypted direct-message scheme, kept for NIP-90 encrypted params.

NIP-90 as merged encrypts job params with NIP-04 (SPECS.md §1.3), and a bare ``["encrypted"]``
tag still means NIP-04, so a DVM must speak it. NIP-04 is marked ``unrecommended``: it has no
MAC, so a wrong key or an altered ciphertext is only caught when the padding or the UTF-8
happens not to check out. New code should use :mod:`dvmkit.nostr.nip44`.

Wire form: ``base64(AES-256-CBC(PKCS7(plaintext))) + "?iv=" + base64(iv)``, with the unhashed
32-byte x coordinate of the ECDH point as the AES key.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dvmkit.errors import DecryptionError, EncryptionError
from dvmkit.nostr.keys import Keys

_IV_SEPARATOR = "?iv="
_BLOCK = 16


def encrypt(keys: Keys, public_key: str, plaintext: str, *, iv: bytes | None = None) -> str:
    """Encrypt ``plaintext`` from ``keys`` to ``public_key``.

    Args:
        keys: the sender's key pair.
        public_key: the recipient's x-only public key (64 hex characters).
        plaintext: any text, the empty string included.
        iv: 16 bytes; fresh random bytes when omitted (pass one only in tests).

    Returns:
        ``"<base64 ciphertext>?iv=<base64 iv>"``.

    Raises:
        InvalidKey: the public key is not on the curve.
        EncryptionError: a lone surrogate in the plaintext, or an iv that is not 16 bytes.
    """
    if not isinstance(plaintext, str):
        raise EncryptionError("NIP-04 plaintext must be a str")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise EncryptionError("plaintext is not encodable as UTF-8 (lone surrogate)") from None
    if iv is None:
        iv = os.urandom(_BLOCK)
    elif not isinstance(iv, bytes) or len(iv) != _BLOCK:
        raise EncryptionError("a NIP-04 iv is 16 bytes")
    key = keys.shared_x(public_key)
    padder = padding.PKCS7(_BLOCK * 8).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return f"{base64.b64encode(ciphertext).decode()}{_IV_SEPARATOR}{base64.b64encode(iv).decode()}"


def decrypt(keys: Keys, public_key: str, payload: str) -> str:
    """Decrypt a NIP-04 payload that ``public_key`` encrypted to ``keys``.

    Raises:
        InvalidKey: the public key is not on the curve.
        DecryptionError: a malformed payload (no ``?iv=``, bad base64, iv not 16 bytes,
            ciphertext empty or not whole blocks), bad PKCS7 padding (often: the wrong key),
            or a plaintext that is not UTF-8.
    """
    if not isinstance(payload, str):
        raise DecryptionError("a NIP-04 payload must be a str")
    parts = payload.split(_IV_SEPARATOR)
    if len(parts) != 2:
        raise DecryptionError("NIP-04 payload must be '<base64 ciphertext>?iv=<base64 iv>'")
    ciphertext = _b64decode(parts[0], "ciphertext")
    iv = _b64decode(parts[1], "iv")
    if len(iv) != _BLOCK:
        raise DecryptionError(f"NIP-04 iv must be 16 bytes, got {len(iv)}")
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise DecryptionError(
            f"NIP-04 ciphertext must be a non-zero multiple of 16 bytes, got {len(ciphertext)}"
        )
    key = keys.shared_x(public_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
    try:
        data = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError(
            "invalid PKCS7 padding: wrong key, or the payload was altered"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("decrypted plaintext is not valid UTF-8") from None


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DecryptionError(f"NIP-04 {what} is not valid base64") from None
