"""NIP-47 (Nostr Wallet Connect) values, connection URIs and the JSON codec, no I/O.

Kinds: 13194 info (replaceable; content = space-separated methods, tags ``encryption`` and
``notifications``), 23194 request, 23195 response, 23197 notification (NIP-44), 23196
notification (NIP-04, legacy). A request carries ``["p", wallet]`` and, for NIP-44,
``["encryption", "nip44_v2"]``; without that tag the content is NIP-04. Bodies are
``{"method", "params"}`` and ``{"result_type", "error": {"code", "message"} | null, "result"}``.
All amounts are millisatoshis (SPECS.md §4.5).

Both the client (:mod:`dvmkit.payments.nwc`) and the dev wallet service
(:mod:`dvmkit.payments.devwallet`) speak through this module, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import orjson

from dvmkit.errors import DecryptionError, EncryptionError, InvalidKey, PaymentError
from dvmkit.nostr import nip04, nip44
from dvmkit.nostr.keys import Keys, is_hex64

INFO = 13194
REQUEST = 23194
RESPONSE = 23195
NOTIFICATION_NIP04 = 23196
NOTIFICATION = 23197
NIP44: Final = "nip44_v2"
NIP04: Final = "nip04"
Encryption = Literal["nip44_v2", "nip04"]
SCHEME = "nostr+walletconnect"
# Responses and notifications are a few hundred bytes; a wallet sending more is broken or
# hostile, and we refuse before spending time decrypting it. Below the 64 KiB event limit of
# common relays, so the check is reachable (list_transactions, if added, pages below it).
MAX_CONTENT = 48 * 1024

#: Codes dvmkit's client uses for failures that never reached a wallet's answer.
TIMEOUT = "TIMEOUT"
BAD_RESPONSE = "BAD_RESPONSE"
NOT_SENT = "NOT_SENT"


class WalletError(PaymentError):
    """A wallet answered with an error, or its answer could not be used.

    Attributes:
        code: a NIP-47 code (``INSUFFICIENT_BALANCE``, ``NOT_FOUND``, ...) when the wallet
            said so, else ``TIMEOUT`` (no answer in time), ``BAD_RESPONSE`` (an answer that
            does not decrypt or parse) or ``NOT_SENT`` (no relay took the request).
        message: the wallet's human-readable message, or ours.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidURI(PaymentError):
    """A ``nostr+walletconnect://`` URI that does not parse. Never quotes the secret."""


# -- connection URIs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionURI:
    """A parsed NWC connection URI.

    The client secret is held as :class:`~dvmkit.nostr.keys.Keys`, whose ``repr`` shows only the
    public key; ``str()`` and ``repr()`` of this value never contain the secret. Only
    :meth:`reveal` rebuilds the full URI.
    """

    wallet: str
    relays: tuple[str, ...]
    keys: Keys = field(repr=False)
    lud16: str | None = None

    @property
    def client(self) -> str:
        """The client's public key (the one the wallet knows this connection by)."""
        return self.keys.public_key

    @classmethod
    def parse(cls, text: str) -> ConnectionURI:
        """Parse ``nostr+walletconnect://<wallet>?relay=...&secret=...[&lud16=...]``.

        Raises:
            InvalidURI: wrong scheme, a wallet key that is not 64 hex characters, no relay or
                a relay that is not ``ws(s)://``, or a missing or invalid secret. The message
                never contains the secret or the URI.
        """
        if not isinstance(text, str):
            raise InvalidURI("an NWC connection URI must be text")
        parts = urlsplit(text.strip())
        if parts.scheme.lower() != SCHEME:
            raise InvalidURI(f"an NWC connection URI starts with {SCHEME}://")
        wallet = (parts.netloc or parts.path.lstrip("/")).lower()
        if not is_hex64(wallet):
            raise InvalidURI("the wallet public key in the URI is not 64 hex characters")
        params = parse_qsl(parts.query, keep_blank_values=True)
        relays = tuple(v for k, v in params if k == "relay")
        if not relays:
            raise InvalidURI("the URI names no relay (relay=...)")
        for relay in relays:
            if not relay.startswith(("ws://", "wss://")):
                raise InvalidURI(f"relay {relay!r} is not a ws:// or wss:// URL")
        secrets = [v for k, v in params if k == "secret"]
        if len(secrets) != 1:
            raise InvalidURI("the URI must carry exactly one secret=")
        try:
            keys = Keys.parse(secrets[0])
        except InvalidKey:
            raise InvalidURI("the URI's secret is not a valid 32-byte hex key") from None
        lud16 = next((v for k, v in params if k == "lud16"), None) or None
        return cls(wallet=wallet, relays=relays, keys=keys, lud16=lud16)

    def reveal(self) -> str:
        """The full URI, secret included. Reveals the secret: do not log it."""
        query = "&".join(f"relay={quote(r, safe='')}" for r in self.relays)
        query += f"&secret={self.keys.secret_hex()}"
        if self.lud16:
            query += f"&lud16={quote(self.lud16, safe='@')}"
        return f"{SCHEME}://{self.wallet}?{query}"


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transaction:
    """An invoice or payment as NIP-47 reports it (make_invoice, lookup_invoice, notifications).

    ``state`` is ``pending``, ``settled``, ``expired``, ``failed`` or ``accepted`` when the
    wallet says; older wallets leave it out and only set ``settled_at``.
    """

    type: str
    payment_hash: str
    amount_msat: int
    invoice: str | None = None
    state: str | None = None
    description: str | None = None
    description_hash: str | None = None
    preimage: str | None = None
    fees_paid_msat: int = 0
    created_at: int | None = None
    expires_at: int | None = None
    settled_at: int | None = None

    @property
    def settled(self) -> bool:
        """True when the wallet reports the payment complete."""
        if self.state is not None:
            return self.state == "settled"
        return self.settled_at is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "payment_hash": self.payment_hash,
            "amount": self.amount_msat,
            "fees_paid": self.fees_paid_msat,
        }
        optional = {
            "invoice": self.invoice,
            "state": self.state,
            "description": self.description,
            "description_hash": self.description_hash,
            "preimage": self.preimage,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "settled_at": self.settled_at,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data

    @classmethod
    def from_dict(cls, data: object) -> Transaction:
        """Read a transaction object, checking every field's type.

        Raises:
            WalletError: ``BAD_RESPONSE`` naming the field that is missing or wrong.
        """
        obj = _object(data, "result")
        return cls(
            type=_str(obj, "type") or "incoming",
            payment_hash=_required_str(obj, "payment_hash"),
            amount_msat=_required_int(obj, "amount"),
            invoice=_str(obj, "invoice"),
            state=_str(obj, "state"),
            description=_str(obj, "description"),
            description_hash=_str(obj, "description_hash"),
            preimage=_str(obj, "preimage"),
            fees_paid_msat=_int(obj, "fees_paid") or 0,
            created_at=_int(obj, "created_at"),
            expires_at=_int(obj, "expires_at"),
            settled_at=_int(obj, "settled_at"),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    """The result of ``pay_invoice``: the preimage proves the payment."""

    preimage: str
    fees_paid_msat: int = 0


@dataclass(frozen=True, slots=True)
class Balance:
    """The result of ``get_balance``."""

    msat: int

    @property
    def sat(self) -> int:
        return self.msat // 1000


@dataclass(frozen=True, slots=True)
class WalletInfo:
    """The result of ``get_info``."""

    methods: tuple[str, ...]
    notifications: tuple[str, ...] = ()
    alias: str | None = None
    pubkey: str | None = None
    network: str | None = None
    block_height: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A wallet notification: ``payment_received`` or ``payment_sent`` with its transaction."""

    type: str
    transaction: Transaction


# -- codec ------------------------------------------------------------------------------------


def encrypt(keys: Keys, peer: str, plaintext: str, scheme: Encryption) -> str:
    """Encrypt a body for ``peer`` with NIP-44 v2 or NIP-04."""
    if scheme == NIP44:
        return nip44.encrypt_to(keys, peer, plaintext)
    return nip04.encrypt(keys, peer, plaintext)


def decrypt(keys: Keys, peer: str, payload: str, scheme: Encryption) -> str:
    """Decrypt a body from ``peer``.

    Raises:
        WalletError: ``BAD_RESPONSE`` for an oversized, malformed or forged payload.
    """
    if len(payload) > MAX_CONTENT:
        raise WalletError(BAD_RESPONSE, f"content is larger than {MAX_CONTENT} bytes")
    try:
        if scheme == NIP44:
            return nip44.decrypt_from(keys, peer, payload)
        return nip04.decrypt(keys, peer, payload)
    except (DecryptionError, EncryptionError, InvalidKey) as exc:
        raise WalletError(BAD_RESPONSE, f"content does not decrypt ({scheme}): {exc}") from None


def request_body(method: str, params: Mapping[str, Any]) -> str:
    return orjson.dumps({"method": method, "params": dict(params)}).decode()


def parse_request(text: str) -> tuple[str, dict[str, Any]]:
    """Read a request body (wallet side).

    Raises:
        WalletError: ``OTHER`` for a body that is not ``{"method": str, "params": object}``.
    """
    data = _json(text, code="OTHER")
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        raise WalletError("OTHER", "a request is an object with a string 'method'")
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise WalletError("OTHER", "a request's 'params' must be an object")
    return data["method"], params


def response_body(
    method: str, *, result: Mapping[str, Any] | None = None, error: WalletError | None = None
) -> str:
    err = None if error is None else {"code": error.code, "message": error.message}
    return orjson.dumps(
        {"result_type": method, "error": err, "result": None if result is None else dict(result)}
    ).decode()


def parse_response(text: str, *, method: str) -> dict[str, Any]:
    """Read a response body and return its ``result`` object.

    Raises:
        WalletError: the wallet's own code and message for an error response, or
            ``BAD_RESPONSE`` for a body that is not JSON, answers another method, or has no
            result object.
    """
    data = _json(text, code=BAD_RESPONSE)
    if not isinstance(data, dict):
        raise WalletError(BAD_RESPONSE, "a response must be a JSON object")
    error = data.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise WalletError(BAD_RESPONSE, "a response's 'error' must be an object or null")
        code, message = error.get("code"), error.get("message")
        if not isinstance(code, str) or not code or len(code) > 64:
            raise WalletError(BAD_RESPONSE, "an error response has no string 'code'")
        text_message = message if isinstance(message, str) else "(no message)"
        raise WalletError(code, text_message[:1000])
    if data.get("result_type") != method:
        raise WalletError(
            BAD_RESPONSE, f"a response to {method} has result_type {data.get('result_type')!r}"
        )
    result = data.get("result")
    if not isinstance(result, dict):
        raise WalletError(BAD_RESPONSE, "a successful response must have a 'result' object")
    return result


def notification_body(kind: str, transaction: Transaction) -> str:
    return orjson.dumps({"notification_type": kind, "notification": transaction.to_dict()}).decode()


def parse_notification(text: str) -> Notification:
    """Read a notification body.

    Raises:
        WalletError: ``BAD_RESPONSE`` for anything but a typed transaction notification.
    """
    data = _json(text, code=BAD_RESPONSE)
    if not isinstance(data, dict) or not isinstance(data.get("notification_type"), str):
        raise WalletError(BAD_RESPONSE, "a notification has a string 'notification_type'")
    return Notification(data["notification_type"], Transaction.from_dict(data.get("notification")))


def payment_from_result(result: Mapping[str, Any]) -> Payment:
    return Payment(
        preimage=_required_str(result, "preimage"), fees_paid_msat=_int(result, "fees_paid") or 0
    )


def balance_from_result(result: Mapping[str, Any]) -> Balance:
    return Balance(_required_int(result, "balance"))


def info_from_result(result: Mapping[str, Any]) -> WalletInfo:
    return WalletInfo(
        methods=_str_list(result, "methods"),
        notifications=_str_list(result, "notifications"),
        alias=_str(result, "alias"),
        pubkey=_str(result, "pubkey"),
        network=_str(result, "network"),
        block_height=_int(result, "block_height"),
    )


def _json(text: str, *, code: str) -> Any:
    if len(text) > MAX_CONTENT:
        raise WalletError(code, f"body is larger than {MAX_CONTENT} bytes")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise WalletError(code, "body is not valid JSON") from None


def _object(data: object, name: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise WalletError(BAD_RESPONSE, f"{name} must be an object")
    return data


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise WalletError(BAD_RESPONSE, f"{key!r} must be a string")
    return value


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = _str(obj, key)
    if not value:
        raise WalletError(BAD_RESPONSE, f"{key!r} is missing")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    # bool is an int subclass: JSON true is not an amount.
    if value is not None and (type(value) is not int or value < 0):
        raise WalletError(BAD_RESPONSE, f"{key!r} must be a non-negative integer")
    return value


def _required_int(obj: Mapping[str, Any], key: str) -> int:
    value = _int(obj, key)
    if value is None:
        raise WalletError(BAD_RESPONSE, f"{key!r} is missing")
    return value


def _str_list(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WalletError(BAD_RESPONSE, f"{key!r} must be a list of strings")
    return tuple(value)
