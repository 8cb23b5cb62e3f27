"""Keys, BIP-340 Schnorr signatures and ECDH on secp256k1 (NIP-01).

Signing goes straight to libsecp256k1 with a keypair computed once per :class:`Keys`, so it
runs at the library's speed; coincurve's high-level ``sign_schnorr`` rebuilds the keypair and
re-verifies on every call, about four times slower.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, TypeGuard

from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from dvmkit.errors import Bech32Error, InvalidKey
from dvmkit.nostr import bech32

_CTX = GLOBAL_CONTEXT.ctx
# Order of the secp256k1 group: a secret key must lie in [1, N-1] (BIP-340).
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EXTRAPARAMS_MAGIC = bytes((0xDA, 0x6F, 0xB3, 0x8C))

RandomBytes = Callable[[int], bytes]


def is_hex64(value: object) -> TypeGuard[str]:
    """True when ``value`` is exactly 64 lowercase hex characters (NIP-01 ids and keys)."""
    return isinstance(value, str) and len(value) == 64 and _HEX64.fullmatch(value) is not None


class Keys:
    """A secret key with its keypair and x-only public key.

    The secret never appears in ``repr`` or ``str``; :meth:`secret_hex` and :meth:`nsec` are the
    only ways out, so that revealing it is always a visible decision.
    """

    __slots__ = ("_keypair", "_secret", "public_key")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise InvalidKey("a secret key is 32 bytes")
        if not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
            raise InvalidKey("secret key is out of range (must be in [1, n-1])")
        keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(_CTX, keypair, secret):  # pragma: no cover
            raise InvalidKey("secret key was rejected by libsecp256k1")
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, keypair)
        out = ffi.new("unsigned char[32]")
        lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        self._secret = secret
        self._keypair = keypair
        #: The x-only public key as 64 lowercase hex characters.
        self.public_key: str = bytes(ffi.buffer(out, 32)).hex()

    @classmethod
    def generate(cls, random: RandomBytes = os.urandom) -> Keys:
        """A fresh random key pair."""
        while True:
            secret = random(32)
            if 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
                return cls(secret)

    @classmethod
    def parse(cls, text: str) -> Keys:
        """Parse a secret key given as 64 hex characters or as an ``nsec``.

        Raises:
            InvalidKey: the text is neither, or the key is out of range.
        """
        if not isinstance(text, str):
            raise InvalidKey("a secret key must be given as text (hex or nsec)")
        text = text.strip()
        if text[:5].lower() == "nsec1":
            try:
                hrp, data = bech32.decode(text)
            except Bech32Error as exc:
                raise InvalidKey(f"invalid nsec: {exc}") from None
            if hrp != "nsec" or len(data) != 32:
                raise InvalidKey("invalid nsec: it does not hold 32 bytes")
            return cls(data)
        if len(text) == 64:
            try:
                return cls(bytes.fromhex(text))
            except ValueError:
                pass
        raise InvalidKey("a secret key must be 64 hex characters or an nsec")

    def secret_hex(self) -> str:
        """The secret as hex. Reveals the secret: do not log it."""
        return self._secret.hex()

    def secret_bytes(self) -> bytes:
        """The secret as 32 bytes. Reveals the secret: do not log it."""
        return self._secret

    def nsec(self) -> str:
        """The secret as NIP-19 ``nsec``. Reveals the secret: do not log it."""
        return bech32.encode("nsec", self._secret)

    @property
    def npub(self) -> str:
        return bech32.encode("npub", bytes.fromhex(self.public_key))

    def sign(self, message: bytes, aux: bytes | None = None) -> bytes:
        """BIP-340 sign ``message`` (any length; Nostr signs 32-byte ids).

        Args:
            message: the bytes to sign.
            aux: 32 bytes of auxiliary randomness; fresh random bytes when omitted.

        Returns:
            The 64-byte signature.
        """
        if aux is None:
            aux = os.urandom(32)
        elif len(aux) != 32:
            raise InvalidKey("auxiliary randomness must be 32 bytes")
        sig = ffi.new("unsigned char[64]")
        if len(message) == 32:
            ok = lib.secp256k1_schnorrsig_sign32(_CTX, sig, message, self._keypair, aux)
        else:
            params = ffi.new("secp256k1_schnorrsig_extraparams *")
            params.magic = list(_EXTRAPARAMS_MAGIC)
            params.noncefp = ffi.NULL
            aux_buf = ffi.new("unsigned char[32]", aux)
            params.ndata = aux_buf
            ok = lib.secp256k1_schnorrsig_sign_custom(
                _CTX, sig, message, len(message), self._keypair, params
            )
        if not ok:  # pragma: no cover - libsecp256k1 only fails on invalid keypairs
            raise InvalidKey("libsecp256k1 refused to sign")
        return bytes(ffi.buffer(sig, 64))

    def sign_id(self, digest: bytes) -> str:
        """Sign a 32-byte event id with fresh aux randomness; the signature as hex.

        The hot path of :func:`~dvmkit.nostr.event.sign_event`, kept free of the checks
        :meth:`sign` needs for arbitrary messages. A new output buffer per call: cffi releases
        the GIL, so threads sharing these Keys must not share one.
        """
        sig = ffi.new("unsigned char[64]")
        lib.secp256k1_schnorrsig_sign32(_CTX, sig, digest, self._keypair, os.urandom(32))
        return ffi.buffer(sig, 64)[:].hex()  # type: ignore[no-any-return]

    def shared_x(self, public_key: str) -> bytes:
        """The unhashed 32-byte x coordinate of ECDH with ``public_key`` (NIP-04, NIP-44).

        Raises:
            InvalidKey: ``public_key`` is not a valid x-only public key.
        """
        point = _lift_x(public_key)
        return point.multiply(self._secret).format(compressed=True)[1:]

    def __repr__(self) -> str:
        return f"Keys(public_key={self.public_key!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __reduce__(self) -> Any:
        # Pickling would copy the secret to wherever the pickle goes; refuse by default.
        raise TypeError("Keys cannot be pickled; pass secret_hex() explicitly if you must")


def _lift_x(public_key: str) -> PublicKey:
    if not is_hex64(public_key):
        raise InvalidKey("a public key is 64 lowercase hex characters")
    try:
        return PublicKey(b"\x02" + bytes.fromhex(public_key))
    except ValueError:
        raise InvalidKey("public key is not a point on secp256k1") from None


def parse_public_key(text: str) -> str:
    """Parse a public key given as hex or ``npub`` into 64 lowercase hex characters.

    Raises:
        InvalidKey: the text is neither, or the point is not on the curve.
    """
    if not isinstance(text, str):
        raise InvalidKey("a public key must be given as text (hex or npub)")
    text = text.strip()
    if text[:5].lower() == "npub1":
        try:
            hrp, data = bech32.decode(text)
        except Bech32Error as exc:
            raise InvalidKey(f"invalid npub: {exc}") from None
        if hrp != "npub" or len(data) != 32:
            raise InvalidKey("invalid npub: it does not hold 32 bytes")
        text = data.hex()
    else:
        text = text.lower()
    _lift_x(text)
    return text


# Lifting an x-only key to a point costs a field square root (~5 us, a sixth of a verify).
# Relays and DVMs see the same authors again and again, so parsed keys are kept, boundedly.
_PARSED: dict[bytes, Any] = {}
_PARSED_MAX = 4096


def _parsed_xonly(public_key: bytes) -> Any | None:
    xonly = _PARSED.get(public_key)
    if xonly is None:
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        if not lib.secp256k1_xonly_pubkey_parse(_CTX, xonly, public_key):
            return None
        if len(_PARSED) >= _PARSED_MAX:
            # Evict the oldest entry (dicts keep insertion order); cheap and bounded.
            _PARSED.pop(next(iter(_PARSED)), None)
        _PARSED[public_key] = xonly
    return xonly


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """BIP-340 verify; False for any malformed input rather than an exception."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    xonly = _parsed_xonly(public_key)
    if xonly is None:
        return False
    return bool(lib.secp256k1_schnorrsig_verify(_CTX, signature, message, len(message), xonly))
