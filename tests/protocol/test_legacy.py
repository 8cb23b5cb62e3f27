"""Legacy NIP-90: feedback and results, and encrypted params answered in the customer's scheme."""

from __future__ import annotations

import json
from typing import Any

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import DVMError, JobError, ProtocolError
from dvmkit.nostr import nip04, nip44
from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.protocol.job import ErrorCode, JobInput, JobRequest, StatusKind, parse_request
from dvmkit.protocol.legacy import (
    ENCRYPTED_MESSAGE,
    decrypt_legacy_params,
    feedback_event,
    legacy_result_event,
)
from dvmkit.protocol.response import result_event, status_event

from .sdk import CUSTOMER, NOW, OTHER, PROVIDER, checked_by_sdk, sdk_event, sdk_keys, sdk_pub

ME = PROVIDER.public_key
PRIVATE = [["i", "Guten Morgen", "text"], ["param", "language", "en"]]


def _plain_request() -> JobRequest:
    tags = [
        ["i", "Guten Morgen", "text", "", "greeting"],
        ["i", "https://x.example/t.txt", "url"],
        ["param", "language", "en"],
        ["p", ME],
    ]
    return parse_request(sdk_event(CUSTOMER, kind=5002, tags=tags), provider=ME)


def _encrypted_request(spelling: list[str], plaintext: str | None = None) -> Event:
    """A request whose params nostr-sdk encrypted, as a customer would (NIP-90 §1.3)."""
    text = json.dumps(PRIVATE) if plaintext is None else plaintext
    secret = sdk_keys(CUSTOMER).secret_key()
    if spelling[1:] == ["nip44"]:
        content = nostr_sdk.nip44_encrypt(
            secret, sdk_pub(PROVIDER), text, nostr_sdk.Nip44Version.V2
        )
    else:
        content = nostr_sdk.nip04_encrypt(secret, sdk_pub(PROVIDER), text)
    return sdk_event(CUSTOMER, kind=5002, tags=[["p", ME], spelling], content=content)


def _sdk_decrypt(scheme: str, payload: str) -> str:
    secret = sdk_keys(CUSTOMER).secret_key()
    if scheme == "nip44":
        return str(nostr_sdk.nip44_decrypt(secret, sdk_pub(PROVIDER), payload))
    return str(nostr_sdk.nip04_decrypt(secret, sdk_pub(PROVIDER), payload))


@pytest.mark.parametrize(
    ("spelling", "scheme"),
    [
        (["encrypted"], "nip04"),
        (["encrypted", "nip04"], "nip04"),
        (["encrypted", "nip44"], "nip44"),
    ],
)
def test_encrypted_request_is_answered_in_the_same_scheme_and_spelling(
    spelling: list[str], scheme: str
) -> None:
    event = _encrypted_request(spelling)
    private = decrypt_legacy_params(event, PROVIDER)
    assert private == PRIVATE
    req = parse_request(event, provider=ME, decrypted_tags=private)
    assert req.encryption == scheme
    assert req.inputs == (JobInput("Guten Morgen", "text"),)
    assert req.param("language") == "en"

    partial = feedback_event(
        req, StatusKind.PARTIAL, provider=ME, created_at=NOW, content="Good", keys=PROVIDER
    )
    result = legacy_result_event(req, "Good morning", provider=ME, created_at=NOW, keys=PROVIDER)
    for answer, text in ((partial, "Good"), (result, "Good morning")):
        checked_by_sdk(answer, PROVIDER)
        assert _sdk_decrypt(scheme, answer.content) == text
        assert answer.tags[-1] == tuple(spelling)
        # The same scheme, not merely something the customer can decrypt: NIP-04 payloads
        # carry "?iv=", NIP-44 v2 payloads are one base64 string.
        assert ("?iv=" in answer.content) is (scheme == "nip04")
    assert result.kind == 6002
    assert result.tags == (
        ("request", event.to_json()),
        ("e", event.id),
        ("p", CUSTOMER.public_key),
        tuple(spelling),
    )
    # The private input must not leak into the result's clear-text tags.
    assert "Guten" not in json.dumps(result.tags[1:])


def test_empty_content_of_an_encrypted_request_stays_empty_and_untagged() -> None:
    req = parse_request(
        _encrypted_request(["encrypted", "nip44"]), provider=ME, decrypted_tags=PRIVATE
    )
    event = feedback_event(req, StatusKind.PROCESSING, provider=ME, created_at=NOW, keys=PROVIDER)
    assert event.content == ""
    assert event.tags == (("status", "processing"), ("e", req.id), ("p", CUSTOMER.public_key))


@pytest.mark.parametrize(
    ("spelling", "scheme"), [(["encrypted"], "nip04"), (["encrypted", "nip44"], "nip44")]
)
def test_an_error_about_encrypted_params_keeps_its_message_encrypted(
    spelling: list[str], scheme: str
) -> None:
    # The message quotes a private param value; the clear tag must not.
    req = parse_request(_encrypted_request(spelling), provider=ME, decrypted_tags=PRIVATE)
    message = "param 'language' must be one of de, fr; got 'en'"
    event = feedback_event(
        req,
        StatusKind.ERROR,
        provider=ME,
        created_at=NOW,
        code=ErrorCode.INVALID_PARAMETER,
        message=message,
        keys=PROVIDER,
    )
    checked_by_sdk(event, PROVIDER)
    assert event.tags == (
        ("status", "error", f"INVALID_PARAMETER: {ENCRYPTED_MESSAGE}"),
        ("e", req.id),
        ("p", CUSTOMER.public_key),
        tuple(spelling),
    )
    assert _sdk_decrypt(scheme, event.content) == message


def test_a_progress_message_about_encrypted_params_goes_in_the_encrypted_content() -> None:
    req = parse_request(
        _encrypted_request(["encrypted", "nip44"]), provider=ME, decrypted_tags=PRIVATE
    )
    message = "translating 'a private sentence'"
    event = feedback_event(
        req, StatusKind.PROCESSING, provider=ME, created_at=NOW, message=message, keys=PROVIDER
    )
    checked_by_sdk(event, PROVIDER)
    assert event.tags[0] == ("status", "processing")
    assert "private sentence" not in event.to_json()
    assert _sdk_decrypt("nip44", event.content) == message


def test_encrypted_request_without_the_right_keys_is_not_answered_in_clear() -> None:
    req = parse_request(_encrypted_request(["encrypted"]), provider=ME, decrypted_tags=PRIVATE)
    for keys in (None, OTHER):
        with pytest.raises(ProtocolError, match="pass the provider's keys"):
            result_event(req, "secret result", provider=ME, created_at=NOW, keys=keys)


def test_decrypt_refuses_requests_that_are_not_ours() -> None:
    plain = sdk_event(CUSTOMER, kind=5002, tags=[["p", ME], ["i", "x", "text"]])
    with pytest.raises(ProtocolError, match="has no encrypted tag"):
        decrypt_legacy_params(plain, PROVIDER)
    with pytest.raises(ProtocolError, match="encrypted for another provider"):
        decrypt_legacy_params(_encrypted_request(["encrypted"]), OTHER)
    nobody = sdk_event(CUSTOMER, kind=5002, tags=[["encrypted"]], content="abc?iv=def")
    with pytest.raises(ProtocolError, match="names no provider"):
        decrypt_legacy_params(nobody, PROVIDER)


@pytest.mark.parametrize(
    ("spelling", "content", "fragment"),
    [
        (["encrypted"], "not a payload", "could not decrypt the params with nip04"),
        (["encrypted", "nip44"], "AAAA", "could not decrypt the params with nip44"),
        (["encrypted", "nip99"], "x", "unsupported encryption 'nip99'"),
    ],
)
def test_undecryptable_params_answer_bad_request(
    spelling: list[str], content: str, fragment: str
) -> None:
    event = sdk_event(CUSTOMER, kind=5002, tags=[["p", ME], spelling], content=content)
    with pytest.raises(JobError) as info:
        decrypt_legacy_params(event, PROVIDER)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert fragment in info.value.message


def test_params_encrypted_in_another_scheme_than_the_tag_says_are_refused() -> None:
    nip04_payload = nip04.encrypt(CUSTOMER, ME, json.dumps(PRIVATE))
    event = sdk_event(
        CUSTOMER, kind=5002, tags=[["p", ME], ["encrypted", "nip44"]], content=nip04_payload
    )
    with pytest.raises(JobError, match="with nip44"):
        decrypt_legacy_params(event, PROVIDER)


@pytest.mark.parametrize(
    ("plaintext", "fragment"),
    [
        ("hello", "not JSON"),
        ('{"i": "x"}', "not a list of tags"),
        ("[[1, 2]]", "not a list of tags"),
        ("[[]]", "not a list of tags"),
        ('["i", "x"]', "not a list of tags"),
    ],
)
def test_decrypted_params_must_be_a_json_tag_list(plaintext: str, fragment: str) -> None:
    event = _encrypted_request(["encrypted", "nip44"], plaintext)
    with pytest.raises(JobError, match=fragment):
        decrypt_legacy_params(event, PROVIDER)


def test_nostrdvm_style_whole_tag_list_encryption_is_read() -> None:
    # nostrdvm encrypts every tag, p and output included (research/nostrdvm.md §1.8).
    everything = [*PRIVATE, ["output", "text/plain"], ["p", ME], ["bid", "5000"]]
    event = _encrypted_request(["encrypted"], json.dumps(everything))
    req = parse_request(event, provider=ME, decrypted_tags=decrypt_legacy_params(event, PROVIDER))
    assert req.output == "text/plain"
    assert req.bid_msat == 5000
    assert req.providers == (ME,)


def test_feedback_tags_per_status() -> None:
    req = _plain_request()
    e: tuple[str, ...] = ("e", req.id)
    p: tuple[str, ...] = ("p", CUSTOMER.public_key)
    cases: list[tuple[UnsignedEvent, list[tuple[str, ...]]]] = [
        (
            feedback_event(req, "processing", provider=ME, created_at=NOW),
            [("status", "processing"), e, p],
        ),
        (
            feedback_event(
                req,
                StatusKind.PROCESSING,
                provider=ME,
                created_at=NOW,
                message="2 jobs ahead",
                relay_hint="wss://seen.example",
            ),
            [("status", "processing", "2 jobs ahead"), ("e", req.id, "wss://seen.example"), p],
        ),
        (
            feedback_event(
                req,
                StatusKind.PAYMENT_REQUIRED,
                provider=ME,
                created_at=NOW,
                amount_msat=21000,
                bolt11="lnbc210n1x",
            ),
            [("status", "payment-required"), ("amount", "21000", "lnbc210n1x"), e, p],
        ),
        (
            feedback_event(
                req,
                StatusKind.ERROR,
                provider=ME,
                created_at=NOW,
                code=ErrorCode.INVALID_PARAMETER,
                message="language 'xx' is not supported",
            ),
            [("status", "error", "INVALID_PARAMETER: language 'xx' is not supported"), e, p],
        ),
        (
            feedback_event(req, StatusKind.ERROR, provider=ME, created_at=NOW, code="TIMEOUT"),
            [("status", "error", "TIMEOUT"), e, p],
        ),
        (
            feedback_event(req, StatusKind.SUCCESS, provider=ME, created_at=NOW),
            [("status", "success"), e, p],
        ),
        (
            feedback_event(req, StatusKind.CANCELLED, provider=ME, created_at=NOW),
            [("status", "cancelled"), e, p],
        ),
    ]
    for event, tags in cases:
        assert event.kind == 7000
        assert event.pubkey == ME
        assert event.created_at == NOW
        assert event.tags == tuple(tags)
        checked_by_sdk(event, PROVIDER)
    partial = feedback_event(req, StatusKind.PARTIAL, provider=ME, created_at=NOW, content="Guten")
    assert partial.content == "Guten"


@pytest.mark.parametrize(
    ("status", "kwargs", "fragment"),
    [
        (StatusKind.OFFER, {}, "no 'offer' status"),
        ("paused", {}, "unknown job status 'paused'"),
        (StatusKind.ERROR, {}, "needs an error code"),
        (StatusKind.PAYMENT_REQUIRED, {}, "needs amount_msat"),
        (StatusKind.PAYMENT_REQUIRED, {"amount_msat": -1}, "non-negative"),
        (StatusKind.PAYMENT_REQUIRED, {"amount_msat": True}, "non-negative"),
    ],
)
def test_feedback_refuses_what_nip90_cannot_say(
    status: str, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        feedback_event(_plain_request(), status, provider=ME, created_at=NOW, **kwargs)


def test_result_carries_request_e_each_i_p_and_amount() -> None:
    req = _plain_request()
    result = legacy_result_event(
        req,
        "Good morning",
        provider=ME,
        created_at=NOW,
        amount_msat=1000,
        relay_hint="wss://seen.example",
    )
    assert result.kind == 6002
    assert result.content == "Good morning"
    assert result.tags == (
        ("request", req.event.to_json()),
        ("e", req.id, "wss://seen.example"),
        ("i", "Guten Morgen", "text", "", "greeting"),
        ("i", "https://x.example/t.txt", "url"),
        ("p", CUSTOMER.public_key),
        ("amount", "1000"),
    )
    theirs = checked_by_sdk(result, PROVIDER)
    # The embedded request is the customer's event, verifiable on its own.
    embedded = nostr_sdk.Event.from_json(theirs.tags()[0].to_vec()[1])
    assert embedded.verify()
    assert embedded.id().to_hex() == req.id


def test_dialect_neutral_entry_points_answer_legacy_requests_in_nip90() -> None:
    req = _plain_request()
    assert status_event(req, "processing", provider=ME, created_at=NOW).kind == 7000
    assert result_event(req, "x", provider=ME, created_at=NOW).kind == 6002
    assert status_event(
        req, StatusKind.ERROR, provider=ME, created_at=NOW, code="BAD_REQUEST", message="no"
    ).tags[0] == ("status", "error", "BAD_REQUEST: no")


def test_we_decrypt_what_our_own_nip44_customer_side_encrypts() -> None:
    payload = nip44.encrypt_to(CUSTOMER, ME, json.dumps(PRIVATE))
    event = sdk_event(
        CUSTOMER, kind=5002, tags=[["p", ME], ["encrypted", "NIP44"]], content=payload
    )
    assert decrypt_legacy_params(event, PROVIDER) == PRIVATE


texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)
spellings = st.sampled_from([["encrypted"], ["encrypted", "nip04"], ["encrypted", "nip44"]])


def _attempt(event: Event) -> list[list[str]] | DVMError:
    try:
        return decrypt_legacy_params(event, PROVIDER)
    except (ProtocolError, JobError) as exc:
        return exc


@settings(max_examples=200)
@given(spelling=spellings, content=texts, plaintext=texts)
def test_arbitrary_encrypted_content_raises_only_protocol_or_job_errors(
    spelling: list[str], content: str, plaintext: str
) -> None:
    # Garbage ciphertext, and well-encrypted garbage plaintext in the scheme the tag names.
    payloads = [content]
    if plaintext:
        if spelling[1:] == ["nip44"]:
            payloads.append(nip44.encrypt_to(CUSTOMER, ME, plaintext))
        else:
            payloads.append(nip04.encrypt(CUSTOMER, ME, plaintext))
    for payload in payloads:
        tags = (("p", ME), tuple(spelling))
        event = Event("00" * 32, CUSTOMER.public_key, NOW, 5002, tags, payload, "")
        outcome = _attempt(event)
        if isinstance(outcome, DVMError):
            assert isinstance(outcome, JobError)
            assert outcome.code == ErrorCode.BAD_REQUEST
            continue
        assert all(tag and all(isinstance(v, str) for v in tag) for tag in outcome)
