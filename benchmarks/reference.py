"""The ceilings: the same operations written directly on coincurve and cryptography.

Nothing here imports dvmkit, so a bug or a shortcut in dvmkit cannot leak into its own
reference. These are the fastest straightforward ways to do each operation from Python with
the libraries dvmkit itself depends on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson
from coincurve import PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

_CTX = GLOBAL_CONTEXT.ctx


class RawSigner:
    """BIP-340 signing with a keypair computed once: ``secp256k1_schnorrsig_sign32`` via cffi."""

    def __init__(self, secret: bytes) -> None:
        self._keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(_CTX, self._keypair, secret):
            raise ValueError("secret key rejected by libsecp256k1")
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, self._keypair)
        out = ffi.new("unsigned char[32]")
        lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        self.public_key = bytes(ffi.buffer(out, 32)).hex()
        self._sig = ffi.new("unsigned char[64]")

    def sign32(self, message: bytes) -> bytes:
        """Sign a 32-byte message with fresh aux randomness (BIP-340 recommends it)."""
        lib.secp256k1_schnorrsig_sign32(_CTX, self._sig, message, self._keypair, os.urandom(32))
        return ffi.buffer(self._sig, 64)[:]  # type: ignore[no-any-return]

    def sign_event(
        self, *, kind: int, content: str, tags: list[list[str]], created_at: int
    ) -> tuple[str, str]:
        """NIP-01 id (sha256 of the orjson serialization) and signature, both hex."""
        digest = hashlib.sha256(
            orjson.dumps([0, self.public_key, created_at, kind, tags, content])
        ).digest()
        return digest.hex(), self.sign32(digest).hex()


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Parse an x-only public key and check a BIP-340 signature (coincurve's own API)."""
    return bool(PublicKeyXOnly(public_key).verify(signature, message))


def verify_event_json(raw: bytes) -> bool:
    """Decode an event, recompute its NIP-01 id and check its signature; no shape checks."""
    data: dict[str, Any] = orjson.loads(raw)
    digest = hashlib.sha256(
        orjson.dumps(
            [0, data["pubkey"], data["created_at"], data["kind"], data["tags"], data["content"]]
        )
    ).digest()
    if digest.hex() != data["id"]:
        return False
    return verify(bytes.fromhex(data["pubkey"]), bytes.fromhex(data["sig"]), digest)


# -- NIP-44 v2 ------------------------------------------------------------------------------


def nip44_conversation_key(shared_x: bytes) -> bytes:
    """HKDF-extract with salt ``nip44-v2`` over the unhashed ECDH x coordinate (NIP-44)."""
    return hmac.digest(b"nip44-v2", shared_x, "sha256")


def _padded_len(length: int) -> int:
    if length <= 32:
        return 32
    next_power = 1 << (length - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((length - 1) // chunk + 1)


def _message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    keys = HKDFExpand(algorithm=hashes.SHA256(), length=76, info=nonce).derive(conversation_key)
    return keys[:32], keys[32:44], keys[44:76]


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography takes the RFC 8439 block counter (0 for NIP-44) as the first 4 nonce bytes.
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    return cipher.encryptor().update(data)


def _mac(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(nonce + ciphertext)
    return mac.finalize()


def nip44_encrypt(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """NIP-44 v2 encrypt for plaintexts up to 65535 bytes (enough for a benchmark)."""
    data = plaintext.encode()
    if not 1 <= len(data) <= 0xFFFF:
        raise ValueError("plaintext length out of range for this reference")
    nonce = os.urandom(32) if nonce is None else nonce
    chacha_key, chacha_nonce, hmac_key = _message_keys(conversation_key, nonce)
    padded = len(data).to_bytes(2, "big") + data + bytes(_padded_len(len(data)) - len(data))
    ciphertext = _chacha20(chacha_key, chacha_nonce, padded)
    payload = b"\x02" + nonce + ciphertext + _mac(hmac_key, nonce, ciphertext)
    return base64.b64encode(payload).decode()


def nip44_decrypt(payload: str, conversation_key: bytes) -> str:
    """NIP-44 v2 decrypt (2-byte length prefix only)."""
    raw = base64.b64decode(payload, validate=True)
    if len(raw) < 99 or raw[0] != 2:
        raise ValueError("not a NIP-44 v2 payload")
    nonce, ciphertext, mac = raw[1:33], raw[33:-32], raw[-32:]
    chacha_key, chacha_nonce, hmac_key = _message_keys(conversation_key, nonce)
    if not hmac.compare_digest(mac, _mac(hmac_key, nonce, ciphertext)):
        raise ValueError("invalid MAC")
    padded = _chacha20(chacha_key, chacha_nonce, ciphertext)
    length = int.from_bytes(padded[:2], "big")
    if length < 1 or len(padded) != 2 + _padded_len(length):
        raise ValueError("invalid padding")
    return padded[2 : 2 + length].decode()
