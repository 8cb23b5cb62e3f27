"""Money on the wire: payment tags, the customer's payment message, refunds (protocol.payment)."""

from __future__ import annotations

import dataclasses

import nostr_sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import UnsignedEvent
from dvmkit.protocol.job import StatusKind, parse_request
from dvmkit.protocol.payment import (
    MAX_PAYLOAD,
    Refund,
    is_payment,
    payment_event,
    read_methods,
    read_payment,
    read_refund,
    refund_address,
    refund_address_tag,
    refund_tag,
)
from dvmkit.protocol.response import status_event

from .sdk import CUSTOMER, NOW, OTHER, PROVIDER, sdk_event

JOB = "ab" * 32
TOKEN = "cashuBo2FteCJodHRwOi8vMTI3LjAuMC4xOjMzMzg"


def test_a_payment_message_opens_only_for_its_provider() -> None:
    event = payment_event(
        CUSTOMER,
        job_id=JOB,
        provider=PROVIDER.public_key,
        method="cashu",
        payload=TOKEN,
        created_at=NOW,
    )
    assert event.kind == 25000
    assert is_payment(event)
    assert TOKEN not in event.to_json()  # a token is money: never in the clear
    opened = read_payment(event, PROVIDER)
    assert (opened.job_id, opened.payer, opened.method, opened.payload) == (
        JOB,
        CUSTOMER.public_key,
        "cashu",
        TOKEN,
    )
    assert TOKEN not in repr(opened)
    with pytest.raises(ProtocolError, match="another provider"):
        read_payment(event, OTHER)


def test_a_payment_message_encrypted_to_someone_else_does_not_open() -> None:
    event = payment_event(
        CUSTOMER,
        job_id=JOB,
        provider=OTHER.public_key,
        method="cashu",
        payload=TOKEN,
        created_at=NOW,
    )
    # Re-addressed to us by a relay or a forger: the content is still someone else's.
    tags = tuple(("p", PROVIDER.public_key) if t[0] == "p" else t for t in event.tags)
    forged = UnsignedEvent(event.pubkey, event.created_at, event.kind, tags, event.content)
    with pytest.raises(ProtocolError, match="does not decrypt"):
        read_payment(forged.sign(CUSTOMER), PROVIDER)


def test_a_payment_message_is_checked_before_it_is_made() -> None:
    for bad in ("", "x" * (MAX_PAYLOAD + 1)):
        with pytest.raises(ProtocolError, match="payload"):
            payment_event(
                CUSTOMER,
                job_id=JOB,
                provider=PROVIDER.public_key,
                method="cashu",
                payload=bad,
                created_at=NOW,
            )
    with pytest.raises(ProtocolError, match="64 hex"):
        payment_event(
            CUSTOMER,
            job_id="nope",
            provider=PROVIDER.public_key,
            method="cashu",
            payload=TOKEN,
            created_at=NOW,
        )


@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=4), max_size=6), st.text())
def test_hostile_payment_messages_raise_protocol_errors_only(
    tags: list[list[str]], content: str
) -> None:
    event = UnsignedEvent(
        CUSTOMER.public_key,
        NOW,
        25000,
        (("status", "payment"), ("p", PROVIDER.public_key), *(tuple(t) for t in tags)),
        content,
    ).sign(CUSTOMER)
    # Random content is never a valid NIP-44 payload (its MAC fails): always refused.
    with pytest.raises(ProtocolError):
        read_payment(event, PROVIDER)


def test_payment_required_names_methods_and_details_in_both_dialects() -> None:
    details = {"zap": "dvm@127.0.0.1:3000", "cashu": "http://127.0.0.1:3338"}
    for kind, extra in ((25000, [["category", "text"]]), (5050, [])):
        request = parse_request(
            sdk_event(CUSTOMER, kind=kind, tags=[["i", "hi", "text"], *extra]),
            provider=PROVIDER.public_key,
        )
        unsigned = status_event(
            request,
            StatusKind.PAYMENT_REQUIRED,
            provider=PROVIDER.public_key,
            created_at=NOW,
            amount_msat=21_000,
            bolt11="lnbcrt210n1x",
            methods=("bolt11", "zap", "cashu", "zap"),
            method_details=details,
        )
        event = unsigned.sign(PROVIDER)
        assert ("amount", "21000", "lnbcrt210n1x") in event.tags
        assert read_methods(event) == {"bolt11": None, **details}
        # An independent implementation reads the same event.
        assert nostr_sdk.Event.from_json(event.to_json()).verify()


def test_a_refund_opens_for_its_customer_only() -> None:
    refund = Refund(21_000, "cashu", TOKEN)
    assert TOKEN not in repr(refund)
    tag = refund_tag(PROVIDER, CUSTOMER.public_key, refund)
    assert TOKEN not in "".join(tag)
    event = UnsignedEvent(
        PROVIDER.public_key, NOW, 25000, (("e", JOB), ("status", "error", "X", "y"), tag), ""
    ).sign(PROVIDER)
    assert read_refund(event, CUSTOMER) == refund
    with pytest.raises(ProtocolError, match="does not decrypt"):
        read_refund(event, OTHER)
    bad = UnsignedEvent(
        PROVIDER.public_key, NOW, 25000, (("refund", "lots", "cashu", tag[3]),), ""
    ).sign(PROVIDER)
    with pytest.raises(ProtocolError, match="bad amount"):
        read_refund(bad, CUSTOMER)
    plain = dataclasses.replace(event, tags=(("e", JOB),))
    assert read_refund(plain, CUSTOMER) is None


def test_a_request_names_where_its_refund_goes() -> None:
    event = sdk_event(CUSTOMER, kind=5050, tags=[["refund", "alice@127.0.0.1:8080"]])
    assert refund_address(event) == "alice@127.0.0.1:8080"
    assert refund_address(sdk_event(CUSTOMER, kind=5050, tags=[["refund", ""]])) is None
    assert refund_address(sdk_event(CUSTOMER, kind=5050, tags=[])) is None


@pytest.mark.parametrize(
    ("given_address", "written"),
    [
        ("Alice@127.0.0.1:8080", "alice@127.0.0.1:8080"),
        ("dvm.bot+x@example.com", "dvm.bot+x@example.com"),
        (" LNBCRT210N1P4SZX9J ", "lnbcrt210n1p4szx9j"),
    ],
)
def test_a_refund_address_is_written_as_a_reader_reads_it(given_address: str, written: str) -> None:
    tag = refund_address_tag(given_address)
    assert tag == ("refund", written)
    assert refund_address(sdk_event(CUSTOMER, kind=5050, tags=[list(tag)])) == written


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "alice",
        "@host",
        "alice@",
        "a b@host",
        "https://host/lnurlp/a",
        "ln",
        "lnbc 1",
        "alice@host/path",
        "ali\x00ce@host",
        "a" * 3000 + "@host",
        "ln" + "q" * 3000,
    ],
)
def test_a_refund_address_that_is_neither_address_nor_invoice_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="lightning address"):
        refund_address_tag(bad)


@given(st.text(max_size=300))
def test_any_text_is_refused_or_read_back_unchanged(text: str) -> None:
    try:
        tag = refund_address_tag(text)
    except ValueError:
        return
    assert refund_address(sdk_event(CUSTOMER, kind=5050, tags=[list(tag)])) == tag[1]
    assert tag[1] == text.strip().lower()
