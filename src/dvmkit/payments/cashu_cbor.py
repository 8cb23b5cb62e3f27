"""The CBOR subset Cashu V4 tokens use (RFC 8949): unsigned integers, byte strings, text
strings, arrays and maps, all of definite length.

Why not a dependency: a V4 token needs exactly these five major types, and a strict decoder
that refuses everything else (floats, tags, negative and indefinite-length items, trailing
bytes, nesting past a small depth) is both short and a smaller attack surface for bytes that
arrive from strangers. ``cbor2`` would accept far more than a token may contain.

Pure. Decoding raises :class:`CborError` (a ``ValueError``) for anything outside the subset.
"""

from __future__ import annotations

from typing import TypeAlias

#: A decoded value: what the five major types map to in Python.
Value: TypeAlias = "int | bytes | str | list[Value] | dict[Value, Value]"

MAX_DEPTH = 8  # a V4 token nests 5 deep (map → array → map → array → map)
_UINT, _BYTES, _TEXT, _ARRAY, _MAP = 0, 2, 3, 4, 5


class CborError(ValueError):
    """Bytes outside the CBOR subset a Cashu token uses, or malformed."""


def dumps(value: Value) -> bytes:
    """Encode ``value`` (ints >= 0 below 2^64, bytes, str, lists, dicts; shortest heads)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _head(major: int, argument: int, out: bytearray) -> None:
    if argument < 24:
        out.append(major << 5 | argument)
    elif argument < 1 << 8:
        out += bytes((major << 5 | 24, argument))
    elif argument < 1 << 16:
        out.append(major << 5 | 25)
        out += argument.to_bytes(2, "big")
    elif argument < 1 << 32:
        out.append(major << 5 | 26)
        out += argument.to_bytes(4, "big")
    elif argument < 1 << 64:
        out.append(major << 5 | 27)
        out += argument.to_bytes(8, "big")
    else:
        raise CborError("integer too large for CBOR")


def _encode(value: Value, out: bytearray) -> None:
    if isinstance(value, bool):  # bool is an int in Python, and not in this subset
        raise CborError("booleans are not in the token subset")
    if isinstance(value, int):
        if value < 0:
            raise CborError("negative integers are not in the token subset")
        _head(_UINT, value, out)
    elif isinstance(value, bytes):
        _head(_BYTES, len(value), out)
        out += value
    elif isinstance(value, str):
        data = value.encode()
        _head(_TEXT, len(data), out)
        out += data
    elif isinstance(value, list):
        _head(_ARRAY, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _head(_MAP, len(value), out)
        for key, item in value.items():
            _encode(key, out)
            _encode(item, out)
    else:
        raise CborError(f"cannot encode {type(value).__name__}")


def loads(data: bytes) -> Value:
    """Decode one item that spans all of ``data``.

    Raises:
        CborError: a type outside the subset, a truncated item, trailing bytes, too deep.
    """
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise CborError("trailing bytes after the CBOR item")
    return value


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    if info < 24:
        return info, pos
    if info > 27:  # 28-30 reserved, 31 indefinite length: neither is in the subset
        raise CborError("indefinite lengths and reserved values are not in the token subset")
    size = 1 << (info - 24)
    if pos + size > len(data):
        raise CborError("truncated CBOR")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise CborError("CBOR nested too deep")
    if pos >= len(data):
        raise CborError("truncated CBOR")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    argument, pos = _argument(data, pos + 1, info)
    if major == _UINT:
        return argument, pos
    if major in (_BYTES, _TEXT):
        if argument > len(data) - pos:
            raise CborError("truncated CBOR")
        raw = data[pos : pos + argument]
        if major == _BYTES:
            return raw, pos + argument
        try:
            return raw.decode(), pos + argument
        except UnicodeDecodeError:
            raise CborError("CBOR text is not UTF-8") from None
    if major == _ARRAY:
        if argument > len(data) - pos:  # each item takes at least one byte
            raise CborError("truncated CBOR")
        items: list[Value] = []
        for _ in range(argument):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == _MAP:
        if argument > (len(data) - pos) // 2:
            raise CborError("truncated CBOR")
        mapping: dict[Value, Value] = {}
        for _ in range(argument):
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, str | int | bytes):
                raise CborError("CBOR map keys must be strings, bytes or integers")
            if key in mapping:
                raise CborError("duplicate CBOR map key")
            mapping[key], pos = _decode(data, pos, depth + 1)
        return mapping, pos
    raise CborError(f"CBOR major type {major} is not in the token subset")
