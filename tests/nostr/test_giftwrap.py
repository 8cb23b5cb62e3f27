"""NIP-59 gift wrap and the ContextVM simplified wrap: the NIP-59 worked example, round trips,
nostr-sdk both ways, and forged or damaged wraps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import DecryptionError, GiftWrapError, InvalidEvent, InvalidKey
from dvmkit.nostr import giftwrap, nip44
from dvmkit.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from dvmkit.nostr.keys import Keys

EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "nips-examples-derived.json").read_text()
)["nip59_gift_wrap"]

ALICE = Keys(bytes.fromhex("11" * 32))
BOB = Keys(bytes.fromhex("22" * 32))
CAROL = Keys(bytes.fromhex("33" * 32))
NOW = 1_750_000_000


def _rumor(author: Keys = ALICE, content: str = "job input ✓", kind: int = 25000) -> UnsignedEvent:
    return giftwrap.make_rumor(
        author.public_key, kind=kind, content=content, tags=[["t", "translate"]], created_at=NOW
    )


def _signed(author: Keys = ALICE, content: str = "signed job", kind: int = 25910) -> Event:
    return sign_event(author, kind=kind, content=content, tags=[["p", BOB.public_key]])


def _resign(
    event: Event,
    keys: Keys,
    *,
    kind: int | None = None,
    content: str | None = None,
    tags: list[list[str]] | None = None,
) -> Event:
    """``event`` with fields changed and a valid signature again by ``keys``."""
    return sign_event(
        keys,
        kind=event.kind if kind is None else kind,
        content=event.content if content is None else content,
        tags=event.tags if tags is None else tags,
        created_at=event.created_at,
    )


# -- the worked example of 59.md ----------------------------------------------------------


def test_the_nip59_example_unwraps_to_the_listed_rumor_seal_and_sender() -> None:
    recipient = Keys(bytes.fromhex(EXAMPLE["recipient_private_key"]))
    author = Keys(bytes.fromhex(EXAMPLE["author_private_key"]))
    wrapper = Keys(bytes.fromhex(EXAMPLE["ephemeral_wrapper_private_key"]))
    wrap_event = parse_event(EXAMPLE["gift_wrap"])
    assert wrap_event.pubkey == wrapper.public_key
    assert wrap_event.tag_value("p") == recipient.public_key

    opened = giftwrap.unwrap(wrap_event, recipient)

    assert opened.form == "nip59"
    assert opened.sender == author.public_key == EXAMPLE["rumor"]["pubkey"]
    assert opened.wrap_id == EXAMPLE["gift_wrap"]["id"]
    assert opened.wrap_kind == 1059
    assert isinstance(opened.inner, UnsignedEvent)
    assert opened.inner.to_dict() == EXAMPLE["rumor"]
    assert opened.seal is not None
    assert opened.seal.to_dict() == EXAMPLE["seal"]


def test_the_nip59_example_is_not_for_anyone_else() -> None:
    with pytest.raises(GiftWrapError, match="not addressed"):
        giftwrap.unwrap(parse_event(EXAMPLE["gift_wrap"]), BOB)


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [1059, 21059])
def test_nip59_round_trip(kind: int) -> None:
    rumor = _rumor()
    wrapped = giftwrap.gift_wrap(rumor, ALICE, BOB.public_key, kind=kind)
    assert wrapped.kind == kind
    assert wrapped.tags == (("p", BOB.public_key),)
    assert wrapped.pubkey not in (ALICE.public_key, BOB.public_key)
    opened = giftwrap.unwrap(wrapped, BOB)
    assert (opened.form, opened.sender, opened.inner) == ("nip59", ALICE.public_key, rumor)
    assert (opened.wrap_id, opened.wrap_kind) == (wrapped.id, kind)
    assert opened.seal is not None
    assert (opened.seal.kind, opened.seal.tags) == (13, ())


@pytest.mark.parametrize("kind", [1059, 21059])
def test_simplified_round_trip(kind: int) -> None:
    inner = _signed()
    wrapped = giftwrap.wrap_signed(inner, BOB.public_key, kind=kind)
    assert wrapped.kind == kind
    assert wrapped.tags == (("p", BOB.public_key),)
    opened = giftwrap.unwrap(wrapped, BOB)
    assert (opened.form, opened.sender, opened.inner) == ("simple", ALICE.public_key, inner)
    assert (opened.wrap_id, opened.wrap_kind, opened.seal) == (wrapped.id, kind, None)


def test_the_simplified_wrap_is_ephemeral_by_default() -> None:
    assert giftwrap.wrap_signed(_signed(), BOB.public_key).kind == 21059
    assert giftwrap.gift_wrap(_rumor(), ALICE, BOB.public_key).kind == 1059


def test_seal_and_wrap_times_are_backdated_up_to_two_days() -> None:
    draws: list[int] = []

    def random(n: int) -> int:
        draws.append(n)
        return n - 1  # the largest allowed tweak

    wrapped = giftwrap.gift_wrap(
        _rumor(), ALICE, BOB.public_key, clock=lambda: NOW + 0.9, random=random
    )
    opened = giftwrap.unwrap(wrapped, BOB)
    assert draws == [2 * 86400 + 1] * 2
    assert wrapped.created_at == NOW - 2 * 86400
    assert opened.seal is not None
    assert opened.seal.created_at == NOW - 2 * 86400
    assert opened.inner.created_at == NOW  # the rumor keeps the real time


def test_an_ephemeral_wrap_carries_the_current_time_around_a_backdated_seal() -> None:
    # Relays forward 21059 only live, to subscriptions with since=now.
    wrapped = giftwrap.gift_wrap(
        _rumor(), ALICE, BOB.public_key, kind=21059, clock=lambda: NOW, random=lambda n: 3600
    )
    opened = giftwrap.unwrap(wrapped, BOB)
    assert wrapped.created_at == NOW
    assert opened.seal is not None
    assert opened.seal.created_at == NOW - 3600


def test_explicit_times_one_time_key_nonce_and_extra_tags() -> None:
    wrapper = Keys(bytes.fromhex("44" * 32))
    sealed = giftwrap.seal(_rumor(), ALICE, BOB.npub, created_at=5, nonce=bytes(32))
    again = giftwrap.seal(_rumor(), ALICE, BOB.public_key, created_at=5, nonce=bytes(32))
    assert (sealed.content, sealed.created_at) == (again.content, 5)
    wrapped = giftwrap.wrap(
        sealed,
        BOB.npub,
        wrapper=wrapper,
        created_at=7,
        nonce=bytes(32),
        extra_tags=[["expiration", "99"]],
    )
    assert (wrapped.pubkey, wrapped.created_at) == (wrapper.public_key, 7)
    assert wrapped.tags == (("p", BOB.public_key), ("expiration", "99"))
    assert giftwrap.unwrap(wrapped, BOB).sender == ALICE.public_key
    simple = giftwrap.wrap_signed(_signed(), BOB.public_key, clock=lambda: NOW)
    assert simple.created_at == NOW  # ContextVM: the current time, not backdated


def test_unwrapped_is_frozen() -> None:
    opened = giftwrap.unwrap(giftwrap.wrap_signed(_signed(), BOB.public_key), BOB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opened.sender = CAROL.public_key  # type: ignore[misc]


# -- nostr-sdk 0.45.1 both ways -----------------------------------------------------------

SDK_ALICE = nostr_sdk.Keys.parse(ALICE.secret_hex())
SDK_BOB = nostr_sdk.Keys.parse(BOB.secret_hex())
BOB_PUB = nostr_sdk.PublicKey.parse(BOB.public_key)
TEXTS = st.text(min_size=0, max_size=300)


@given(TEXTS)
def test_nostr_sdk_unwraps_our_gift_wrap(text: str) -> None:
    rumor = _rumor(content=text)
    wrapped = giftwrap.gift_wrap(rumor, ALICE, BOB.public_key)
    theirs = nostr_sdk.UnwrappedGift.from_gift_wrap(
        SDK_BOB, nostr_sdk.Event.from_json(wrapped.to_json())
    )
    assert theirs.sender().to_hex() == ALICE.public_key
    assert json.loads(theirs.rumor().as_json()) == rumor.to_dict()


def test_nostr_sdk_unwraps_only_kind_1059() -> None:
    """nostr-sdk 0.45.1's ``UnwrappedGift`` refuses the ephemeral kind 21059 it does not know."""
    wrapped = giftwrap.gift_wrap(_rumor(), ALICE, BOB.public_key, kind=21059)
    with pytest.raises(nostr_sdk.NostrSdkError, match="not a gift wrap"):
        nostr_sdk.UnwrappedGift.from_gift_wrap(
            SDK_BOB, nostr_sdk.Event.from_json(wrapped.to_json())
        )


@given(TEXTS)
def test_we_unwrap_nostr_sdks_gift_wrap(text: str) -> None:
    rumor = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(14), text)
        .finalize_unsigned(SDK_ALICE.public_key())
        .ensure_id()
    )
    wrapped = nostr_sdk.nip59_make_gift_wrap(SDK_ALICE, BOB_PUB, rumor)
    opened = giftwrap.unwrap(parse_event(wrapped.as_json()), BOB)
    assert (opened.form, opened.sender) == ("nip59", ALICE.public_key)
    assert opened.inner.to_dict() == json.loads(rumor.as_json())
    assert opened.inner.content == text


@given(TEXTS)
def test_nostr_sdk_opens_our_simplified_wrap(text: str) -> None:
    inner = _signed(content=text)
    wrapped = giftwrap.wrap_signed(inner, BOB.public_key)
    plaintext = nostr_sdk.nip44_decrypt(
        SDK_BOB.secret_key(), nostr_sdk.PublicKey.parse(wrapped.pubkey), wrapped.content
    )
    theirs = nostr_sdk.Event.from_json(plaintext)
    assert theirs.verify()
    assert json.loads(theirs.as_json()) == inner.to_dict()


@given(TEXTS)
def test_we_open_a_simplified_wrap_built_by_nostr_sdk(text: str) -> None:
    # CEP-4 step by step with nostr-sdk: sign, stringify, encrypt with a one-time key, wrap.
    inner = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(25910), text)
        .tags([nostr_sdk.Tag.public_key(BOB_PUB)])
        .finalize(SDK_ALICE)
    )
    one_time = nostr_sdk.Keys.generate()
    content = nostr_sdk.nip44_encrypt(
        one_time.secret_key(), BOB_PUB, inner.as_json(), nostr_sdk.Nip44Version.V2
    )
    wrapped = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(21059), content)
        .tags([nostr_sdk.Tag.public_key(BOB_PUB)])
        .finalize(one_time)
    )
    opened = giftwrap.unwrap(parse_event(wrapped.as_json()), BOB)
    assert (opened.form, opened.sender, opened.wrap_kind) == ("simple", ALICE.public_key, 21059)
    assert opened.inner.to_dict() == json.loads(inner.as_json())


# -- forged and damaged wraps -------------------------------------------------------------


def test_a_seal_by_someone_other_than_the_rumor_author_is_rejected() -> None:
    # Carol seals a rumor that claims Alice wrote it (NIP-17: check seal pubkey == rumor pubkey).
    forged_rumor = _rumor(author=ALICE)
    content = nip44.encrypt(
        forged_rumor.to_json(), nip44.get_conversation_key(CAROL, BOB.public_key)
    )
    forged_seal = sign_event(CAROL, kind=13, content=content)
    wrapped = giftwrap.wrap(forged_seal, BOB.public_key)
    with pytest.raises(GiftWrapError, match="forged"):
        giftwrap.unwrap(wrapped, BOB)
    # nostr-sdk agrees.
    with pytest.raises(nostr_sdk.NostrSdkError, match="sender mismatch"):
        nostr_sdk.UnwrappedGift.from_gift_wrap(
            SDK_BOB, nostr_sdk.Event.from_json(wrapped.to_json())
        )


def test_seal_refuses_a_sender_who_is_not_the_rumor_author() -> None:
    with pytest.raises(GiftWrapError, match="rumor's author"):
        giftwrap.seal(_rumor(author=ALICE), CAROL, BOB.public_key)


def test_a_wrap_for_another_key_is_rejected() -> None:
    wrapped = giftwrap.gift_wrap(_rumor(), ALICE, CAROL.public_key)
    with pytest.raises(GiftWrapError, match="not addressed"):
        giftwrap.unwrap(wrapped, BOB)


def test_a_wrap_tagged_for_us_but_encrypted_to_another_key_fails_its_mac() -> None:
    wrapped = giftwrap.gift_wrap(_rumor(), ALICE, CAROL.public_key)
    retagged = _resign(wrapped, Keys(bytes.fromhex("55" * 32)), tags=[["p", BOB.public_key]])
    with pytest.raises(DecryptionError, match="MAC"):
        giftwrap.unwrap(retagged, BOB)


def test_a_simplified_inner_event_with_a_bad_signature_is_rejected() -> None:
    inner = _signed()
    forged = dataclasses.replace(inner, sig=_signed(content="other").sig)
    with pytest.raises(GiftWrapError, match="bad signature"):
        giftwrap.unwrap(giftwrap.wrap_signed(forged, BOB.public_key), BOB)


def test_a_simplified_inner_event_with_altered_content_is_rejected() -> None:
    forged = dataclasses.replace(_signed(), content="altered")
    with pytest.raises(GiftWrapError, match="id does not match"):
        giftwrap.unwrap(giftwrap.wrap_signed(forged, BOB.public_key), BOB)


def test_a_wrap_whose_own_signature_is_bad_is_rejected() -> None:
    wrapped = giftwrap.wrap_signed(_signed(), BOB.public_key)
    other = giftwrap.wrap_signed(_signed(), BOB.public_key)
    with pytest.raises(GiftWrapError, match="bad id or signature"):
        giftwrap.unwrap(dataclasses.replace(wrapped, sig=other.sig), BOB)
    with pytest.raises(GiftWrapError, match="bad id or signature"):
        giftwrap.unwrap(dataclasses.replace(wrapped, content=other.content), BOB)


def test_verified_skips_only_the_wraps_own_signature_check() -> None:
    # For callers whose relay pool already verified the wrap; every inner check still runs.
    inner = _signed()
    wrapped = giftwrap.wrap_signed(inner, BOB.public_key)
    other = giftwrap.wrap_signed(_signed(), BOB.public_key)
    opened = giftwrap.unwrap(dataclasses.replace(wrapped, sig=other.sig), BOB, verified=True)
    assert opened.inner == inner
    forged = giftwrap.wrap_signed(dataclasses.replace(inner, content="forged"), BOB.public_key)
    with pytest.raises(GiftWrapError, match="wrapped event is invalid"):
        giftwrap.unwrap(forged, BOB, verified=True)


def test_a_seal_with_tags_is_rejected() -> None:
    sealed = giftwrap.seal(_rumor(), ALICE, BOB.public_key)
    tagged = _resign(sealed, ALICE, tags=[["p", BOB.public_key]])
    with pytest.raises(GiftWrapError, match="empty tag list"):
        giftwrap.unwrap(giftwrap.wrap(tagged, BOB.public_key), BOB)


@pytest.mark.parametrize("kind", [1, 13, 4, 1058, 21060])
def test_only_gift_wrap_kinds_are_unwrapped(kind: int) -> None:
    wrapped = giftwrap.wrap_signed(_signed(), BOB.public_key)
    with pytest.raises(GiftWrapError, match="not a gift wrap"):
        giftwrap.unwrap(_resign(wrapped, ALICE, kind=kind), BOB)


def test_builders_refuse_bad_arguments() -> None:
    with pytest.raises(GiftWrapError, match="gift wrap kind"):
        giftwrap.wrap(_signed(), BOB.public_key, kind=4)
    with pytest.raises(GiftWrapError, match="read as a seal"):
        giftwrap.wrap_signed(giftwrap.seal(_rumor(), ALICE, BOB.public_key), BOB.public_key)
    with pytest.raises(InvalidKey):
        giftwrap.wrap_signed(_signed(), "ff" * 32)
    with pytest.raises(InvalidKey):
        giftwrap.make_rumor("nope", kind=1, content="")
    with pytest.raises(InvalidEvent, match="kind"):
        giftwrap.make_rumor(ALICE.public_key, kind=70000, content="")
    with pytest.raises(InvalidEvent, match="tag 0"):
        giftwrap.make_rumor(ALICE.public_key, kind=1, content="", tags=[[]])
    assert (
        giftwrap.make_rumor(ALICE.public_key, kind=1, content="", clock=lambda: 9).created_at == 9
    )


def _seal_text(plaintext: str, author: Keys = ALICE) -> Event:
    """A seal by ``author`` whose encrypted content is ``plaintext``, wrapped for Bob."""
    content = nip44.encrypt(plaintext, nip44.get_conversation_key(author, BOB.public_key))
    return giftwrap.wrap(sign_event(author, kind=13, content=content), BOB.public_key)


def _wrap_text(plaintext: str) -> Event:
    """A wrap for Bob whose encrypted content is ``plaintext``."""
    one_time = Keys(bytes.fromhex("66" * 32))
    content = nip44.encrypt(plaintext, nip44.get_conversation_key(one_time, BOB.public_key))
    return sign_event(one_time, kind=1059, content=content, tags=[["p", BOB.public_key]])


NESTED = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (NESTED, "not valid JSON"),
        (json.dumps({**_rumor().to_dict(), "id": "00" * 32}), "id does not match"),
        (json.dumps({**_rumor().to_dict(), "kind": True}), "kind"),
        (json.dumps({**_rumor().to_dict(), "created_at": -1}), "created_at"),
        (json.dumps({**_rumor().to_dict(), "tags": [["t", 1]]}), "tag 0"),
        (json.dumps({**_rumor().to_dict(), "content": None}), "content"),
        (json.dumps({k: v for k, v in _rumor().to_dict().items() if k != "pubkey"}), "pubkey"),
    ],
)
def test_malformed_rumors_are_rejected(plaintext: str, reason: str) -> None:
    with pytest.raises(GiftWrapError, match=reason):
        giftwrap.unwrap(_seal_text(plaintext), BOB)


def test_a_rumor_without_an_id_is_accepted_with_the_computed_one() -> None:
    rumor = _rumor()
    data = {k: v for k, v in rumor.to_dict().items() if k != "id"}
    assert giftwrap.unwrap(_seal_text(json.dumps(data)), BOB).inner == rumor


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        ("not json", "wrapped event is invalid"),
        (NESTED, "wrapped event is invalid"),
        (_rumor().to_json(), "has no 'sig' field"),  # a bare rumor: NIP-59 needs a seal
        (json.dumps({**_signed().to_dict(), "kind": "1"}), "kind"),
    ],
)
def test_malformed_wrapped_events_are_rejected(plaintext: str, reason: str) -> None:
    with pytest.raises(GiftWrapError, match=reason):
        giftwrap.unwrap(_wrap_text(plaintext), BOB)


WRAPPER = Keys(bytes.fromhex("77" * 32))
SAMPLE_WRAP = giftwrap.gift_wrap(_rumor(), ALICE, BOB.public_key, wrapper=WRAPPER)


@given(st.data())
def test_bit_flipped_wrap_content_is_a_clean_error(data: st.DataObject) -> None:
    raw = bytearray(SAMPLE_WRAP.content.encode())
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 6))
    # Re-signed, so the damage reaches the decryption instead of the signature check.
    damaged = _resign(SAMPLE_WRAP, WRAPPER, content=raw.decode("latin-1"))
    with pytest.raises(DecryptionError):
        giftwrap.unwrap(damaged, BOB)


@given(st.data())
def test_truncated_wrap_content_is_a_clean_error(data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(SAMPLE_WRAP.content) - 1))
    damaged = _resign(SAMPLE_WRAP, WRAPPER, content=SAMPLE_WRAP.content[:cut])
    with pytest.raises(DecryptionError):
        giftwrap.unwrap(damaged, BOB)


@given(st.data())
def test_bit_flipped_seal_content_is_a_clean_error(data: st.DataObject) -> None:
    sealed = giftwrap.unwrap(SAMPLE_WRAP, BOB).seal
    assert sealed is not None
    raw = bytearray(sealed.content.encode())
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 6))
    damaged = _resign(sealed, ALICE, content=raw.decode("latin-1"))
    with pytest.raises(DecryptionError):
        giftwrap.unwrap(giftwrap.wrap(damaged, BOB.public_key), BOB)


@given(st.text(max_size=300))
def test_any_decrypted_wrap_text_is_a_clean_error_or_an_event(text: str) -> None:
    try:
        opened = giftwrap.unwrap(_wrap_text(text or " "), BOB)
    except GiftWrapError:
        return
    assert opened.form in ("nip59", "simple")
