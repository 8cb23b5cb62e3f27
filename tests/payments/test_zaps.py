"""NIP-57 zap requests and receipts: the checks an LNURL server and a DVM make.

Receipts carry real BOLT-11 invoices signed by a test node key, exactly as a wallet makes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dvmkit.errors import InvalidEvent, PaymentError
from dvmkit.nostr.event import Event, compute_id, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.zaps import (
    MAX_DESCRIPTION,
    ZAP_RECEIPT_KIND,
    ZAP_REQUEST_KIND,
    InvalidZap,
    ZapReceipt,
    check_zap_request,
    receipt_event,
    verify_receipt,
    zap_request,
)

NODE_KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")
SERVER = Keys(bytes(31) + b"\x01")  # the DVM's LNURL server (nostrPubkey)
CUSTOMER = Keys(bytes(31) + b"\x02")
DVM = Keys(bytes(31) + b"\x03").public_key
OTHER = Keys(bytes(31) + b"\x04")
JOB = hashlib.sha256(b"job request").hexdigest()
OTHER_JOB = hashlib.sha256(b"another job").hexdigest()
PREIMAGE = bytes(range(32))
RELAY = "wss://relay.example.com"
AMOUNT = 21_000
PAID_AT = 1_700_000_100


def request(**changes: Any) -> Event:
    args: dict[str, Any] = {
        "recipient": DVM,
        "amount_msat": AMOUNT,
        "relays": [RELAY],
        "event_id": JOB,
        "created_at": 1_700_000_000,
    }
    args.update(changes)
    return zap_request(CUSTOMER, **args)


def invoice(
    description: str, *, amount_msat: int | None = AMOUNT, hashed: str | None = None
) -> str:
    return bolt11.encode(
        NODE_KEY,
        payment_hash=hashlib.sha256(PREIMAGE).digest(),
        amount_msat=amount_msat,
        timestamp=1_700_000_000,
        description_hash=hashlib.sha256((hashed or description).encode()).digest(),
        payment_secret=bytes(32),
    )


def receipt(
    zap: Event | None = None,
    *,
    amount_msat: int | None = AMOUNT,
    description: str | None = None,
    tags: Sequence[tuple[str, ...]] | None = None,
    keys: Keys = SERVER,
) -> Event:
    """A receipt as the server signs it; ``tags`` replaces its tags wholesale."""
    zap = zap or request()
    text = description or zap.to_json()
    base = receipt_event(
        server_keys=keys,
        zap_request=zap,
        bolt11=invoice(text, amount_msat=amount_msat),
        preimage=PREIMAGE.hex(),
        paid_at=PAID_AT,
        description=text,
    )
    if tags is None:
        return base
    return sign_event(keys, kind=ZAP_RECEIPT_KIND, tags=tags, created_at=PAID_AT)


def verify(event: Event, **changes: Any) -> ZapReceipt:
    args: dict[str, Any] = {
        "signer": SERVER.public_key,
        "recipient": DVM,
        "event_id": JOB,
        "min_amount_msat": AMOUNT,
    }
    args.update(changes)
    return verify_receipt(event, **args)


def retagged(
    source: Event | Sequence[tuple[str, ...]], name: str, *values: str
) -> list[tuple[str, ...]]:
    """The tags with ``name`` set to ``values`` (or removed, with no values)."""
    tags = source.tags if isinstance(source, Event) else source
    out = [t for t in tags if t[0] != name]
    return out + [(name, v) for v in values]


def rejects(reason: str, event: Event, **changes: Any) -> InvalidZap:
    with pytest.raises(InvalidZap) as caught:
        verify(event, **changes)
    assert caught.value.reason == reason, str(caught.value)
    assert isinstance(caught.value, PaymentError)
    return caught.value


# -- building ---------------------------------------------------------------------------------


def test_zap_request_has_the_nip57_tags_in_order() -> None:
    event = zap_request(
        CUSTOMER,
        recipient=DVM,
        amount_msat=AMOUNT,
        relays=[RELAY, "wss://two.example"],
        event_id=JOB,
        lnurl="lnurl1dp68gurn8ghj7",
        content="for job 42",
    )
    assert event.kind == ZAP_REQUEST_KIND
    assert event.tags == (
        ("relays", RELAY, "wss://two.example"),
        ("amount", "21000"),
        ("lnurl", "lnurl1dp68gurn8ghj7"),
        ("p", DVM),
        ("e", JOB),
    )
    assert (event.pubkey, event.content) == (CUSTOMER.public_key, "for job 42")
    assert event.verify()


@pytest.mark.parametrize(
    "changes",
    [{"recipient": "DVM"}, {"event_id": JOB.upper()}, {"amount_msat": 0}, {"relays": []}],
)
def test_zap_request_refuses_bad_arguments(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"hex|positive|relay"):
        request(**changes)


def test_receipt_event_carries_the_request_verbatim() -> None:
    zap = request()
    # The JSON as a client sent it (another key order): the receipt must keep these bytes.
    sent = orjson.dumps(dict(reversed(zap.to_dict().items()))).decode()
    event = receipt(zap, description=sent)
    assert event.tag_value("description") == sent
    assert event.created_at == PAID_AT
    assert [t[0] for t in event.tags] == ["p", "e", "P", "bolt11", "description", "preimage"]
    assert (event.tag_value("p"), event.tag_value("e")) == (DVM, JOB)
    assert event.tag_value("P") == CUSTOMER.public_key
    assert verify(event).id == event.id


def test_receipt_event_refuses_a_description_of_another_request() -> None:
    with pytest.raises(ValueError, match="not the JSON of the zap request"):
        receipt_event(
            server_keys=SERVER,
            zap_request=request(),
            bolt11=invoice("x"),
            preimage=None,
            paid_at=PAID_AT,
            description=request(content="other").to_json(),
        )


# -- check_zap_request (NIP-57 Appendix D) ----------------------------------------------------


def test_check_zap_request_returns_its_values() -> None:
    zap = request()
    checked = check_zap_request(zap, amount_msat=AMOUNT)
    assert (checked.recipient, checked.event_id, checked.amount_msat) == (DVM, JOB, AMOUNT)
    assert (checked.relays, checked.sender, checked.event) == ((RELAY,), CUSTOMER.public_key, zap)


def tagged_request(tags: list[tuple[str, ...]], *, kind: int = ZAP_REQUEST_KIND) -> Event:
    return sign_event(CUSTOMER, kind=kind, tags=tags, created_at=1_700_000_000)


GOOD_TAGS: list[tuple[str, ...]] = [("relays", RELAY), ("amount", "21000"), ("p", DVM), ("e", JOB)]


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ([t for t in GOOD_TAGS if t[0] != "p"], "malformed"),
        ([*GOOD_TAGS, ("p", OTHER.public_key)], "malformed"),
        ([*GOOD_TAGS[:2], ("p", "npub1notHex"), GOOD_TAGS[3]], "malformed"),
        ([*GOOD_TAGS, ("e", OTHER_JOB)], "malformed"),
        ([*GOOD_TAGS[:3], ("e", "not an id")], "malformed"),
        (GOOD_TAGS[1:], "malformed"),
        ([("relays",), *GOOD_TAGS[1:]], "malformed"),
        ([GOOD_TAGS[0], ("amount", "21k"), *GOOD_TAGS[2:]], "malformed"),
        ([GOOD_TAGS[0], ("amount", "0"), *GOOD_TAGS[2:]], "malformed"),
        ([*GOOD_TAGS, ("a", "30023:nothex:d")], "malformed"),
        ([*GOOD_TAGS, ("P", DVM), ("P", JOB)], "malformed"),
        ([GOOD_TAGS[0], ("amount", "22000"), *GOOD_TAGS[2:]], "amount"),
    ],
)
def test_check_zap_request_refuses(tags: list[tuple[str, ...]], reason: str) -> None:
    with pytest.raises(InvalidZap) as caught:
        check_zap_request(tagged_request(tags), amount_msat=AMOUNT)
    assert caught.value.reason == reason


def test_check_zap_request_refuses_wrong_kind_and_bad_signature() -> None:
    with pytest.raises(InvalidZap, match=r"^kind"):
        check_zap_request(tagged_request(GOOD_TAGS, kind=1), amount_msat=AMOUNT)
    forged = Event.from_dict({**request().to_dict(), "content": "changed"})
    with pytest.raises(InvalidZap, match=r"^signature"):
        check_zap_request(forged, amount_msat=AMOUNT)


def test_check_zap_request_accepts_no_amount_tag_and_a_coordinate() -> None:
    tags = [GOOD_TAGS[0], GOOD_TAGS[2], ("a", f"30023:{DVM}:post")]
    assert check_zap_request(tagged_request(tags), amount_msat=5).amount_msat is None


# -- verify_receipt: the zap matrix -----------------------------------------------------------


def test_a_valid_receipt_verifies() -> None:
    event = receipt()
    zap = verify(event)
    assert zap == ZapReceipt(
        id=event.id,
        payer=CUSTOMER.public_key,
        recipient=DVM,
        event_id=JOB,
        amount_msat=AMOUNT,
        payment_hash=hashlib.sha256(PREIMAGE).hexdigest(),
        bolt11=event.tag_value("bolt11") or "",
        paid_at=PAID_AT,
    )
    assert verify(event, min_amount_msat=AMOUNT - 1).amount_msat == AMOUNT


def test_receipt_signed_by_another_key_is_refused() -> None:
    rejects("signer", receipt(keys=OTHER))
    # The same valid receipt checked against another DVM's server.
    rejects("signer", receipt(), signer=OTHER.public_key)


def test_receipt_with_a_forged_signature_or_id_is_refused() -> None:
    data = receipt().to_dict()
    rejects("signature", Event.from_dict({**data, "sig": "00" * 64}))
    rejects("signature", Event.from_dict({**data, "created_at": PAID_AT + 1}))


def test_receipt_of_the_wrong_kind_is_refused() -> None:
    event = receipt()
    rejects("kind", sign_event(SERVER, kind=9734, tags=event.tags, created_at=PAID_AT))


def test_an_amount_below_the_price_is_underpaid() -> None:
    low = request(amount_msat=1_000)
    error = rejects("underpaid", receipt(low, amount_msat=1_000))
    assert "1000 msat paid, 21000 msat required" in str(error)


def test_invoice_amount_must_equal_the_requested_amount() -> None:
    # A 21 sat zap request paid with a 1 sat invoice, by a server that signs anything.
    rejects("amount", receipt(amount_msat=1_000))
    rejects("amount", receipt(amount_msat=None))  # an any-amount invoice
    rejects("amount", receipt(request(amount_msat=AMOUNT * 2)))


def test_zap_request_without_amount_is_refused() -> None:
    zap = tagged_request([("relays", RELAY), ("p", DVM), ("e", JOB)])
    rejects("amount", receipt(zap))


def test_description_hash_must_match_the_description() -> None:
    zap = request()
    honest = receipt(zap)
    other = invoice("x", hashed=request(content="other").to_json())
    rejects("description_hash", receipt(tags=retagged(honest, "bolt11", other)))
    plain = bolt11.encode(
        NODE_KEY, payment_hash=bytes(32), amount_msat=AMOUNT, description=zap.to_json()
    )
    rejects("description_hash", receipt(tags=retagged(honest, "bolt11", plain)))


def test_recipient_must_match_in_receipt_and_request() -> None:
    honest = receipt()
    rejects("recipient", receipt(tags=retagged(honest, "p", OTHER.public_key)))
    rejects("recipient", receipt(request(recipient=OTHER.public_key)), recipient=DVM)
    # A valid zap for another DVM (same server) does not pay this one.
    rejects("recipient", honest, recipient=OTHER.public_key)


def test_event_must_match_in_receipt_and_request() -> None:
    honest = receipt()
    rejects("event", receipt(tags=retagged(honest, "e", OTHER_JOB)))
    rejects("event", receipt(tags=retagged(honest, "e")))
    rejects("event", receipt(request(event_id=OTHER_JOB)))
    rejects("event", honest, event_id=OTHER_JOB)
    rejects("event", receipt(request(event_id=None)))


def test_a_forged_zap_request_signature_is_refused() -> None:
    # The server (or anyone it trusts) rewrote the request's content: the customer never
    # signed that, so it proves nothing about who paid.
    original = request()
    new_id = compute_id(original.pubkey, original.created_at, 9734, original.tags, "forged")
    forged = orjson.dumps({**original.to_dict(), "content": "forged", "id": new_id}).decode()
    honest = receipt()
    tags = retagged(retagged(honest, "description", forged), "bolt11", invoice(forged))
    assert "bad signature" in str(rejects("request", receipt(tags=tags)))


@pytest.mark.parametrize(
    "description",
    ["not json", "[]", '{"kind": 9734}', "null", '{"a":' * 600 + "1" + "}" * 600],
)
def test_a_description_that_is_no_zap_request_is_refused(description: str) -> None:
    honest = receipt()
    tags = retagged(retagged(honest, "description", description), "bolt11", invoice(description))
    rejects("request", receipt(tags=tags))


def test_a_description_of_another_kind_is_refused() -> None:
    note = sign_event(CUSTOMER, kind=1, tags=GOOD_TAGS, created_at=1).to_json()
    tags = retagged(retagged(receipt(), "description", note), "bolt11", invoice(note))
    assert "9734" in str(rejects("request", receipt(tags=tags)))


def test_oversized_description_is_refused_before_parsing() -> None:
    huge = "x" * (MAX_DESCRIPTION + 1)  # not even JSON: it must never get that far
    error = rejects("malformed", receipt(tags=retagged(receipt(), "description", huge)))
    assert str(MAX_DESCRIPTION) in str(error)
    wide = "é" * (MAX_DESCRIPTION // 2 + 1)  # under the limit in characters, over in bytes
    rejects("malformed", receipt(tags=retagged(receipt(), "description", wide)))


@pytest.mark.parametrize("name", ["bolt11", "description", "p"])
def test_missing_required_tags_are_malformed(name: str) -> None:
    rejects("malformed", receipt(tags=retagged(receipt(), name)))


@pytest.mark.parametrize("name", ["bolt11", "description", "p", "e", "P", "preimage"])
def test_repeated_tags_are_malformed(name: str) -> None:
    honest = receipt()
    value = honest.tag_value(name) or ""
    rejects("malformed", receipt(tags=retagged(honest, name, value, value)))


def test_an_empty_tag_is_malformed() -> None:
    rejects("malformed", receipt(tags=[*retagged(receipt(), "bolt11"), ("bolt11",)]))


@pytest.mark.parametrize(
    "text", ["lnbc1garbage", "", "x" * 8000, "LIGHTNING:{good}", "{good} ", "{upper}"]
)
def test_a_bad_or_non_canonical_bolt11_is_refused(text: str) -> None:
    honest = receipt()
    good = honest.tag_value("bolt11") or ""
    text = text.format(good=good, upper=good.upper())
    rejects("bolt11", receipt(tags=retagged(honest, "bolt11", text)))


def test_sender_tag_must_be_the_request_author() -> None:
    rejects("sender", receipt(tags=retagged(receipt(), "P", OTHER.public_key)))


@pytest.mark.parametrize("value", ["00" * 32, "zz", PREIMAGE.hex().upper()])
def test_a_preimage_must_hash_to_the_payment_hash(value: str) -> None:
    rejects("preimage", receipt(tags=retagged(receipt(), "preimage", value)))


def test_receipt_without_preimage_or_sender_still_verifies() -> None:
    bare = retagged(retagged(receipt(), "preimage"), "P")
    assert verify(receipt(tags=bare)).payer == CUSTOMER.public_key


# -- hostile mutations ------------------------------------------------------------------------

HONEST = receipt()
_FIELDS = ("id", "pubkey", "created_at", "kind", "content", "sig", "tags")


@st.composite
def mutated_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """The honest receipt as JSON with one field or tag value changed (signature kept)."""
    data = HONEST.to_dict()
    field = draw(st.sampled_from(_FIELDS))
    if field in ("created_at", "kind"):
        data[field] = draw(st.integers(min_value=0, max_value=65_535))
    elif field == "tags":
        index = draw(st.integers(min_value=0, max_value=len(data["tags"]) - 1))
        tag = list(data["tags"][index])
        position = draw(st.integers(min_value=0, max_value=len(tag) - 1))
        tag[position] = mutate_text(draw, tag[position])
        data["tags"][index] = tag
    else:
        data[field] = mutate_text(draw, data[field])
    return data


def mutate_text(draw: st.DrawFn, text: str) -> str:
    if not text or draw(st.booleans()):
        return draw(st.text(max_size=80))
    i = draw(st.integers(min_value=0, max_value=len(text) - 1))
    return text[:i] + draw(st.characters()) + text[i + 1 :]


@given(mutated_dicts())
def test_mutated_receipts_never_verify(data: dict[str, Any]) -> None:
    assume(data != HONEST.to_dict())
    try:
        event = Event.from_dict(data)
    except InvalidEvent:
        assume(False)  # not even an event: nothing for verify_receipt to see
        return
    with pytest.raises(InvalidZap):
        verify(event)


_SEMANTIC = ("p", "e", "P", "bolt11", "description", "preimage")


@st.composite
def resigned_tags(draw: st.DrawFn) -> list[tuple[str, ...]]:
    """Tags a compromised server could sign: a value changed, a tag dropped or repeated."""
    tags = [tuple(t) for t in HONEST.tags]
    name = draw(st.sampled_from(_SEMANTIC))
    index = next(i for i, t in enumerate(tags) if t[0] == name)
    action = draw(st.sampled_from(["change", "drop", "repeat"]))
    if action == "drop":
        assume(name not in ("P", "preimage"))  # optional: a receipt without them is valid
        del tags[index]
    elif action == "repeat":
        tags.insert(draw(st.integers(0, len(tags))), tags[index])
    else:
        old = tags[index][1]
        new = mutate_text(draw, old)
        assume(new != old)
        tags[index] = (name, new)
    return tags


@given(resigned_tags())
def test_resigned_mutations_never_verify(tags: list[tuple[str, ...]]) -> None:
    with pytest.raises(InvalidZap):
        verify(sign_event(SERVER, kind=ZAP_RECEIPT_KIND, tags=tags, created_at=PAID_AT))
