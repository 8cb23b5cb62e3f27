"""NIP-19: bech32 entities (npub, nsec, note) and TLV pointers (nprofile, nevent, naddr).

TLV types: 0 special (pubkey, event id, or the ``d`` identifier for naddr), 1 relay (ASCII,
repeatable), 2 author (32 bytes), 3 kind (u32 big-endian). Unknown types are ignored, as the
NIP asks. Strings may exceed bech32's 90-character cap (see ``bech32.MAX_LENGTH``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dvmkit.errors import Bech32Error
from dvmkit.nostr import bech32
from dvmkit.nostr.keys import is_hex64

_SPECIAL, _RELAY, _AUTHOR, _KIND = 0, 1, 2, 3
MAX_TLV_STRING = 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """``nprofile``: a public key and relays where it can be found."""

    pubkey: str
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventPointer:
    """``nevent``: an event id with optional relays, author and kind hints."""

    id: str
    relays: tuple[str, ...] = ()
    author: str | None = None
    kind: int | None = None


@dataclass(frozen=True, slots=True)
class AddressPointer:
    """``naddr``: an addressable (or replaceable) event by kind, author and ``d`` identifier."""

    identifier: str
    pubkey: str
    kind: int
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decoded:
    """The result of :func:`decode`: ``kind`` is the prefix; ``value`` is hex or a pointer."""

    kind: str
    value: str | Profile | EventPointer | AddressPointer


def _hex32(name: str, value: str) -> bytes:
    if not is_hex64(value):
        raise Bech32Error(f"{name} must be 64 lowercase hex characters")
    return bytes.fromhex(value)


def _tlv(type_: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise Bech32Error("a TLV value is at most 255 bytes")
    return bytes((type_, len(value))) + value


def _relays_tlv(relays: tuple[str, ...]) -> bytes:
    out = b""
    for relay in relays:
        if not relay.isascii():
            raise Bech32Error("relay URLs in NIP-19 TLV must be ASCII")
        out += _tlv(_RELAY, relay.encode())
    return out


def encode_npub(pubkey: str) -> str:
    return bech32.encode("npub", _hex32("pubkey", pubkey))


def encode_note(event_id: str) -> str:
    return bech32.encode("note", _hex32("event id", event_id))


def encode_nsec(secret_hex: str) -> str:
    return bech32.encode("nsec", _hex32("secret", secret_hex))


def encode_nprofile(profile: Profile) -> str:
    data = _tlv(_SPECIAL, _hex32("pubkey", profile.pubkey)) + _relays_tlv(profile.relays)
    return bech32.encode("nprofile", data)


def encode_nevent(pointer: EventPointer) -> str:
    data = _tlv(_SPECIAL, _hex32("event id", pointer.id)) + _relays_tlv(pointer.relays)
    if pointer.author is not None:
        data += _tlv(_AUTHOR, _hex32("author", pointer.author))
    if pointer.kind is not None:
        data += _tlv(_KIND, _kind_bytes(pointer.kind))
    return bech32.encode("nevent", data)


def encode_naddr(pointer: AddressPointer) -> str:
    data = (
        _tlv(_SPECIAL, pointer.identifier.encode())
        + _relays_tlv(pointer.relays)
        + _tlv(_AUTHOR, _hex32("pubkey", pointer.pubkey))
        + _tlv(_KIND, _kind_bytes(pointer.kind))
    )
    return bech32.encode("naddr", data)


def _kind_bytes(kind: int) -> bytes:
    if type(kind) is not int or not 0 <= kind < 2**32:
        raise Bech32Error("kind must be an integer in [0, 2^32)")
    return kind.to_bytes(4, "big")


def _parse_tlv(data: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise Bech32Error("TLV data is truncated")
        type_, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise Bech32Error("TLV value is truncated")
        out.setdefault(type_, []).append(value)
        i += 2 + length
    return out


def _one(tlv: dict[int, list[bytes]], type_: int, what: str, size: int | None) -> bytes:
    values = tlv.get(type_)
    if not values:
        raise Bech32Error(f"missing {what}")
    value = values[0]
    if size is not None and len(value) != size:
        raise Bech32Error(f"{what} must be {size} bytes")
    return value


def _optional(tlv: dict[int, list[bytes]], type_: int, what: str, size: int) -> bytes | None:
    values = tlv.get(type_)
    return _one(tlv, type_, what, size) if values else None


def _relays(tlv: dict[int, list[bytes]]) -> tuple[str, ...]:
    relays = []
    for raw in tlv.get(_RELAY, []):
        try:
            relays.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise Bech32Error("relay URL in TLV is not ASCII") from None
    return tuple(relays)


def decode(text: str) -> Decoded:
    """Decode any NIP-19 entity (a ``nostr:`` URI prefix, NIP-21, is accepted).

    Raises:
        Bech32Error: bad bech32, an unknown prefix, or a missing or malformed field.
    """
    if not isinstance(text, str):
        raise Bech32Error("NIP-19 input must be a string")
    text = text.strip()
    if text.lower().startswith("nostr:"):
        text = text[6:]
    if len(text) > MAX_TLV_STRING:
        raise Bech32Error(f"NIP-19 strings are limited to {MAX_TLV_STRING} characters")
    hrp, data = bech32.decode(text)
    if hrp in ("npub", "nsec", "note"):
        if len(data) != 32:
            raise Bech32Error(f"{hrp} must hold 32 bytes, got {len(data)}")
        return Decoded(hrp, data.hex())
    if hrp not in ("nprofile", "nevent", "naddr"):
        raise Bech32Error(f"unknown NIP-19 prefix {hrp!r}")
    tlv = _parse_tlv(data)
    relays = _relays(tlv)
    if hrp == "nprofile":
        return Decoded(hrp, Profile(_one(tlv, _SPECIAL, "pubkey", 32).hex(), relays))
    if hrp == "nevent":
        author = _optional(tlv, _AUTHOR, "author", 32)
        kind = _optional(tlv, _KIND, "kind", 4)
        return Decoded(
            hrp,
            EventPointer(
                _one(tlv, _SPECIAL, "event id", 32).hex(),
                relays,
                author.hex() if author is not None else None,
                int.from_bytes(kind, "big") if kind is not None else None,
            ),
        )
    try:
        identifier = _one(tlv, _SPECIAL, "identifier", None).decode("utf-8")
    except UnicodeDecodeError:
        raise Bech32Error("naddr identifier is not UTF-8") from None
    return Decoded(
        hrp,
        AddressPointer(
            identifier,
            _one(tlv, _AUTHOR, "author", 32).hex(),
            int.from_bytes(_one(tlv, _KIND, "kind", 4), "big"),
            relays,
        ),
    )


def encode(value: Decoded) -> str:
    """Encode a :class:`Decoded` value back to text (inverse of :func:`decode`)."""
    v = value.value
    if isinstance(v, str):
        if value.kind not in ("npub", "nsec", "note"):
            raise Bech32Error(f"cannot encode a plain value as {value.kind!r}")
        return bech32.encode(value.kind, _hex32(value.kind, v))
    if isinstance(v, Profile):
        return encode_nprofile(v)
    if isinstance(v, EventPointer):
        return encode_nevent(v)
    return encode_naddr(v)
