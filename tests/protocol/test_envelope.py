"""Private jobs' envelopes (protocol.envelope): the stored form, and wrapping both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import GiftWrapError, ProtocolError
from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.protocol.envelope import RUMOR_SIG, Envelope, open_wrap, seal_answer, wrap_request

from .sdk import CUSTOMER, NOW, OTHER, PROVIDER, sdk_event


@pytest.mark.parametrize(
    "envelope",
    [Envelope(), Envelope("simple", 1059), Envelope("nip59", 21059), Envelope("nip59", 1059)],
)
def test_an_envelope_reads_back_what_it_writes(envelope: Envelope) -> None:
    assert Envelope.parse(str(envelope)) == envelope


@pytest.mark.parametrize(
    "text",
    [
        "",
        "simple",
        "simple:",
        "x:1059",
        "simple:1060",
        "simple:-1059",
        "simple:²",  # a digit to str.isdigit, not to int()
        "simple:٣",
        "simple:" + "9" * 5000,  # past int()'s digit limit
    ],
)
def test_anything_else_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        Envelope.parse(text)


@given(st.text(max_size=30))
def test_any_text_is_an_envelope_or_a_protocol_error(text: str) -> None:
    try:
        envelope = Envelope.parse(text)
    except ProtocolError:
        return
    assert Envelope.parse(str(envelope)) == envelope


def _request() -> Event:
    return sdk_event(CUSTOMER, kind=5050, tags=[["i", "a private prompt", "text"]])


@pytest.mark.parametrize("envelope", [Envelope(), Envelope("nip59", 1059)])
def test_a_wrapped_request_opens_as_the_same_job_for_its_dvm_only(envelope: Envelope) -> None:
    request = _request()
    wrap = wrap_request(request, CUSTOMER, PROVIDER.public_key, envelope)
    assert wrap.kind == envelope.kind
    assert "private prompt" not in wrap.to_json()
    opened = open_wrap(wrap, PROVIDER)
    assert opened.envelope == envelope
    # The job's identity survives either form; only the simple form keeps the signature.
    assert (opened.event.id, opened.event.pubkey, opened.event.tags) == (
        request.id,
        request.pubkey,
        request.tags,
    )
    assert opened.event.sig == (request.sig if envelope.form == "simple" else RUMOR_SIG)
    with pytest.raises(GiftWrapError):
        open_wrap(wrap, OTHER)


def test_only_its_author_wraps_a_request() -> None:
    with pytest.raises(ProtocolError, match="own author"):
        wrap_request(_request(), OTHER, PROVIDER.public_key)


@pytest.mark.parametrize("envelope", [Envelope(), Envelope("nip59", 21059)])
def test_an_answer_goes_back_in_the_envelope_its_request_came_in(envelope: Envelope) -> None:
    answer = UnsignedEvent(PROVIDER.public_key, NOW, 25000, (("e", "ab" * 32),), "done")
    inner_id, wrap = seal_answer(answer, PROVIDER, CUSTOMER.public_key, envelope)
    assert inner_id == answer.id
    opened = open_wrap(wrap, CUSTOMER)
    assert opened.envelope == envelope
    assert (opened.event.id, opened.event.content) == (answer.id, "done")
