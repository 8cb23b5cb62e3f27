"""NIP-01 relay-to-client messages parsed into typed values, and client messages encoded.

Every frame a relay sends is untrusted: :func:`parse_relay_message` checks the shape of each
message type and raises :class:`~dvmkit.errors.ProtocolError` with a precise reason for
anything else. Events inside ``EVENT`` messages are *not* verified here (the connection does
that, so it can count invalid events per relay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import is_hex64


@dataclass(frozen=True, slots=True)
class EventMsg:
    """``["EVENT", sub_id, event]``; ``event`` is the undecoded, unverified JSON object."""

    sub_id: str
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OkMsg:
    """``["OK", event_id, accepted, message]`` (NIP-01, NIP-20)."""

    event_id: str
    accepted: bool
    message: str

    @property
    def prefix(self) -> str:
        return message_prefix(self.message)


@dataclass(frozen=True, slots=True)
class EoseMsg:
    """``["EOSE", sub_id]``: the relay has sent every stored event that matches."""

    sub_id: str


@dataclass(frozen=True, slots=True)
class ClosedMsg:
    """``["CLOSED", sub_id, message]``: the relay ended (or refused) a subscription."""

    sub_id: str
    message: str

    @property
    def prefix(self) -> str:
        return message_prefix(self.message)


@dataclass(frozen=True, slots=True)
class NoticeMsg:
    """``["NOTICE", message]``: human-readable, for logs only."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthMsg:
    """``["AUTH", challenge]`` (NIP-42)."""

    challenge: str


@dataclass(frozen=True, slots=True)
class CountMsg:
    """``["COUNT", sub_id, {"count": n, "approximate"?: bool}]`` (NIP-45)."""

    sub_id: str
    count: int
    approximate: bool = False


RelayMessage = EventMsg | OkMsg | EoseMsg | ClosedMsg | NoticeMsg | AuthMsg | CountMsg


def message_prefix(message: str) -> str:
    """The machine-readable prefix of an OK/CLOSED message (``"rate-limited"``), or ``""``.

    NIP-01 defines ``duplicate``, ``pow``, ``blocked``, ``rate-limited``, ``invalid``,
    ``restricted``, ``mute`` and ``error``; NIP-42 adds ``auth-required``.
    """
    head, sep, _ = message.partition(":")
    if not sep or " " in head or len(head) > 32:
        return ""
    return head


def parse_relay_message(raw: str | bytes) -> RelayMessage:
    """Decode one websocket frame from a relay.

    Raises:
        ProtocolError: the frame is not JSON, not an array, of an unknown type, or a field
            has the wrong type.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"relay sent invalid JSON: {exc}") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ProtocolError("relay message must be a JSON array starting with a type string")
    kind = data[0]
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(f"unknown relay message type {kind[:32]!r}")
    return parser(data)


def _need(data: list[Any], n: int) -> None:
    if len(data) < n:
        raise ProtocolError(f"{data[0]} message needs {n - 1} fields, got {len(data) - 1}")


def _sub(data: list[Any]) -> str:
    sub_id = data[1]
    if not isinstance(sub_id, str):
        raise ProtocolError(f"{data[0]} subscription id must be a string")
    return sub_id


def _text(data: list[Any], index: int) -> str:
    value = data[index] if len(data) > index else ""
    if not isinstance(value, str):
        raise ProtocolError(f"{data[0]} message field {index} must be a string")
    return value


def _event(data: list[Any]) -> EventMsg:
    _need(data, 3)
    if not isinstance(data[2], dict):
        raise ProtocolError("EVENT message must carry a JSON object")
    return EventMsg(_sub(data), data[2])


def _ok(data: list[Any]) -> OkMsg:
    _need(data, 3)
    if not is_hex64(data[1]):
        raise ProtocolError("OK message event id must be 64 lowercase hex characters")
    if not isinstance(data[2], bool):
        raise ProtocolError("OK message status must be true or false")
    # NIP-01 makes the message mandatory, but older relays omit it: tolerate that.
    return OkMsg(data[1], data[2], _text(data, 3))


def _eose(data: list[Any]) -> EoseMsg:
    _need(data, 2)
    return EoseMsg(_sub(data))


def _closed(data: list[Any]) -> ClosedMsg:
    _need(data, 2)
    return ClosedMsg(_sub(data), _text(data, 2))


def _notice(data: list[Any]) -> NoticeMsg:
    return NoticeMsg(_text(data, 1))


def _auth(data: list[Any]) -> AuthMsg:
    _need(data, 2)
    return AuthMsg(_text(data, 1))


def _count(data: list[Any]) -> CountMsg:
    _need(data, 3)
    body = data[2]
    if not isinstance(body, dict):
        raise ProtocolError("COUNT message must carry a JSON object")
    count = body.get("count")
    if type(count) is not int or count < 0:
        raise ProtocolError("COUNT 'count' must be a non-negative integer")
    return CountMsg(_sub(data), count, body.get("approximate") is True)


_PARSERS: dict[str, Callable[[list[Any]], RelayMessage]] = {
    "EVENT": _event,
    "OK": _ok,
    "EOSE": _eose,
    "CLOSED": _closed,
    "NOTICE": _notice,
    "AUTH": _auth,
    "COUNT": _count,
}


# -- client to relay -------------------------------------------------------------------------


def encode_event(event: Event) -> bytes:
    """``["EVENT", event]``."""
    return b'["EVENT",' + event.to_json_bytes() + b"]"


def encode_req(sub_id: str, filters: Iterable[Filter]) -> bytes:
    """``["REQ", sub_id, filter...]``."""
    return orjson.dumps(["REQ", sub_id, *(f.to_dict() for f in filters)])


def encode_count(sub_id: str, filters: Iterable[Filter]) -> bytes:
    """``["COUNT", sub_id, filter...]`` (NIP-45)."""
    return orjson.dumps(["COUNT", sub_id, *(f.to_dict() for f in filters)])


def encode_close(sub_id: str) -> bytes:
    """``["CLOSE", sub_id]``."""
    return orjson.dumps(["CLOSE", sub_id])


def encode_auth(event: Event) -> bytes:
    """``["AUTH", event]`` (NIP-42)."""
    return b'["AUTH",' + event.to_json_bytes() + b"]"
