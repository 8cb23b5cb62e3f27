"""Private jobs with nostr-sdk 0.45.1 as the customer: it does every bit of the crypto.

nostr-sdk gift-wraps the request (full NIP-59, or ContextVM's simplified wrap built from its
primitives, SPECS.md §3.4) and opens the DVM's answer; for NIP-90 encrypted params
(SPECS.md §1.3) it encrypts the params and decrypts the answers, in NIP-04 and NIP-44.
nostr-sdk's ``UnwrappedGift`` knows kind 1059 only, so its NIP-59 requests are 1059.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import nostr_sdk
import pytest

from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.protocol.envelope import open_wrap, rumor_event
from dvmkit.protocol.legacy import ENCRYPTED_MESSAGE

from .conftest import WAIT, Customer, error_of
from .private import recording_dvm


async def next_event(stream: Any, check: Callable[[nostr_sdk.Event], bool]) -> nostr_sdk.Event:
    """The next event on a nostr-sdk notification stream for which ``check`` holds."""
    async with asyncio.timeout(WAIT):
        while (note := await stream.next()) is not None and not note.is_shutdown():
            if note.is_new_event() and check(note.event):
                return note.event
    raise AssertionError("the nostr-sdk client shut down")


def is_wrap_to(event: nostr_sdk.Event, customer: Customer) -> bool:
    ours = Event.from_json(event.as_json())
    return ours.kind in (1059, 21059) and customer.pubkey in ours.tag_values("p")


def dvm_pub(dvm_key: str) -> nostr_sdk.PublicKey:
    return nostr_sdk.PublicKey.parse(dvm_key)


async def test_nostr_sdk_gift_wraps_a_request_and_unwraps_the_answer(
    relay_url: str, customer: Customer
) -> None:
    dvm, calls = recording_dvm(relay_url)
    async with dvm.running():
        stream = customer.client.notifications()
        rumor = (
            nostr_sdk.EventBuilder(nostr_sdk.Kind(25000), "from nostr-sdk")
            .tags([nostr_sdk.Tag.public_key(dvm_pub(dvm.public_key))])
            .finalize_unsigned(customer.sdk_keys.public_key())
            .ensure_id()
        )
        job_id = rumor.id().to_hex()
        wrap = nostr_sdk.nip59_make_gift_wrap(customer.sdk_keys, dvm_pub(dvm.public_key), rumor)
        assert wrap.kind().as_u16() == 1059
        assert (await customer.client.send_event(wrap)).success

        answers: list[nostr_sdk.UnsignedEvent] = []

        def final(event: nostr_sdk.Event) -> bool:
            if not is_wrap_to(event, customer):
                return False
            gift = nostr_sdk.UnwrappedGift.from_gift_wrap(customer.sdk_keys, event)
            assert gift.sender().to_hex() == dvm.public_key
            answers.append(gift.rumor())
            answer = UnsignedEvent.from_dict(json.loads(gift.rumor().as_json()))
            return rumor_event(answer).tag_value("status") in ("success", "error")

        answer_wrap = await next_event(stream, final)

    result = rumor_event(UnsignedEvent.from_dict(json.loads(answers[-1].as_json())))
    assert [a.kind().as_u16() for a in answers] == [25000, 25000, 25000]
    assert result.content == "FROM NOSTR-SDK"
    assert result.tag_value("status") == "success"
    assert result.tag_values("e") == [job_id]
    assert result.tag_values("p") == [customer.pubkey]
    # Answered in the form it came: NIP-59, kind 1059.
    ours = open_wrap(Event.from_json(answer_wrap.as_json()), customer.keys)
    assert (ours.envelope.form, ours.envelope.kind) == ("nip59", 1059)
    assert calls == [job_id]


async def test_a_simplified_wrap_built_with_nostr_sdk_is_answered_and_opened(
    relay_url: str, customer: Customer
) -> None:
    dvm, calls = recording_dvm(relay_url)
    dvm_key = dvm_pub(dvm.public_key)
    async with dvm.running():
        stream = customer.client.notifications()
        # CEP-4 step by step: sign, stringify, encrypt with a one-time key, wrap in 21059.
        inner = (
            nostr_sdk.EventBuilder(nostr_sdk.Kind(25000), "simple and sdk")
            .tags([nostr_sdk.Tag.public_key(dvm_key)])
            .finalize(customer.sdk_keys)
        )
        one_time = nostr_sdk.Keys.generate()
        content = nostr_sdk.nip44_encrypt(
            one_time.secret_key(), dvm_key, inner.as_json(), nostr_sdk.Nip44Version.V2
        )
        wrap = (
            nostr_sdk.EventBuilder(nostr_sdk.Kind(21059), content)
            .tags([nostr_sdk.Tag.public_key(dvm_key)])
            .finalize(one_time)
        )
        assert (await customer.client.send_event(wrap)).success

        opened: list[nostr_sdk.Event] = []

        def final(event: nostr_sdk.Event) -> bool:
            if not is_wrap_to(event, customer):
                return False
            assert event.kind().as_u16() == 21059
            plaintext = nostr_sdk.nip44_decrypt(
                customer.sdk_keys.secret_key(), event.author(), event.content()
            )
            answer = nostr_sdk.Event.from_json(plaintext)
            assert answer.verify()
            assert answer.author().to_hex() == dvm.public_key
            opened.append(answer)
            return Event.from_json(answer.as_json()).tag_value("status") in ("success", "error")

        await next_event(stream, final)

    result = Event.from_json(opened[-1].as_json())
    assert result.content == "SIMPLE AND SDK"
    assert result.tag_value("status") == "success"
    assert result.tag_values("e") == [inner.id().to_hex()]
    assert calls == [inner.id().to_hex()]


# -- NIP-90 encrypted params (legacy), nostr-sdk doing the crypto -----------------------------


SECRET_INPUT = "hidden input 7c1f"
SECRET_BAD_VALUE = "many-9d3e"  # an invalid value for an int param


def _sdk_encrypt(scheme: str, customer: Customer, dvm: nostr_sdk.PublicKey, text: str) -> str:
    secret = customer.sdk_keys.secret_key()
    if scheme == "nip04":
        return nostr_sdk.nip04_encrypt(secret, dvm, text)  # type: ignore[no-any-return]
    return nostr_sdk.nip44_encrypt(  # type: ignore[no-any-return]
        secret, dvm, text, nostr_sdk.Nip44Version.V2
    )


def _sdk_decrypt(scheme: str, customer: Customer, dvm: nostr_sdk.PublicKey, text: str) -> str:
    secret = customer.sdk_keys.secret_key()
    if scheme == "nip04":
        return nostr_sdk.nip04_decrypt(secret, dvm, text)  # type: ignore[no-any-return]
    return nostr_sdk.nip44_decrypt(secret, dvm, text)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("tag", "scheme"),
    [
        (["encrypted"], "nip04"),
        (["encrypted", "nip04"], "nip04"),
        (["encrypted", "nip44"], "nip44"),
    ],
    ids=["bare", "nip04", "nip44"],
)
async def test_legacy_encrypted_params_are_answered_encrypted_in_the_same_scheme(
    relay_url: str, customer: Customer, tag: list[str], scheme: str
) -> None:
    dvm, calls = recording_dvm(relay_url)
    dvm_key = dvm_pub(dvm.public_key)
    private = [["i", SECRET_INPUT, "text"], ["param", "times", "2"]]
    async with dvm.running():
        content = _sdk_encrypt(scheme, customer, dvm_key, json.dumps(private))
        request = await customer.request(5050, tags=[["p", dvm.public_key], tag], content=content)
        result = await customer.final(request.id)
        bad_params = [["i", SECRET_INPUT, "text"], ["param", "times", SECRET_BAD_VALUE]]
        bad = await customer.request(
            5050,
            tags=[["p", dvm.public_key], tag],
            content=_sdk_encrypt(scheme, customer, dvm_key, json.dumps(bad_params)),
        )
        refusal = await customer.final(bad.id)
        since = nostr_sdk.Timestamp.from_secs(int(time.time()) - 600)
        stored = await customer.fetch(nostr_sdk.Filter().since(since))

    assert result.kind == 6050
    assert result.pubkey == dvm.public_key
    expected = f"{SECRET_INPUT.upper()} {SECRET_INPUT.upper()}"
    assert _sdk_decrypt(scheme, customer, dvm_key, result.content) == expected
    # The same scheme, not merely one the customer can decrypt: NIP-04 payloads carry "?iv=".
    assert ("?iv=" in result.content) is (scheme == "nip04")
    assert result.tag("encrypted") == tuple(tag)  # the customer's own spelling
    assert result.tag("i") is None
    assert [t[0] for t in result.tags] == ["request", "e", "p", "encrypted"]
    feedback = [e for e in customer.answers(request.id) if e.kind == 7000]
    assert [e.tag_value("status") for e in feedback] == ["processing", "partial"]
    partial = feedback[1]
    assert partial.tag("encrypted") == tuple(tag)
    assert _sdk_decrypt(scheme, customer, dvm_key, partial.content) == SECRET_INPUT[::-1]
    # The progress message is the handler's own words, which may quote the input: encrypted.
    assert feedback[0].tag("status") == ("status", "processing")
    assert _sdk_decrypt(scheme, customer, dvm_key, feedback[0].content) == "warming up"
    # The error names the refused value: only in the encrypted content, not in its tag.
    code, message = error_of(refusal)
    assert (code, message) == ("INVALID_PARAMETER", ENCRYPTED_MESSAGE)
    assert refusal.tag("encrypted") == tuple(tag)
    assert SECRET_BAD_VALUE in _sdk_decrypt(scheme, customer, dvm_key, refusal.content)
    assert calls == [request.id]
    # The clear input is nowhere on the relay; the requests and answers are.
    ids = {e.id().to_hex() for e in stored}
    assert {request.id, bad.id, result.id, partial.id} <= ids
    for event in stored:
        raw = event.as_json()
        assert SECRET_INPUT not in raw
        assert SECRET_INPUT.upper() not in raw
        assert SECRET_INPUT[::-1] not in raw
        assert SECRET_BAD_VALUE not in raw
