"""Job requests in both dialects, built and signed by nostr-sdk, parsed by ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import DVMError, JobError, ProtocolError
from dvmkit.nostr.event import Event, UnsignedEvent, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import (
    Dialect,
    ErrorCode,
    JobInput,
    JobRequest,
    answerable_request,
    parse_request,
)

from .sdk import CUSTOMER, NOW, OTHER, PROVIDER, sdk_event

VECTORS = Path(__file__).parent.parent / "vectors"
EVENT_ID = "ab" * 32


def test_modern_request_reads_every_tag() -> None:
    tags = [
        ["category", "translation"],
        ["t", "translation"],
        ["i", "Hello world", "text"],
        ["i", EVENT_ID.upper(), "event", "wss://relay.example", "source"],
        ["param", "language", "es"],
        ["param", "range", "0", "10"],
        ["output", "text/plain"],
        ["bid", "21000"],
        ["relays", "wss://a.example", "ws://127.0.0.1:7777"],
        ["p", PROVIDER.public_key],
        ["expiration", str(NOW + 60)],
        ["alt", "a translation job"],
    ]
    event = sdk_event(CUSTOMER, kind=25000, tags=tags, content="ignored: there are i tags")
    req = parse_request(event, provider=PROVIDER.public_key)
    assert req.id == event.id
    assert req.customer == CUSTOMER.public_key
    assert req.dialect is Dialect.MODERN
    assert req.kind == 25000
    assert req.category == "translation"
    assert req.inputs == (
        JobInput("Hello world", "text"),
        JobInput(EVENT_ID, "event", "wss://relay.example", "source"),
    )
    assert req.params == (("language", ("es",)), ("range", ("0", "10")))
    assert req.output == "text/plain"
    assert req.bid_msat == 21000
    assert req.relays == ("wss://a.example", "ws://127.0.0.1:7777")
    assert req.providers == (PROVIDER.public_key,)
    assert req.encryption is None
    assert req.expiration == NOW + 60
    assert req.created_at == NOW
    assert req.event == event
    assert req.result_kind == 25000
    assert req.is_targeted_to(PROVIDER.public_key)
    assert not req.is_targeted_to(OTHER.public_key)
    assert not req.is_open


def test_legacy_request_reads_nip90_tags_and_its_result_kind() -> None:
    tags = [["i", "Bonjour", "text"], ["param", "language", "en"], ["t", "bitcoin"]]
    req = parse_request(sdk_event(CUSTOMER, kind=5002, tags=tags, content="a note"))
    assert req.dialect is Dialect.LEGACY
    assert req.result_kind == 6002
    # In NIP-90 `t` is a topic, not a category; and content is never the input.
    assert req.category is None
    assert req.inputs == (JobInput("Bonjour", "text"),)
    assert req.param("language") == "en"
    assert req.is_open
    assert req.is_targeted_to(PROVIDER.public_key) is False


def test_modern_content_is_the_input_when_there_is_no_i_tag() -> None:
    tags = [["t", "echo"]]
    req = parse_request(sdk_event(CUSTOMER, kind=25000, tags=tags, content="say this"))
    assert req.inputs == (JobInput("say this", "text"),)
    # The `t` tag stands in for the category when there is no `category` tag.
    assert req.category == "echo"
    assert parse_request(sdk_event(CUSTOMER, kind=25000, tags=tags)).inputs == ()


def test_params_repeat_and_carry_several_values() -> None:
    tags = [
        ["param", "relay", "wss://a"],
        ["param", "group", "kind"],
        ["param", "relay", "wss://b", "wss://c"],
    ]
    req = parse_request(sdk_event(CUSTOMER, kind=5400, tags=tags))
    assert req.param("relay") == "wss://a"
    assert req.param_values("relay") == ("wss://a", "wss://b", "wss://c")
    assert req.param("missing") is None
    assert req.param_values("missing") == ()


def test_inputs_default_their_type_and_drop_empty_relay_and_marker() -> None:
    tags = [["i", "plain"], ["i", "typed", "", "", ""], ["i", "https://x.example/a", "url"]]
    req = parse_request(sdk_event(CUSTOMER, kind=5001, tags=tags))
    assert req.inputs == (
        JobInput("plain", "text"),
        JobInput("typed", "text"),
        JobInput("https://x.example/a", "url"),
    )


def test_relays_keep_websocket_urls_only_once_each() -> None:
    tags = [
        ["relays", "wss://a", "https://not-a-relay", "", "WSS://B"],
        ["relays", "wss://a", "ws://c"],
    ]
    req = parse_request(sdk_event(CUSTOMER, kind=5001, tags=tags))
    assert req.relays == ("wss://a", "WSS://B", "ws://c")


def test_unknown_and_harmless_tags_are_ignored() -> None:
    tags = [["output"], ["x", "y"], ["category"], ["expiration", "9" * 5000], ["p", "nokey"]]
    req = parse_request(sdk_event(CUSTOMER, kind=25000, tags=tags))
    assert req.output is None
    assert req.category is None
    assert req.expiration is None
    assert req.providers == ()
    assert req.bid_msat is None


@pytest.mark.parametrize(
    ("tag", "code", "fragment"),
    [
        (["bid", "abc"], ErrorCode.BAD_REQUEST, "bid must be a whole number of millisats"),
        (["bid", "-5"], ErrorCode.BAD_REQUEST, "'-5'"),
        (["bid", "1.5"], ErrorCode.BAD_REQUEST, "bid must be"),
        (["bid", "\uff11\uff12"], ErrorCode.BAD_REQUEST, "bid must be"),
        (["bid", "9" * 5000], ErrorCode.BAD_REQUEST, "bid must be"),
        (["bid"], ErrorCode.BAD_REQUEST, "the bid tag has no amount"),
        (["i"], ErrorCode.BAD_REQUEST, "input 2 has no data"),
        (["i", "", "text"], ErrorCode.BAD_REQUEST, "input 2 has no data"),
        (["i", "nothex", "event"], ErrorCode.BAD_REQUEST, "64-character hex event id"),
        (["i", "ab" * 31, "job"], ErrorCode.BAD_REQUEST, "of type 'job'"),
        (["param"], ErrorCode.BAD_REQUEST, "a param tag has no name"),
        (["param", " ", "x"], ErrorCode.BAD_REQUEST, "a param tag has no name"),
        (["param", "language"], ErrorCode.INVALID_PARAMETER, "param 'language' has no value"),
    ],
)
def test_malformed_known_tags_answer_a_precise_job_error(
    tag: list[str], code: ErrorCode, fragment: str
) -> None:
    event = sign_event(CUSTOMER, kind=5002, tags=[["i", "ok", "text"], tag], created_at=NOW)
    with pytest.raises(JobError) as info:
        parse_request(event)
    assert info.value.code == code
    assert fragment in info.value.message
    # A hostile value never bloats the message sent back to the customer.
    assert len(info.value.message) < 200


def test_inputs_are_numbered_in_error_messages() -> None:
    tags = [["i", "one", "text"], ["i", "two", "text"], ["i", "zz", "event"]]
    with pytest.raises(JobError, match="input 3 of type 'event'"):
        parse_request(sign_event(CUSTOMER, kind=25000, tags=tags, created_at=NOW))


@pytest.mark.parametrize("kind", [1, 5, 4999, 6000, 6002, 7000, 24999, 25001, 31990])
def test_other_kinds_are_not_requests(kind: int) -> None:
    with pytest.raises(ProtocolError, match=f"kind {kind} is not a job request"):
        parse_request(sdk_event(CUSTOMER, kind=kind))


def test_modern_statuses_and_cancels_are_not_requests() -> None:
    for status in ("processing", "cancel", "success"):
        tags = [["e", EVENT_ID], ["p", PROVIDER.public_key], ["status", status]]
        event = sdk_event(CUSTOMER, kind=25000, tags=tags, content="x")
        with pytest.raises(ProtocolError, match="is a job status or cancellation"):
            parse_request(event, provider=PROVIDER.public_key)


@pytest.mark.parametrize("kind", [5000, 5999, 25000])
def test_requests_targeted_to_other_providers_are_refused_before_parsing(kind: int) -> None:
    # The malformed bid proves the refusal comes first: nothing is answered.
    tags = [["p", OTHER.public_key], ["bid", "abc"]]
    event = sdk_event(CUSTOMER, kind=kind, tags=tags)
    with pytest.raises(ProtocolError, match="addressed to other providers"):
        parse_request(event, provider=PROVIDER.public_key)
    with pytest.raises(JobError):
        parse_request(event)


def test_requests_naming_us_among_others_are_ours() -> None:
    tags = [["p", OTHER.public_key], ["p", PROVIDER.public_key.upper()], ["p", OTHER.public_key]]
    req = parse_request(sdk_event(CUSTOMER, kind=5050, tags=tags), provider=PROVIDER.public_key)
    assert req.providers == (OTHER.public_key, PROVIDER.public_key)
    assert req.is_targeted_to(PROVIDER.public_key)


def test_encrypted_request_needs_its_decrypted_tags() -> None:
    tags = [["p", PROVIDER.public_key], ["encrypted"]]
    event = sdk_event(CUSTOMER, kind=5002, tags=tags, content="ciphertext?iv=x")
    with pytest.raises(ProtocolError, match="decrypt_legacy_params"):
        parse_request(event, provider=PROVIDER.public_key)
    private = [["i", "secret", "text"], ["param", "language", "de"], ["bid", "7"]]
    req = parse_request(event, provider=PROVIDER.public_key, decrypted_tags=private)
    assert req.encryption == "nip04"
    assert req.inputs == (JobInput("secret", "text"),)
    assert req.params == (("language", ("de",)),)
    assert req.bid_msat == 7
    with pytest.raises(JobError, match="encrypted params"):
        parse_request(event, decrypted_tags=[["i", "x"], []])


def test_modern_requests_ignore_the_legacy_encrypted_tag() -> None:
    tags = [["encrypted", "nip99"], ["i", "clear", "text"]]
    req = parse_request(sdk_event(CUSTOMER, kind=25000, tags=tags))
    assert req.encryption is None
    assert req.inputs == (JobInput("clear", "text"),)


def test_pr_1942_content_discovery_request_example() -> None:
    data = json.loads((VECTORS / "nips-examples-derived.json").read_text())["nip01_event_id"]
    unsigned = UnsignedEvent.from_dict(data["event"])
    assert unsigned.id == data["expected_id"]
    # The source gives no signature; parsing reads tags only, so a placeholder stands in.
    event = Event.from_dict({**unsigned.to_dict(), "sig": "0" * 128})
    req = parse_request(event)
    assert req.id == data["expected_id"]
    assert req.dialect is Dialect.LEGACY
    assert req.kind == 5300
    assert req.result_kind == 6300
    assert req.inputs == ()
    assert req.param("max_results") == "200"
    assert req.param("user") == data["event"]["pubkey"]
    assert req.relays == ("wss://relay.nostrdvm.com", "wss://nostr.mom", "wss://nostr.oxtr.dev")
    provider = "96945c769ef9e91be05570fef1003633f5bb9d072ba2453781b5140013ab35b3"
    assert req.providers == (provider,)
    assert parse_request(event, provider=provider).is_targeted_to(provider)
    with pytest.raises(ProtocolError, match="addressed to other providers"):
        parse_request(event, provider=PROVIDER.public_key)


# -- never anything but ProtocolError / JobError ----------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80)
values = st.one_of(
    texts,
    st.sampled_from(["", "0", "-1", "1e3", "9" * 5000, EVENT_ID, PROVIDER.public_key, "wss://r"]),
    st.integers(min_value=0, max_value=10**30).map(str),
)
names = st.one_of(
    st.sampled_from(
        ["i", "param", "bid", "output", "relays", "p", "t", "category", "encrypted", "expiration"]
    ),
    texts,
)
tag_lists = st.lists(
    st.tuples(names, st.lists(values, max_size=5)).map(lambda t: [t[0], *t[1]]), max_size=12
)
request_kinds = st.one_of(
    st.just(25000), st.integers(5000, 5999), st.integers(min_value=0, max_value=65535)
)


def _attempt(
    event: Event, provider: str | None, private: list[list[str]] | None
) -> JobRequest | DVMError:
    try:
        return parse_request(event, provider=provider, decrypted_tags=private)
    except (ProtocolError, JobError) as exc:
        return exc


@settings(max_examples=400)
@given(kind=request_kinds, tags=tag_lists, content=texts, private=st.none() | tag_lists)
def test_arbitrary_events_raise_only_protocol_or_job_errors(
    kind: int, tags: list[list[str]], content: str, private: list[list[str]] | None
) -> None:
    event = Event("00" * 32, CUSTOMER.public_key, NOW, kind, tuple(map(tuple, tags)), content, "")
    for provider in (None, PROVIDER.public_key):
        req = _attempt(event, provider, private)
        if isinstance(req, DVMError):
            assert str(req)
            continue
        assert all(i.data and i.type for i in req.inputs)
        assert req.bid_msat is None or req.bid_msat >= 0
        assert all(r[:2].lower() == "ws" for r in req.relays)
        assert all(len(p) == 64 for p in req.providers)
        assert all(name.strip() and values for name, values in req.params)


def test_answerable_request_keeps_what_an_error_answer_needs() -> None:
    customer = Keys.generate()
    legacy = sign_event(
        customer,
        kind=5050,
        tags=[["param"], ["relays", "wss://a.example", "https://not-a-relay"], ["encrypted", "x"]],
    )
    with pytest.raises(JobError):
        parse_request(legacy)
    bare = answerable_request(legacy)
    assert (bare.id, bare.customer, bare.kind) == (legacy.id, customer.public_key, 5050)
    assert bare.relays == ("wss://a.example",)
    assert bare.encryption is None  # an unknown scheme can only be answered in the clear
    assert bare.inputs == ()
    assert bare.params == ()
    modern = sign_event(customer, kind=25000, tags=[["t", "pow"], ["param"]])
    assert answerable_request(modern).category == "pow"
    with pytest.raises(ProtocolError):
        answerable_request(sign_event(customer, kind=1))
