"""Cashu tokens V3/V4: the spec's examples, round trips, hostile input, secrets out of reprs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import PaymentError
from dvmkit.payments import cashu_cbor
from dvmkit.payments.cashu_errors import InvalidToken
from dvmkit.payments.cashu_token import (
    MAX_PROOFS,
    MAX_TOKEN_LENGTH,
    Proof,
    Token,
    decode_token,
    encode_token,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "cashu.json").read_text())
SECRET = "407915bc212be61a77e3e6d2aeb4c727980bda51cd06a6afc29e2861768a7837"
POINT = "02bc9097997d81afb2cc7346b5e4345a9346bd2a506eb7958598a72f0cf85163ea"


def _expected(raw: dict[str, Any]) -> Token:
    proofs = tuple(Proof(p["amount"], p["id"], p["secret"], p["C"]) for p in raw["proofs"])
    return Token(mint=raw["mint"], proofs=proofs, unit=raw["unit"], memo=raw["memo"])


def _v3(body: object) -> str:
    return "cashuA" + base64.urlsafe_b64encode(orjson.dumps(body)).decode()


def _v4(body: cashu_cbor.Value) -> str:
    return "cashuB" + base64.urlsafe_b64encode(cashu_cbor.dumps(body)).decode()


def _good_v3(**changes: object) -> dict[str, Any]:
    proof = {"amount": 2, "id": "009a1f293253e41e", "secret": SECRET, "C": POINT}
    proof.update(changes)
    return {"token": [{"mint": "https://mint.example", "proofs": [proof]}], "unit": "sat"}


def test_v3_spec_example_decodes() -> None:
    vector = VECTORS["token_v3"]
    assert decode_token(vector["serialized"]) == _expected(vector["token"])


def test_v3_encodes_to_the_spec_example() -> None:
    vector = VECTORS["token_v3"]
    assert encode_token(_expected(vector["token"]), version=3) == vector["serialized"].rstrip("=")


def test_v3_with_and_without_padding_both_decode() -> None:
    vector = VECTORS["token_v3"]
    padded, unpadded = decode_token(vector["padded"]), decode_token(vector["unpadded"])
    assert padded == unpadded
    assert padded.memo == vector["padded_memo"]


@pytest.mark.parametrize("index", [0, 1])
def test_v3_spec_counterexamples_are_refused(index: int) -> None:
    with pytest.raises(InvalidToken, match="cashuA"):
        decode_token(VECTORS["token_v3"]["invalid"][index])


@pytest.mark.parametrize("vector", VECTORS["token_v4"], ids=["single-keyset", "two-keysets"])
def test_v4_spec_examples_decode_and_encode(vector: dict[str, Any]) -> None:
    expected = _expected(vector["token"])
    assert decode_token(vector["serialized"]) == expected
    assert encode_token(expected, version=4) == vector["serialized"].rstrip("=")


@pytest.mark.parametrize("version", [3, 4])
def test_round_trip_keeps_every_field(version: int) -> None:
    token = Token(
        mint="http://127.0.0.1:3338",
        proofs=(
            Proof(1, "01" + "ab" * 32, SECRET, POINT),
            Proof(8, "00ad268c4d1f5826", "ü" * 10, "03" + "11" * 32),
        ),
        unit="usd",
        memo="thanks ✓",
    )
    assert decode_token(encode_token(token, version=version)) == token  # type: ignore[arg-type]


def test_uri_prefix_whitespace_trailing_slash_and_standard_alphabet_are_accepted() -> None:
    vector = VECTORS["token_v4"][1]
    text = vector["serialized"].replace("-", "+").replace("_", "/")
    token = decode_token(f"  cashu:{text}\n")
    assert token == _expected(vector["token"])
    slashed = decode_token(
        _v3({**_good_v3(), "token": [{**_good_v3()["token"][0], "mint": "https://m.example/"}]})
    )
    assert slashed.mint == "https://m.example"


def test_secret_is_not_in_repr_or_str_of_proofs_and_tokens() -> None:
    token = decode_token(VECTORS["token_v3"]["serialized"])
    for text in (repr(token), str(token), repr(token.proofs[0]), str(token.proofs), f"{token}"):
        assert token.proofs[0].secret not in text
        assert token.proofs[1].secret not in text
    assert "amount=2" in repr(token.proofs[0])


HOSTILE: list[tuple[str, object, str]] = [
    ("not a string", b"cashuA", "string"),
    ("empty", "", "cashuA"),
    ("bad prefix", "cashuC" + "e30", "cashuA"),
    ("prefix only", "cashuA", "base64"),
    ("bad base64", "cashuA!!!!", "base64"),
    ("base64 bad length", "cashuAe", "base64"),
    ("non-ascii", "cashuAé30", "base64"),
    ("not json", "cashuA" + base64.urlsafe_b64encode(b"{nope").decode(), "JSON"),
    ("not cbor", "cashuB" + base64.urlsafe_b64encode(b"\xff\x00").decode(), "CBOR"),
    ("json list", _v3([1, 2]), "object"),
    ("no mint entries", _v3({"token": []}), "one mint"),
    ("two mints", _v3({"token": [_good_v3()["token"][0]] * 2}), "one mint"),
    ("no proofs", _v3({"token": [{"mint": "https://m", "proofs": []}]}), "at least one"),
    ("amount string", _v3(_good_v3(amount="2")), "integer"),
    ("amount float", _v3(_good_v3(amount=2.0)), "integer"),
    ("amount bool", _v3(_good_v3(amount=True)), "integer"),
    ("amount zero", _v3(_good_v3(amount=0)), "positive"),
    ("amount negative", _v3(_good_v3(amount=-8)), "positive"),
    ("id not hex", _v3(_good_v3(id="zz9a1f293253e41e")), "hex"),
    ("id wrong length", _v3(_good_v3(id="009a")), "hex"),
    ("secret empty", _v3(_good_v3(secret="")), "secret"),
    ("secret huge", _v3(_good_v3(secret="a" * 5000)), "secret"),
    ("secret number", _v3(_good_v3(secret=7)), "secret"),
    ("C not a point", _v3(_good_v3(C="04" + "00" * 32)), "compressed"),
    (
        "mint not url",
        _v3({"token": [{"mint": "ftp://m", "proofs": _good_v3()["token"][0]["proofs"]}]}),
        "http",
    ),
    ("unit weird", _v3({**_good_v3(), "unit": "SAT!"}), "unit"),
    ("memo object", _v3({**_good_v3(), "memo": {}}), "memo"),
    ("v4 list", _v4([1]), "t list"),
    ("v4 id text", _v4({"t": [{"i": "00ad", "p": []}], "m": "https://m"}), "bytes"),
    (
        "v4 c text",
        _v4({"t": [{"i": b"\x00" * 8, "p": [{"a": 1, "s": "x", "c": POINT}]}], "m": "https://m"}),
        "bytes",
    ),
    (
        "v4 no mint",
        _v4({"t": [{"i": b"\x00" * 8, "p": [{"a": 1, "s": "x", "c": bytes.fromhex(POINT)}]}]}),
        "mint",
    ),
    (
        "v4 trailing",
        "cashuB" + base64.urlsafe_b64encode(cashu_cbor.dumps({"t": []}) + b"\x00").decode(),
        "trailing",
    ),
    ("v4 indefinite", "cashuB" + base64.urlsafe_b64encode(b"\xbf\xff").decode(), "indefinite"),
    ("v4 negative int", "cashuB" + base64.urlsafe_b64encode(b"\x20").decode(), "major type 1"),
    ("v4 float", "cashuB" + base64.urlsafe_b64encode(b"\xf9\x3c\x00").decode(), "major type 7"),
    (
        "v4 huge length",
        "cashuB" + base64.urlsafe_b64encode(b"\x9b" + b"\xff" * 8).decode(),
        "truncated",
    ),
    ("v4 deep", "cashuB" + base64.urlsafe_b64encode(b"\x81" * 50 + b"\x00").decode(), "deep"),
    (
        "v4 duplicate key",
        "cashuB" + base64.urlsafe_b64encode(b"\xa2\x61t\x80\x61t\x80").decode(),
        "duplicate",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_tokens_raise_invalid_token(name: str, text: object, message: str) -> None:
    with pytest.raises(InvalidToken, match=message) as caught:
        decode_token(text)  # type: ignore[arg-type]
    assert isinstance(caught.value, PaymentError)
    assert SECRET not in str(caught.value)


def test_v4_amount_beyond_64_bits_is_refused_by_the_encoder_and_the_decoder() -> None:
    big = b"\x1b" + b"\xff" * 8  # 2^64 - 1, the largest uint64 CBOR can hold
    body = (
        b"\xa2\x61t\x81\xa2\x61i\x48"
        + b"\x00" * 8
        + b"\x61p\x82"
        + b"\xa3\x61a"
        + big
        + b"\x61s\x61x\x61c\x58\x21"
        + bytes.fromhex(POINT)
        + b"\xa3\x61a\x01\x61s\x61y\x61c\x58\x21"
        + bytes.fromhex(POINT)
        + b"\x61m\x68https://"
    )
    with pytest.raises(InvalidToken, match="overflows"):
        decode_token("cashuB" + base64.urlsafe_b64encode(body).decode())
    with pytest.raises(cashu_cbor.CborError):
        cashu_cbor.dumps(1 << 64)


def test_overflowing_v3_amounts_are_refused() -> None:
    body = _good_v3(amount=(1 << 64) - 1)
    body["token"][0]["proofs"].append({**body["token"][0]["proofs"][0], "amount": 1})
    with pytest.raises(InvalidToken, match="overflows"):
        decode_token(_v3(body))
    too_big = b'{"token": [{"mint": "https://m", "proofs": [{"amount": 18446744073709551616}]}]}'
    with pytest.raises(
        InvalidToken, match="integer"
    ):  # orjson reads integers past uint64 as floats
        decode_token("cashuA" + base64.urlsafe_b64encode(too_big).decode())


def test_huge_token_is_refused_before_any_decoding() -> None:
    with pytest.raises(InvalidToken, match="longer than"):
        decode_token("cashuA" + "A" * MAX_TOKEN_LENGTH)


def test_too_many_proofs_are_refused() -> None:
    proofs = [
        {"amount": 1, "id": "009a1f293253e41e", "secret": f"{i}", "C": POINT}
        for i in range(MAX_PROOFS + 1)
    ]
    with pytest.raises(InvalidToken, match="at most"):
        decode_token(_v3({"token": [{"mint": "https://m", "proofs": proofs}]}))


def test_cbor_round_trips_the_token_subset() -> None:
    value: cashu_cbor.Value = {
        "a": [0, 23, 24, 255, 256, 65535, 65536, (1 << 32), (1 << 64) - 1],
        "b": b"\x00" * 300,
        "ü": "x" * 70000,
    }
    assert cashu_cbor.loads(cashu_cbor.dumps(value)) == value


def _decodes_or_refuses(text: str) -> None:
    """A token with positive proofs, or InvalidToken; any other exception fails the test."""
    outcome: Token | InvalidToken
    try:
        outcome = decode_token(text)
    except InvalidToken as exc:
        outcome = exc
    if isinstance(outcome, Token):
        assert outcome.amount > 0
        assert outcome.mint.startswith(("http://", "https://"))
    elif len(text) > 60:  # long enough that a quote of it could not be a coincidence
        assert text.strip() not in str(outcome)


@given(st.text(max_size=300))
def test_decoding_any_text_gives_a_token_or_invalid_token(text: str) -> None:
    for candidate in (text, "cashuA" + text, "cashuB" + text):
        _decodes_or_refuses(candidate)


@given(st.binary(max_size=400))
def test_decoding_any_payload_gives_a_token_or_invalid_token(payload: bytes) -> None:
    encoded = base64.urlsafe_b64encode(payload).decode()
    for prefix in ("cashuA", "cashuB"):
        _decodes_or_refuses(prefix + encoded)


CBOR_VALUES = st.recursive(
    st.integers(0, (1 << 64) - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(CBOR_VALUES)
def test_any_well_formed_cbor_gives_a_token_or_invalid_token(value: cashu_cbor.Value) -> None:
    _decodes_or_refuses(_v4(value))


PROOFS = st.builds(
    Proof,
    amount=st.integers(1, 1 << 40),
    keyset_id=st.sampled_from(["009a1f293253e41e", "01" + "cd" * 32]),
    secret=st.text(min_size=1, max_size=80),
    C=st.sampled_from([POINT, "03" + "ab" * 32]),
)
TOKENS = st.builds(
    Token,
    mint=st.sampled_from(["https://mint.example", "http://127.0.0.1:3338/path"]),
    proofs=st.lists(PROOFS, min_size=1, max_size=5).map(tuple),
    unit=st.sampled_from(["sat", "usd", "msat"]),
    memo=st.none() | st.text(max_size=40),
)


def _order(p: Proof) -> tuple[str, int, str, str]:
    return (p.keyset_id, p.amount, p.secret, p.C)


@given(TOKENS, st.sampled_from([3, 4]))
def test_every_token_round_trips(token: Token, version: int) -> None:
    decoded = decode_token(encode_token(token, version=version))  # type: ignore[arg-type]
    if version == 4:  # V4 groups proofs by keyset; the order within a keyset is kept
        assert sorted(decoded.proofs, key=_order) == sorted(token.proofs, key=_order)
        assert decoded.amount == token.amount
        assert (decoded.mint, decoded.unit, decoded.memo) == (token.mint, token.unit, token.memo)
    else:
        assert decoded == token
