"""BOLT-11 Lightning invoices: encode with our own node key, decode with signature check.

A BOLT-11 invoice is bech32 without the 90-character cap: ``ln`` + currency (``bc``, ``tb``,
``tbs``, ``bcrt``) + an optional amount with a multiplier (``m`` ``u`` ``n`` ``p``), then a
35-bit timestamp, tagged fields (5-bit type, 10-bit length) and a 520-bit recoverable secp256k1
signature over ``sha256(hrp || data)`` (data padded to whole bytes). We read ``p`` (payment
hash), ``s`` (payment secret), ``d`` (description), ``h`` (description hash), ``x`` (expiry),
``n`` (payee), ``c`` (min_final_cltv_expiry) and ``9`` (features), and skip the rest, as
BOLT-11 says a reader must: unknown types, and ``p``/``h``/``s``/``n`` of the wrong length.

Pure: no I/O; the clock is an argument.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey

from dvmkit.errors import Bech32Error, PaymentError

# The word-level bech32 helpers: BOLT-11 data is 5-bit words, not whole bytes, so the byte
# API of dvmkit.nostr.bech32 cannot carry it.
from dvmkit.nostr.bech32 import convert_bits, decode_words, encode_words
from dvmkit.nostr.keys import is_hex64

# Far beyond any invoice a wallet makes (the longest spec example is ~600 characters) and
# still cheap to reject: a caller's oversized string fails before any work.
MAX_LENGTH = 7_089
DEFAULT_EXPIRY = 3600
DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18
NETWORKS = ("bcrt", "bc", "tbs", "tb")  # longest first: "lnbcrt" must not read as "lnbc"
_MSAT_PER_BTC = 100_000_000_000
# msat per unit of each multiplier; "p" is a tenth of a msat, handled on its own.
_MULTIPLIERS = {"m": 100_000_000, "u": 100_000, "n": 100}
_SIGNATURE_WORDS = 104  # 520 bits: 64-byte signature + recovery id
_TIMESTAMP_WORDS = 7  # 35 bits
_MAX_TIMESTAMP = (1 << 35) - 1
# BOLT-9 features that may appear in an invoice (both bits of each pair). A set even bit
# outside these is a feature we would be required to understand: BOLT-11 says fail.
_KNOWN_FEATURES = frozenset({8, 9, 14, 15, 16, 17, 48, 49})

_P, _S, _D, _H, _X, _N, _C, _FEATURES = 1, 16, 13, 23, 6, 19, 24, 5


class InvalidInvoice(PaymentError):
    """A BOLT-11 string that does not decode, or whose signature does not check out."""


@dataclass(frozen=True, slots=True)
class Invoice:
    """A decoded, signature-checked BOLT-11 invoice.

    Attributes:
        bolt11: the invoice text as given (lowercased).
        network: ``bc``, ``tb``, ``tbs`` or ``bcrt``.
        amount_msat: the amount asked for, or None for "any amount".
        timestamp: creation time, seconds since the epoch.
        payment_hash: 64 hex characters.
        payee: the signing node's 33-byte compressed public key, 66 hex characters.
        description: the ``d`` field, if any.
        description_hash: the ``h`` field as hex, if any.
        payment_secret: the ``s`` field as hex, if any.
        expiry: seconds after ``timestamp`` the invoice stays payable.
        min_final_cltv_expiry: the ``c`` field (18 when absent).
        features: the ``9`` field as an integer bit field (0 when absent).
    """

    bolt11: str
    network: str
    amount_msat: int | None
    timestamp: int
    payment_hash: str
    payee: str
    description: str | None = None
    description_hash: str | None = None
    payment_secret: str | None = None
    expiry: int = DEFAULT_EXPIRY
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY
    features: int = 0

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, *, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def preimage_matches(preimage: str | None, payment_hash: str) -> bool:
    """True when ``preimage`` is 64 lowercase hex characters whose sha256 is ``payment_hash``.

    The one check of a claimed preimage: the zap receipt verifier refuses a receipt that fails
    it, and the LNURL server leaves such a preimage out of the receipts it signs.
    """
    if not is_hex64(preimage):
        return False
    return hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash


# -- encode -----------------------------------------------------------------------------------


def encode(
    node_key: bytes,
    *,
    payment_hash: bytes,
    amount_msat: int | None,
    network: str = "bcrt",
    timestamp: int | None = None,
    description: str | None = None,
    description_hash: bytes | None = None,
    payment_secret: bytes | None = None,
    expiry: int | None = None,
    min_final_cltv_expiry: int | None = DEFAULT_MIN_FINAL_CLTV_EXPIRY,
    include_payee: bool = False,
    features: int = 0,
) -> str:
    """Build and sign a BOLT-11 invoice.

    Fields are written in the order ``p d h s x c n 9``, each with the shortest length.

    Args:
        node_key: the node's 32-byte secret key; its public key is the payee.
        payment_hash: sha256 of the preimage that pays the invoice (32 bytes).
        amount_msat: the amount, or None for an any-amount invoice; written in the shortest
            form BOLT-11 allows.
        network: ``bc``, ``tb``, ``tbs`` or ``bcrt`` (the dev wallet's default: regtest).
        timestamp: seconds since the epoch; now when omitted.
        description: the ``d`` field (BOLT-11 wants exactly one of ``d`` and ``h``).
        description_hash: the ``h`` field (32 bytes), e.g. sha256 of a NIP-57 zap request.
        payment_secret: the ``s`` field (32 bytes).
        expiry: the ``x`` field in seconds; omitted means 3600.
        min_final_cltv_expiry: the ``c`` field; None leaves it out (legacy invoices).
        include_payee: also write the ``n`` field (readers then need no key recovery).
        features: the ``9`` field as a bit field; 0 leaves it out.

    Returns:
        The invoice, lowercase.

    Raises:
        InvalidInvoice: a value out of range, or one that does not fit its field.
    """
    if network not in NETWORKS:
        raise InvalidInvoice(f"unknown network {network!r}; use one of {', '.join(NETWORKS)}")
    if len(payment_hash) != 32:
        raise InvalidInvoice("payment_hash must be 32 bytes")
    try:
        key = PrivateKey(node_key)
    except (ValueError, TypeError):
        raise InvalidInvoice("node_key is not a valid secp256k1 secret key") from None
    created = int(time.time()) if timestamp is None else timestamp
    if not 0 <= created <= _MAX_TIMESTAMP:
        raise InvalidInvoice("timestamp does not fit in 35 bits")
    hrp = "ln" + network + _amount_text(amount_msat)
    words = _int_words(created, _TIMESTAMP_WORDS)
    words += _field(_P, _bytes_words(payment_hash))
    if description is not None:
        words += _field(_D, _bytes_words(description.encode()))
    if description_hash is not None:
        if len(description_hash) != 32:
            raise InvalidInvoice("description_hash must be 32 bytes")
        words += _field(_H, _bytes_words(description_hash))
    if payment_secret is not None:
        if len(payment_secret) != 32:
            raise InvalidInvoice("payment_secret must be 32 bytes")
        words += _field(_S, _bytes_words(payment_secret))
    if expiry is not None:
        words += _field(_X, _minimal_words(_check_uint("expiry", expiry)))
    if min_final_cltv_expiry is not None:
        cltv = _check_uint("min_final_cltv_expiry", min_final_cltv_expiry)
        words += _field(_C, _minimal_words(cltv))
    if include_payee:
        words += _field(_N, _bytes_words(key.public_key.format(compressed=True)))
    if features:
        words += _field(_FEATURES, _minimal_words(_check_uint("features", features)))
    signature = key.sign_recoverable(_signing_message(hrp, words))
    words += _bytes_words(signature)
    return encode_words(hrp, words)


def _amount_text(amount_msat: int | None) -> str:
    if amount_msat is None:
        return ""
    if type(amount_msat) is not int or amount_msat <= 0:
        raise InvalidInvoice("amount_msat must be a positive integer (or None for any amount)")
    if amount_msat % _MSAT_PER_BTC == 0:
        return str(amount_msat // _MSAT_PER_BTC)
    for letter, unit in _MULTIPLIERS.items():
        if amount_msat % unit == 0:
            return f"{amount_msat // unit}{letter}"
    return f"{amount_msat * 10}p"


def _check_uint(name: str, value: int) -> int:
    if type(value) is not int or value < 0:
        raise InvalidInvoice(f"{name} must be a non-negative integer")
    return value


def _field(tag: int, data: list[int]) -> list[int]:
    if len(data) > 1023:
        raise InvalidInvoice("a tagged field holds at most 1023 words (639 bytes)")
    return [tag, len(data) >> 5, len(data) & 31, *data]


def _int_words(value: int, count: int) -> list[int]:
    return [(value >> (5 * (count - 1 - i))) & 31 for i in range(count)]


def _minimal_words(value: int) -> list[int]:
    count = max(1, (value.bit_length() + 4) // 5)
    return _int_words(value, count)


def _bytes_words(data: bytes) -> list[int]:
    return convert_bits(data, 8, 5, pad=True)


def _signing_message(hrp: str, words: list[int]) -> bytes:
    # BOLT-11: the hrp as UTF-8, then the data words up to the signature, zero-padded to bytes.
    return hrp.encode() + bytes(convert_bits(words, 5, 8, pad=True))


# -- decode -----------------------------------------------------------------------------------


def decode(text: str) -> Invoice:
    """Decode a BOLT-11 invoice and check its signature.

    A ``lightning:`` prefix is accepted. The payee is the ``n`` field when there is one (the
    signature must then recover to it), else the key recovered from the signature. Expiry is
    not checked here (see :meth:`Invoice.is_expired`): an expired invoice still decodes.

    Raises:
        InvalidInvoice: bad bech32 or checksum, unknown currency, malformed amount, missing
            payment hash, a non-UTF-8 description, an unknown required feature, or a signature
            that does not recover (to the ``n`` field, when present).
    """
    if not isinstance(text, str):
        raise InvalidInvoice("an invoice must be text")
    text = text.strip()
    if text[:10].lower() == "lightning:":
        text = text[10:]
    if len(text) > MAX_LENGTH:
        raise InvalidInvoice(f"invoice is longer than {MAX_LENGTH} characters")
    hrp, words = _bech32_decode(text)
    network, amount = _parse_hrp(hrp)
    if len(words) < _TIMESTAMP_WORDS + _SIGNATURE_WORDS:
        raise InvalidInvoice("invoice is too short to hold a timestamp and a signature")
    data, sig_words = words[:-_SIGNATURE_WORDS], words[-_SIGNATURE_WORDS:]
    fields = _parse_fields(data)
    signature = bytes(convert_bits(sig_words, 5, 8, pad=True))[:65]
    if signature[64] > 3:
        raise InvalidInvoice("signature recovery id must be 0-3")
    message = _signing_message(hrp, data)
    try:
        recovered = PublicKey.from_signature_and_message(signature, message)
    except (ValueError, TypeError):
        raise InvalidInvoice("signature is not recoverable") from None
    payee = recovered.format(compressed=True).hex()
    if fields.payee is not None and fields.payee != payee:
        raise InvalidInvoice("signature does not match the payee (n field)")
    if fields.payment_hash is None:
        raise InvalidInvoice("invoice has no payment hash (p field)")
    return Invoice(
        bolt11=text.lower(),
        network=network,
        amount_msat=amount,
        timestamp=_words_int(data[:_TIMESTAMP_WORDS]),
        payment_hash=fields.payment_hash,
        payee=payee,
        description=fields.description,
        description_hash=fields.description_hash,
        payment_secret=fields.payment_secret,
        expiry=fields.expiry,
        min_final_cltv_expiry=fields.min_final_cltv_expiry,
        features=fields.features,
    )


def _bech32_decode(text: str) -> tuple[str, list[int]]:
    try:
        hrp, words = decode_words(text, max_length=MAX_LENGTH)
    except Bech32Error as exc:
        raise InvalidInvoice(f"not a bech32 invoice: {exc}") from None
    if len(hrp) < 3:
        raise InvalidInvoice("invoice has no bech32 separator or is too short")
    return hrp, words


def _parse_hrp(hrp: str) -> tuple[str, int | None]:
    if not hrp.startswith("ln"):
        raise InvalidInvoice("not a Lightning invoice: the prefix must start with 'ln'")
    rest = hrp[2:]
    network = next((n for n in NETWORKS if rest.startswith(n)), None)
    if network is None:
        raise InvalidInvoice(f"unknown currency prefix {hrp!r}")
    amount = rest[len(network) :]
    if not amount:
        return network, None
    digits, letter = (amount[:-1], amount[-1]) if not amount[-1].isdigit() else (amount, "")
    if not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        raise InvalidInvoice(f"malformed amount {amount!r} (a positive number, no leading 0)")
    value = int(digits)
    if letter == "":
        return network, value * _MSAT_PER_BTC
    if letter == "p":
        if value % 10:
            raise InvalidInvoice("a pico-BTC amount must end in 0 (no sub-millisatoshi)")
        return network, value // 10
    if letter not in _MULTIPLIERS:
        raise InvalidInvoice(f"unknown amount multiplier {letter!r}")
    return network, value * _MULTIPLIERS[letter]


@dataclass(slots=True)
class _Fields:
    payment_hash: str | None = None
    payment_secret: str | None = None
    description: str | None = None
    description_hash: str | None = None
    payee: str | None = None
    expiry: int = DEFAULT_EXPIRY
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY
    features: int = 0


def _parse_fields(data: list[int]) -> _Fields:
    fields = _Fields()
    seen: set[int] = set()
    pos = _TIMESTAMP_WORDS
    while pos < len(data):
        if pos + 3 > len(data):
            raise InvalidInvoice("a tagged field is cut short")
        tag, length = data[pos], data[pos + 1] << 5 | data[pos + 2]
        value = data[pos + 3 : pos + 3 + length]
        if len(value) != length:
            raise InvalidInvoice("a tagged field is longer than the invoice")
        pos += 3 + length
        # Fixed-size fields of another length are skipped (BOLT-11: future variants); of the
        # rest, the first of each kind counts ("the most-preferred field first").
        if tag in seen:
            continue
        if tag in (_P, _S, _H) and length == 52:
            hex_value = _words_bytes(value, 32).hex()
            if tag == _P:
                fields.payment_hash = hex_value
            elif tag == _S:
                fields.payment_secret = hex_value
            else:
                fields.description_hash = hex_value
        elif tag == _N and length == 53:
            fields.payee = _words_bytes(value, 33).hex()
        elif tag == _D:
            try:
                fields.description = _words_bytes(value, len(value) * 5 // 8).decode()
            except UnicodeDecodeError:
                raise InvalidInvoice("description (d field) is not valid UTF-8") from None
        elif tag == _X:
            fields.expiry = _words_int(value)
        elif tag == _C:
            fields.min_final_cltv_expiry = _words_int(value)
        elif tag == _FEATURES:
            fields.features = _check_features(_words_int(value))
        else:
            continue
        seen.add(tag)
    return fields


def _check_features(bits: int) -> int:
    unknown_even = [i for i in range(0, bits.bit_length(), 2) if bits >> i & 1]
    required = [i for i in unknown_even if i not in _KNOWN_FEATURES]
    if required:
        raise InvalidInvoice(f"invoice requires unknown feature bit {required[0]}")
    return bits


def _words_int(words: list[int]) -> int:
    value = 0
    for word in words:
        value = value << 5 | word
    return value


def _words_bytes(words: list[int], size: int) -> bytes:
    try:
        data = bytes(convert_bits(words, 5, 8, pad=False))
    except Bech32Error:
        raise InvalidInvoice("a tagged field has non-zero padding bits") from None
    return data[:size]
