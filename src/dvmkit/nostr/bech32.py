"""Bech32 (BIP-173, not bech32m) encoding as NIP-19 uses it.

Unlike BIP-173 we do not cap the string at 90 characters: NIP-19 TLV entities (nprofile,
nevent, naddr) with several relays are routinely longer, so the cap is ``MAX_LENGTH``.
"""

from __future__ import annotations

from dvmkit.errors import Bech32Error

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_INDEX = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# NIP-19 says to limit TLV strings to 5000 characters; leave room for the other fields.
MAX_LENGTH = 10_000


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup ``data``'s bits from ``from_bits`` to ``to_bits`` per value (8 ↔ 5 for bech32).

    Raises:
        Bech32Error: without ``pad``, leftover bits that are not zero padding.
    """
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise Bech32Error("bech32 data has invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp``."""
    return encode_words(hrp, convert_bits(data, 8, 5, pad=True))


def encode_words(hrp: str, words: list[int]) -> str:
    """Encode 5-bit ``words`` under ``hrp`` with the bech32 checksum (BOLT-11 needs words)."""
    polymod = _polymod([*_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """Decode bech32 ``text`` into ``(hrp, data)``.

    Raises:
        Bech32Error: mixed case, bad characters, a bad checksum, bad padding, or too long.
    """
    hrp, words = decode_words(text)
    return hrp, bytes(convert_bits(words, 5, 8, pad=False))


def decode_words(text: str, *, max_length: int = MAX_LENGTH) -> tuple[str, list[int]]:
    """Decode bech32 ``text`` into ``(hrp, 5-bit words)``, the checksum checked and removed.

    Raises:
        Bech32Error: not text, mixed case, bad characters, a bad checksum, or too long.
    """
    if not isinstance(text, str):
        raise Bech32Error("bech32 input must be a string")
    if len(text) > max_length:
        raise Bech32Error(f"bech32 string is longer than {max_length} characters")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bech32Error("bech32 string has no valid separator or is too short")
    hrp = text[:pos]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise Bech32Error("bech32 prefix has characters outside US-ASCII 33-126")
    try:
        values = [_INDEX[c] for c in text[pos + 1 :]]
    except KeyError as exc:
        raise Bech32Error(f"bech32 string has an invalid character {exc.args[0]!r}") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Bech32Error("bech32 checksum does not match (a typo, or bech32m)")
    return hrp, values[:-6]
