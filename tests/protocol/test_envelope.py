"""Private jobs' envelopes (protocol.envelope): the stored form, and wrapping both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import ProtocolError
from dvmkit.protocol.envelope import Envelope


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
