"""Relay-to-client messages parsed into typed values; client messages encoded."""

from __future__ import annotations

import orjson
import pytest

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.messages import (
    AuthMsg,
    ClosedMsg,
    CountMsg,
    EoseMsg,
    EventMsg,
    NoticeMsg,
    OkMsg,
    encode_auth,
    encode_close,
    encode_count,
    encode_event,
    encode_req,
    message_prefix,
    parse_relay_message,
)

EVENT = sign_event(Keys(bytes.fromhex("22" * 32)), kind=1, content="hi", created_at=1)
ID = EVENT.id


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (["EVENT", "s", EVENT.to_dict()], EventMsg("s", EVENT.to_dict())),
        (["OK", ID, True, ""], OkMsg(ID, True, "")),
        (["OK", ID, False], OkMsg(ID, False, "")),  # old relays omit the message
        (["EOSE", "s"], EoseMsg("s")),
        (["CLOSED", "s", "error: x"], ClosedMsg("s", "error: x")),
        (["CLOSED", "s"], ClosedMsg("s", "")),
        (["NOTICE", "hello"], NoticeMsg("hello")),
        (["AUTH", "chal"], AuthMsg("chal")),
        (["COUNT", "s", {"count": 3}], CountMsg("s", 3)),
        (["COUNT", "s", {"count": 3, "approximate": True}], CountMsg("s", 3, True)),
    ],
)
def test_parse_each_type(frame: list[object], expected: object) -> None:
    assert parse_relay_message(orjson.dumps(frame)) == expected
    assert parse_relay_message(orjson.dumps(frame).decode()) == expected


@pytest.mark.parametrize(
    ("message", "prefix"),
    [
        ("rate-limited: slow down", "rate-limited"),
        ("auth-required: you must auth", "auth-required"),
        ("duplicate:", "duplicate"),
        ("", ""),
        ("no prefix here", ""),
        ("has space: not a prefix", ""),
    ],
)
def test_message_prefix(message: str, prefix: str) -> None:
    assert message_prefix(message) == prefix
    assert OkMsg(ID, False, message).prefix == ClosedMsg("s", message).prefix == prefix


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"", "invalid JSON"),
        (b"\xff", "invalid JSON"),
        (b"{}", "JSON array"),
        (b"[1]", "JSON array"),
        (b'["NOPE"]', "unknown relay message type"),
        (b'["EVENT", "s", []]', "JSON object"),
        (b'["OK", "' + b"A" * 64 + b'", true, ""]', "64 lowercase hex"),
        (b'["OK", "' + ID.encode() + b'", 1, ""]', "true or false"),
        (b'["OK", "' + ID.encode() + b'", true, 5]', "must be a string"),
        (b'["CLOSED", 1, ""]', "subscription id must be a string"),
        (b'["NOTICE", {}]', "must be a string"),
        (b'["COUNT", "s", {"count": true}]', "non-negative integer"),
        (b'["COUNT", "s", 3]', "JSON object"),
    ],
)
def test_malformed_frames_raise_precise_protocol_errors(frame: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_relay_message(frame)


def test_encode_client_messages() -> None:
    assert orjson.loads(encode_event(EVENT)) == ["EVENT", EVENT.to_dict()]
    assert orjson.loads(encode_auth(EVENT)) == ["AUTH", EVENT.to_dict()]
    flt = Filter.build(kinds=[1], limit=2)
    assert orjson.loads(encode_req("s", [flt, flt])) == ["REQ", "s", flt.to_dict(), flt.to_dict()]
    assert orjson.loads(encode_count("s", [flt])) == ["COUNT", "s", flt.to_dict()]
    assert orjson.loads(encode_close("s")) == ["CLOSE", "s"]
