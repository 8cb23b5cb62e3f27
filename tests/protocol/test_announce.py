"""Announcements: kind 11999 and NIP-89 kind 31990, ours and other implementations'."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.protocol.announce import (
    MAX_CONTENT_CHARS,
    DVMAnnouncement,
    announcement_event,
    nip89_event,
    parse_announcement,
)
from dvmkit.protocol.job import Dialect

from .sdk import NOW, OTHER, PROVIDER, checked_by_sdk, sdk_event

ME = PROVIDER.public_key
SCHEMA = {"type": "object", "properties": {"language": {"type": "string", "default": "en"}}}


def test_modern_announcement_tags_content_and_round_trip() -> None:
    unsigned = announcement_event(
        provider=ME,
        created_at=NOW,
        name="Translator",
        about="Translates text",
        picture="https://x.example/p.png",
        website="https://x.example",
        params_schema=SCHEMA,
        examples=[{"input": "Hallo", "params": {"language": "en"}}],
        categories=["translation", "text"],
        legacy_kinds=[5002],
        relays=["wss://a.example", "wss://b.example"],
        price_msat=21000,
        payment_methods=["bolt11", "cashu"],
        encryption=True,
    )
    assert unsigned.kind == 11999
    assert unsigned.tags == (
        ("name", "Translator"),
        ("about", "Translates text"),
        ("picture", "https://x.example/p.png"),
        ("category", "translation"),
        ("t", "translation"),
        ("category", "text"),
        ("t", "text"),
        ("k", "25000"),
        ("k", "5002"),
        ("relays", "wss://a.example", "wss://b.example"),
        ("price", "21000", "msat", "per-job"),
        ("payment", "bolt11"),
        ("payment", "cashu"),
        ("encryption", "nip44_v2"),
    )
    assert json.loads(unsigned.content) == {
        "name": "Translator",
        "about": "Translates text",
        "picture": "https://x.example/p.png",
        "website": "https://x.example",
        "params": SCHEMA,
        "examples": [{"input": "Hallo", "params": {"language": "en"}}],
    }
    assert checked_by_sdk(unsigned, PROVIDER).kind().is_replaceable()
    info = parse_announcement(unsigned.sign(PROVIDER))
    assert (info.pubkey, info.kind, info.d) == (ME, 11999, None)
    assert (info.name, info.about, info.picture) == (
        "Translator",
        "Translates text",
        "https://x.example/p.png",
    )
    assert info.website == "https://x.example"
    assert info.documentation is None
    assert info.categories == ("translation", "text")
    assert info.kinds == (25000, 5002)
    assert info.dialects == (Dialect.MODERN, Dialect.LEGACY)
    assert info.price_msat == 21000
    assert info.payment_methods == ("bolt11", "cashu")
    assert info.encryption is True
    assert info.relays == ("wss://a.example", "wss://b.example")
    assert info.params == SCHEMA
    assert info.created_at == NOW


def test_free_modern_only_announcement_is_minimal() -> None:
    unsigned = announcement_event(provider=ME, created_at=NOW, name="Echo", price_msat=0)
    assert unsigned.tags == (("name", "Echo"), ("about", ""), ("picture", ""), ("k", "25000"))
    info = parse_announcement(unsigned.sign(PROVIDER))
    assert info.dialects == (Dialect.MODERN,)
    assert info.price_msat is None
    assert info.encryption is False
    assert info.params == {}


def test_nip89_announcement_writes_both_encryption_spellings() -> None:
    unsigned = nip89_event(
        provider=ME,
        created_at=NOW,
        d="translator-1",
        kinds=[5002, 5001, 5002],
        name="Translator",
        about="Translates text",
        picture="https://x.example/p.png",
        params={"language": {"required": False, "values": ["en", "de"]}},
        categories=["translation"],
        encryption=True,
    )
    assert unsigned.kind == 31990
    assert unsigned.tags == (
        ("d", "translator-1"),
        ("k", "5002"),
        ("k", "5001"),
        ("t", "translation"),
    )
    assert json.loads(unsigned.content) == {
        "name": "Translator",
        "about": "Translates text",
        "picture": "https://x.example/p.png",
        "nip90Params": {"language": {"required": False, "values": ["en", "de"]}},
        "encryptionSupported": True,
        "supportsEncryption": True,
    }
    theirs = checked_by_sdk(unsigned, PROVIDER)
    assert theirs.kind().is_addressable()
    assert theirs.tags()[0].to_vec() == ["d", "translator-1"]
    info = parse_announcement(unsigned.sign(PROVIDER))
    assert info.d == "translator-1"
    assert info.kinds == (5002, 5001)
    assert info.dialects == (Dialect.LEGACY,)
    assert info.categories == ("translation",)
    assert info.encryption is True
    assert info.params == {"language": {"required": False, "values": ["en", "de"]}}


@pytest.mark.parametrize("flag", ["encryptionSupported", "supportsEncryption"])
def test_either_encryption_spelling_is_read(flag: str) -> None:
    content = json.dumps({"name": "X", flag: True})
    event = sdk_event(OTHER, kind=31990, tags=[["d", "x"], ["k", "5050"]], content=content)
    assert parse_announcement(event).encryption is True


def test_nostrdvm_style_nip89_from_nostr_sdk() -> None:
    content = json.dumps(
        {
            "name": "Unstable Diffusion",
            "image": "https://x.example/i.png",
            "about": "I draw",
            "supportsEncryption": True,
            "acceptsNutZaps": False,
            "nip90Params": {"size": {"required": False, "values": ["1024x1024"]}},
            "amount": "free",
        }
    )
    tags = [["d", "abc123"], ["k", "5100"], ["k", "25000"], ["k", "not-a-kind"], ["k", "99999"]]
    info = parse_announcement(sdk_event(OTHER, kind=31990, tags=tags, content=content))
    assert info.picture == "https://x.example/i.png"
    assert info.kinds == (5100, 25000)
    assert info.dialects == (Dialect.MODERN, Dialect.LEGACY)
    assert info.price_msat == 0
    assert info.params == {"size": {"required": False, "values": ["1024x1024"]}}


def test_empty_nip89_content_falls_back_to_tags() -> None:
    tags = [["d", "x"], ["k", "5300"], ["name", "Feeds"], ["about", "Trending notes"]]
    info = parse_announcement(sdk_event(OTHER, kind=31990, tags=tags))
    assert (info.name, info.about, info.picture) == ("Feeds", "Trending notes", "")


@pytest.mark.parametrize(
    ("price_tag", "amount", "expected"),
    [
        (["price", "1500", "msat", "per-job"], None, 1500),
        (["price", "2", "sats"], None, 2000),
        (["price", "7"], None, 7),
        (["price", "5", "usd"], None, None),
        (["price", "abc", "msat"], None, None),
        (["price", "9" * 40, "msat"], None, None),
        (None, 12, 12000),
        (None, "34", 34000),
        (None, "flexible", None),
        (None, -3, None),
        (None, 10**40, None),  # orjson reads an over-long integer as a float
        (None, True, None),
    ],
)
def test_prices_in_the_forms_seen(
    price_tag: list[str] | None, amount: Any, expected: int | None
) -> None:
    body: dict[str, Any] = {"name": "P"} if amount is None else {"name": "P", "amount": amount}
    tags = [["d", "p"], ["k", "5000"], *([price_tag] if price_tag else [])]
    event = sdk_event(OTHER, kind=31990, tags=tags, content=json.dumps(body))
    assert parse_announcement(event).price_msat == expected


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "content is not JSON"),
        ("{", "content is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"a string"', "must be a JSON object"),
        ("123", "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("[" * 5000 + "]" * 5000, "not JSON"),
        (json.dumps({"about": "x" * MAX_CONTENT_CHARS}), "the limit is"),
    ],
)
def test_hostile_content_is_a_clean_protocol_error(content: str, fragment: str) -> None:
    for kind in (11999, 31990):
        event = sdk_event(OTHER, kind=kind, tags=[["d", "x"], ["k", "5000"]], content=content)
        with pytest.raises(ProtocolError, match=fragment):
            parse_announcement(event)


def test_fields_of_the_wrong_type_read_as_absent() -> None:
    content = json.dumps(
        {
            "name": 5,
            "about": ["a"],
            "picture": {"url": "x"},
            "params": "schema",
            "nip90Params": [1],
            "encryptionSupported": "yes",
            "supportsEncryption": 1,
            "website": None,
        }
    )
    for kind in (11999, 31990):
        tags = [["name", "From tag"], ["k", "5001"], ["relays", "https://x", "wss://ok"]]
        info = parse_announcement(sdk_event(OTHER, kind=kind, tags=tags, content=content))
        assert (info.name, info.about, info.picture) == ("From tag", "", "")
        assert info.params == {}
        assert info.encryption is False
        assert info.website is None
        assert info.relays == ("wss://ok",)


def test_other_kinds_are_not_announcements() -> None:
    with pytest.raises(ProtocolError, match="not a DVM announcement"):
        parse_announcement(sdk_event(OTHER, kind=31989, content="{}"))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"legacy_kinds": [25000]}, "not a NIP-90 request kind"),
        ({"legacy_kinds": ["5000"]}, "is an integer"),
        ({"price_msat": -1}, "non-negative"),
        ({"params_schema": {"x": object()}}, "not JSON-serializable"),
        ({"name": "\ud800"}, "not JSON-serializable"),
    ],
)
def test_announcement_builder_refuses_bad_values(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"provider": ME, "created_at": NOW, "name": "N", **kwargs}
    with pytest.raises(ProtocolError, match=fragment):
        announcement_event(**args)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"d": ""}, "non-empty d"),
        ({"kinds": []}, "at least one NIP-90 kind"),
        ({"kinds": [6000]}, "not a NIP-90 request kind"),
        ({"params": {1: "x"}}, "not JSON-serializable"),
    ],
)
def test_nip89_builder_refuses_bad_values(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"provider": ME, "created_at": NOW, "d": "d", "kinds": [5000]}
    with pytest.raises(ProtocolError, match=fragment):
        nip89_event(name="N", **{**args, **kwargs})


texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(
    ["name", "about", "picture", "image", "params", "nip90Params", "amount", "website",
     "encryptionSupported", "supportsEncryption"]
)  # fmt: skip
tag_name = st.sampled_from(["d", "k", "t", "category", "price", "payment", "relays", "encryption"])
tag_lists = st.lists(st.lists(texts, max_size=4).flatmap(lambda v: tag_name.map(lambda n: [n, *v])))


def _event(kind: int, tags: list[list[str]], content: str) -> Event:
    return Event("00" * 32, OTHER.public_key, NOW, kind, tuple(map(tuple, tags)), content, "")


def _attempt(event: Event) -> DVMAnnouncement | ProtocolError:
    try:
        return parse_announcement(event)
    except ProtocolError as exc:
        return exc


@settings(max_examples=300)
@given(
    kind=st.sampled_from([11999, 31990]),
    tags=tag_lists,
    body=st.dictionaries(keys | texts, json_values, max_size=8),
    raw=texts,
)
def test_arbitrary_announcements_parse_or_raise_protocol_error(
    kind: int, tags: list[list[str]], body: dict[str, Any], raw: str
) -> None:
    try:
        content = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # floats such as nan are not JSON; use the raw text instead
        content = raw
    for text in (content, raw):
        info = _attempt(_event(kind, tags, text))
        if isinstance(info, ProtocolError):
            assert str(info)
            continue
        assert isinstance(info.name, str)
        assert all(0 <= k <= 65535 for k in info.kinds)
        assert info.price_msat is None or info.price_msat >= 0
        assert isinstance(info.params, dict)
