"""Cashu proofs and tokens (NUT-00): the values, and the V3 (``cashuA``) and V4 (``cashuB``)
serializations.

- V3: ``cashuA`` + urlsafe base64 of JSON ``{"token": [{"mint", "proofs": [{"amount", "id",
  "secret", "C"}]}], "unit", "memo"}``.
- V4: ``cashuB`` + urlsafe base64 of CBOR ``{"t": [{"i": id bytes, "p": [{"a", "s", "c":
  point bytes}]}], "d": memo, "m": mint url, "u": unit}``.

Both are read with or without base64 padding and a ``cashu:`` URI prefix. Decoding is strict
and bounded: anything that is not a well-typed token from one mint, with positive amounts,
hex keyset ids, compressed points and sizes within the limits below, raises
:class:`~dvmkit.payments.cashu_errors.InvalidToken` — and the message never quotes the token.

A token is a bearer instrument: :class:`Proof` keeps ``secret`` out of its repr, and neither
class has a ``__str__`` that serializes it; call :func:`encode_token` on purpose.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from dvmkit.payments import cashu_cbor
from dvmkit.payments.cashu_errors import InvalidToken

MAX_TOKEN_LENGTH = 256 * 1024  # characters; a 1,000-proof V3 token is ~200 KiB
MAX_PROOFS = 1000  # nutshell's own batch limit
MAX_AMOUNT = (1 << 64) - 1  # amounts are uint64 on the wire
MAX_SECRET_LENGTH = 2048  # a NUT-10 secret is a short JSON array; a plain one 64 hex chars
MAX_TEXT_LENGTH = 4096  # mint URL, unit, memo
PREFIX_V3, PREFIX_V4 = "cashuA", "cashuB"
_HEX_ID = re.compile(r"(?:[0-9a-f]{16}|[0-9a-f]{66})")
_HEX_POINT = re.compile(r"0[23][0-9a-f]{64}")
_UNIT = re.compile(r"[a-z0-9_-]{1,32}")


@dataclass(frozen=True, slots=True)
class Proof:
    """One ecash note: ``amount`` signed by keyset ``keyset_id``; ``C`` the unblinded signature
    on ``secret``. Whoever knows ``(secret, C)`` can spend it, so ``secret`` is not in the repr.
    """

    amount: int
    keyset_id: str
    secret: str = field(repr=False)
    C: str

    def to_json(self) -> dict[str, Any]:
        """The NUT-00 ``Proof`` object, as the mint's API and V3 tokens carry it."""
        return {"amount": self.amount, "id": self.keyset_id, "secret": self.secret, "C": self.C}


@dataclass(frozen=True, slots=True)
class Token:
    """Proofs from one mint, with the unit and an optional memo (both only for display)."""

    mint: str
    proofs: tuple[Proof, ...]
    unit: str = "sat"
    memo: str | None = None

    @property
    def amount(self) -> int:
        return sum(p.amount for p in self.proofs)


def encode_token(token: Token, *, version: Literal[3, 4] = 4) -> str:
    """Serialize ``token`` as ``cashuA…`` (V3) or ``cashuB…`` (V4), unpadded urlsafe base64.

    Keyset ids are written as given (a wallet writes short ids for v2 keysets).
    """
    if version == 3:
        body: dict[str, Any] = {
            "token": [{"mint": token.mint, "proofs": [p.to_json() for p in token.proofs]}],
            "unit": token.unit,
        }
        if token.memo is not None:
            body["memo"] = token.memo
        return PREFIX_V3 + _b64(orjson.dumps(body))
    groups: dict[str, list[cashu_cbor.Value]] = {}
    for p in token.proofs:
        entry: dict[cashu_cbor.Value, cashu_cbor.Value] = {
            "a": p.amount,
            "s": p.secret,
            "c": bytes.fromhex(p.C),
        }
        groups.setdefault(p.keyset_id, []).append(entry)
    v4: dict[cashu_cbor.Value, cashu_cbor.Value] = {
        "t": [{"i": bytes.fromhex(kid), "p": entries} for kid, entries in groups.items()]
    }
    if token.memo is not None:
        v4["d"] = token.memo
    v4["m"] = token.mint
    v4["u"] = token.unit
    return PREFIX_V4 + _b64(cashu_cbor.dumps(v4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_token(text: str) -> Token:
    """Parse a V3 or V4 token string.

    Raises:
        InvalidToken: not a string, too long, an unknown prefix, bad base64, bad JSON/CBOR,
            wrong types, amounts that are not positive uint64, proofs from several mints,
            no proofs or too many.
    """
    if not isinstance(text, str):
        raise InvalidToken("a token must be a string")
    if len(text) > MAX_TOKEN_LENGTH:
        raise InvalidToken(f"token longer than {MAX_TOKEN_LENGTH} characters")
    text = text.strip()
    text = text.removeprefix("cashu:")
    prefix, payload = text[:6], text[6:]
    if prefix not in (PREFIX_V3, PREFIX_V4):
        raise InvalidToken("not a Cashu token: it must start with cashuA (V3) or cashuB (V4)")
    raw = _unb64(payload)
    if prefix == PREFIX_V3:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidToken("V3 token payload is not JSON") from None
        return _from_v3(body)
    try:
        value = cashu_cbor.loads(raw)
    except cashu_cbor.CborError as exc:
        raise InvalidToken(f"V4 token payload is not valid CBOR: {exc}") from None
    return _from_v4(value)


def _unb64(payload: str) -> bytes:
    if not payload or not payload.isascii():
        raise InvalidToken("token payload is empty or not base64")
    # Wallets write urlsafe base64, some with padding; accept the standard alphabet too.
    payload = payload.rstrip("=").replace("+", "-").replace("/", "_")
    if len(payload) % 4 == 1:
        raise InvalidToken("token payload is not base64 (bad length)")
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidToken("token payload is not base64") from None


def _from_v3(body: object) -> Token:
    if not isinstance(body, dict) or not isinstance(body.get("token"), list):
        raise InvalidToken("V3 token must be an object with a token list")
    entries = body["token"]
    if len(entries) != 1:
        raise InvalidToken("a token must hold proofs from exactly one mint")
    entry = entries[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("proofs"), list):
        raise InvalidToken("V3 token entry must have a mint and a proofs list")
    proofs = []
    for p in entry["proofs"]:
        if not isinstance(p, dict):
            raise InvalidToken("a V3 proof must be an object")
        proofs.append(_proof(p.get("amount"), p.get("id"), p.get("secret"), p.get("C")))
    return _token(entry.get("mint"), proofs, body.get("unit", "sat"), body.get("memo"))


def _from_v4(value: cashu_cbor.Value) -> Token:
    groups = value.get("t") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(groups, list):
        raise InvalidToken("V4 token must be a map with a t list")
    proofs = []
    for group in groups:
        entries = group.get("p") if isinstance(group, dict) else None
        if not isinstance(group, dict) or not isinstance(entries, list):
            raise InvalidToken("a V4 keyset entry must be a map with a p list")
        kid = group.get("i")
        if not isinstance(kid, bytes):
            raise InvalidToken("a V4 keyset id must be bytes")
        for p in entries:
            if not isinstance(p, dict):
                raise InvalidToken("a V4 proof must be a map")
            c = p.get("c")
            if not isinstance(c, bytes):
                raise InvalidToken("a V4 proof's c must be bytes")
            proofs.append(_proof(p.get("a"), kid.hex(), p.get("s"), c.hex()))
    return _token(value.get("m"), proofs, value.get("u", "sat"), value.get("d"))


def _proof(amount: object, keyset_id: object, secret: object, c: object) -> Proof:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidToken("a proof amount must be an integer")
    if not 0 < amount <= MAX_AMOUNT:
        raise InvalidToken("a proof amount must be positive and fit in 64 bits")
    if not isinstance(keyset_id, str) or not _HEX_ID.fullmatch(keyset_id):
        raise InvalidToken("a keyset id must be 16 or 66 lowercase hex characters")
    if not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET_LENGTH:
        raise InvalidToken(f"a proof secret must be a string of 1-{MAX_SECRET_LENGTH} chars")
    if not isinstance(c, str) or not _HEX_POINT.fullmatch(c):
        raise InvalidToken("a proof signature C must be a compressed point in hex")
    return Proof(amount=amount, keyset_id=keyset_id, secret=secret, C=c)


def _token(mint: object, proofs: list[Proof], unit: object, memo: object) -> Token:
    if not isinstance(mint, str) or not mint.startswith(("http://", "https://")):
        raise InvalidToken("a token's mint must be an http(s) URL")
    if len(mint) > MAX_TEXT_LENGTH:
        raise InvalidToken("a token's mint URL is too long")
    if not isinstance(unit, str) or not _UNIT.fullmatch(unit):
        raise InvalidToken("a token's unit must be a short lowercase name")
    if memo is not None and (not isinstance(memo, str) or len(memo) > MAX_TEXT_LENGTH):
        raise InvalidToken(f"a token's memo must be a string of at most {MAX_TEXT_LENGTH}")
    if not proofs:
        raise InvalidToken("a token must hold at least one proof")
    if len(proofs) > MAX_PROOFS:
        raise InvalidToken(f"a token may hold at most {MAX_PROOFS} proofs")
    if sum(p.amount for p in proofs) > MAX_AMOUNT:
        raise InvalidToken("a token's total amount overflows 64 bits")
    return Token(mint=normalize_mint_url(mint), proofs=tuple(proofs), unit=unit, memo=memo)


def normalize_mint_url(url: str) -> str:
    """The form mint URLs are compared in: no trailing slash (wallets differ on it)."""
    return url.rstrip("/")
