"""NIP-59 gift wrap (rumor → seal → wrap), and the simplified wrap of ContextVM CEP-4.

Full NIP-59: the *rumor* is an unsigned event (deniable if leaked); the *seal* (kind 13, no
tags) holds it NIP-44-encrypted and is signed by the real author; the *wrap* (kind 1059, or
21059 ephemeral) holds the seal encrypted with a one-time key and says only whom it is for
(``["p", recipient]``). Seal and wrap timestamps are moved up to two days into the past
(NIP-59, NIP-17) so they do not reveal when the message was sent; except that an ephemeral
21059 wrap carries the current time, because relays only forward ephemeral events live and
receivers subscribe with ``since = now``, which would drop a back-dated wrap (the seal inside
is still back-dated: relays never see it).

Simplified wrap (ContextVM CEP-4, DESIGN.md §4.2): the already *signed* inner event goes
straight into the wrap, with no seal and no rumor. The author is proven by the inner
signature, not deniable. Its wrap carries the current time whatever its kind, as the
ContextVM SDK does.

:func:`unwrap` tells the two apart by what the wrap holds: a signed kind-13 event is a seal,
any other signed event is the simplified form (so :func:`wrap_signed` refuses kind 13).

Errors: a wrap that does not check out raises :class:`~dvmkit.errors.GiftWrapError`; a wrap or
seal whose ciphertext is malformed, truncated or forged raises the
:class:`~dvmkit.errors.DecryptionError` of :mod:`~dvmkit.nostr.nip44` unchanged. Both are
:class:`~dvmkit.errors.ProtocolError`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from dvmkit.errors import GiftWrapError, InvalidEvent, InvalidKey
from dvmkit.nostr import nip44
from dvmkit.nostr.event import (
    Event,
    UnsignedEvent,
    parse_event,
    sign_event,
)
from dvmkit.nostr.keys import Keys, parse_public_key

SEAL_KIND = 13
GIFT_WRAP_KIND = 1059
EPHEMERAL_GIFT_WRAP_KIND = 21059
WRAP_KINDS = frozenset((GIFT_WRAP_KIND, EPHEMERAL_GIFT_WRAP_KIND))
#: NIP-17: seal and wrap ``created_at`` are tweaked up to two days into the past.
MAX_BACKDATE = 2 * 24 * 60 * 60

Clock = Callable[[], float]
#: ``random(n)`` returns an integer in ``[0, n)``, like :func:`secrets.randbelow`.
RandomBelow = Callable[[int], int]


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """What :func:`unwrap` found inside a wrap.

    Attributes:
        sender: the verified author: the seal's signer (NIP-59) or the inner event's signer.
        inner: the rumor (``form == "nip59"``) or the signed inner event (``"simple"``).
        wrap_id: the id of the outer wrap event.
        wrap_kind: 1059 or 21059.
        form: ``"nip59"`` (rumor in a seal) or ``"simple"`` (signed event, ContextVM CEP-4).
        seal: the verified seal for the NIP-59 form, None for the simplified form.
    """

    sender: str
    inner: UnsignedEvent | Event
    wrap_id: str
    wrap_kind: int
    form: Literal["nip59", "simple"]
    seal: Event | None = None


def make_rumor(
    public_key: str,
    *,
    kind: int,
    content: str,
    tags: Iterable[Sequence[str]] = (),
    created_at: int | None = None,
    clock: Clock = time.time,
) -> UnsignedEvent:
    """An unsigned event by ``public_key``: the deniable payload of a NIP-59 gift wrap.

    Raises:
        InvalidKey: ``public_key`` is not 64 lowercase hex characters on the curve.
        InvalidEvent: kind, created_at, content or tags are malformed.
    """
    created = int(clock()) if created_at is None else created_at
    data = {
        "pubkey": parse_public_key(public_key),
        "created_at": created,
        "kind": kind,
        "tags": list(tags),
        "content": content,
    }
    return UnsignedEvent.from_dict(data)


def seal(
    rumor: UnsignedEvent,
    sender: Keys,
    recipient: str,
    *,
    created_at: int | None = None,
    nonce: bytes | None = None,
    clock: Clock = time.time,
    random: RandomBelow = secrets.randbelow,
) -> Event:
    """Seal ``rumor`` for ``recipient``: kind 13, no tags, signed by the rumor's author.

    Args:
        created_at: the seal's timestamp; by default now minus up to two days (NIP-59).
        nonce: the NIP-44 nonce (only to reproduce vectors).

    Raises:
        GiftWrapError: ``sender`` is not the rumor's author.
        InvalidKey: ``recipient`` is not a valid public key (hex or npub).
    """
    if sender.public_key != rumor.pubkey:
        raise GiftWrapError("the seal must be signed by the rumor's author (rumor.pubkey)")
    conversation_key = nip44.get_conversation_key(sender, parse_public_key(recipient))
    content = nip44.encrypt(rumor.to_json(), conversation_key, nonce=nonce)
    return sign_event(
        sender,
        kind=SEAL_KIND,
        content=content,
        created_at=_backdated(created_at, clock, random),
    )


def wrap(
    inner: Event,
    recipient: str,
    *,
    kind: int = GIFT_WRAP_KIND,
    wrapper: Keys | None = None,
    created_at: int | None = None,
    nonce: bytes | None = None,
    extra_tags: Iterable[Sequence[str]] = (),
    clock: Clock = time.time,
    random: RandomBelow = secrets.randbelow,
) -> Event:
    """Encrypt ``inner`` (usually a seal) into a gift wrap signed by a one-time key.

    Args:
        inner: the signed event to wrap.
        recipient: the public key (hex or npub) the wrap is addressed to.
        kind: 1059, or 21059 for an ephemeral wrap relays do not store.
        wrapper: the one-time key; a fresh one when omitted (pass one only in tests).
        created_at: the wrap's timestamp; by default now minus up to two days (NIP-59) for
            kind 1059, and now for the ephemeral kind 21059 (see the module docstring).
        extra_tags: tags after the ``p`` tag (e.g. NIP-40 ``expiration``, NIP-13 ``nonce``).

    Raises:
        GiftWrapError: ``kind`` is not a gift wrap kind.
        InvalidKey: ``recipient`` is not a valid public key.
        InvalidEvent: ``extra_tags`` are malformed.
    """
    if created_at is None and kind == EPHEMERAL_GIFT_WRAP_KIND:
        created_at = int(clock())
    return _wrap(
        inner, recipient, kind, wrapper, _backdated(created_at, clock, random), nonce, extra_tags
    )


def gift_wrap(
    rumor: UnsignedEvent,
    sender: Keys,
    recipient: str,
    *,
    kind: int = GIFT_WRAP_KIND,
    wrapper: Keys | None = None,
    extra_tags: Iterable[Sequence[str]] = (),
    clock: Clock = time.time,
    random: RandomBelow = secrets.randbelow,
) -> Event:
    """:func:`seal` then :func:`wrap`: the full NIP-59 gift wrap of ``rumor`` for ``recipient``.

    Raises:
        GiftWrapError, InvalidKey, InvalidEvent: as :func:`seal` and :func:`wrap`.
    """
    sealed = seal(rumor, sender, recipient, clock=clock, random=random)
    return wrap(
        sealed,
        recipient,
        kind=kind,
        wrapper=wrapper,
        extra_tags=extra_tags,
        clock=clock,
        random=random,
    )


def wrap_signed(
    inner: Event,
    recipient: str,
    *,
    kind: int = EPHEMERAL_GIFT_WRAP_KIND,
    wrapper: Keys | None = None,
    created_at: int | None = None,
    nonce: bytes | None = None,
    extra_tags: Iterable[Sequence[str]] = (),
    clock: Clock = time.time,
) -> Event:
    """The simplified wrap (ContextVM CEP-4): the signed ``inner`` event, no seal, no rumor.

    Args:
        created_at: the wrap's timestamp; the current time by default (see module docstring).
        Other arguments as :func:`wrap`.

    Raises:
        GiftWrapError: ``inner`` is kind 13 (it would be read as a seal) or ``kind`` is not a
            gift wrap kind.
        InvalidKey: ``recipient`` is not a valid public key.
    """
    if inner.kind == SEAL_KIND:
        raise GiftWrapError("a kind-13 event inside a wrap is read as a seal; use wrap()")
    created = int(clock()) if created_at is None else created_at
    return _wrap(inner, recipient, kind, wrapper, created, nonce, extra_tags)


def unwrap(wrap_event: Event, recipient: Keys, *, verified: bool = False) -> Unwrapped:
    """Open a wrap addressed to ``recipient``, in either form, verifying every layer.

    Checks: the wrap's kind, its ``p`` tag, its id and signature; then, for NIP-59, the seal's
    id, signature, kind and empty tags, the rumor's id, and that the seal and rumor have the
    same author (NIP-17: otherwise anyone could seal a rumor claiming another author); for
    the simplified form, the inner event's id and signature.

    Args:
        verified: the wrap's own id and signature were already checked (the relay pool
            checks every event it delivers); skip checking them again.

    Raises:
        GiftWrapError: a check failed (the message says which).
        DecryptionError: the wrap's or the seal's ciphertext is malformed or forged.
    """
    if wrap_event.kind not in WRAP_KINDS:
        raise GiftWrapError(f"kind {wrap_event.kind} is not a gift wrap (1059 or 21059)")
    if recipient.public_key not in wrap_event.tag_values("p"):
        raise GiftWrapError("the gift wrap is not addressed (p tag) to this key")
    if not verified and not wrap_event.verify():
        raise GiftWrapError(f"the gift wrap {wrap_event.id} has a bad id or signature")
    inner = _parse_signed(_open(recipient, wrap_event.pubkey, wrap_event.content), "wrapped")
    if inner.kind != SEAL_KIND:
        return Unwrapped(inner.pubkey, inner, wrap_event.id, wrap_event.kind, "simple")
    if inner.tags:
        raise GiftWrapError("the seal has tags; NIP-59 requires an empty tag list")
    rumor = _parse_rumor(_open(recipient, inner.pubkey, inner.content))
    if rumor.pubkey != inner.pubkey:
        raise GiftWrapError(
            "the seal's signer differs from the rumor's pubkey: the claimed author is forged"
        )
    return Unwrapped(inner.pubkey, rumor, wrap_event.id, wrap_event.kind, "nip59", inner)


def _wrap(
    inner: Event,
    recipient: str,
    kind: int,
    wrapper: Keys | None,
    created_at: int,
    nonce: bytes | None,
    extra_tags: Iterable[Sequence[str]],
) -> Event:
    if kind not in WRAP_KINDS:
        raise GiftWrapError(f"kind {kind} is not a gift wrap kind (1059 or 21059)")
    recipient = parse_public_key(recipient)
    one_time = Keys.generate() if wrapper is None else wrapper
    content = nip44.encrypt(
        inner.to_json(), nip44.get_conversation_key(one_time, recipient), nonce=nonce
    )
    tags: list[Sequence[str]] = [("p", recipient), *extra_tags]
    return sign_event(one_time, kind=kind, content=content, tags=tags, created_at=created_at)


def _backdated(created_at: int | None, clock: Clock, random: RandomBelow) -> int:
    if created_at is not None:
        return created_at
    return max(0, int(clock()) - random(MAX_BACKDATE + 1))


def _open(recipient: Keys, author: str, payload: str) -> str:
    try:
        key = nip44.get_conversation_key(recipient, author)
    except InvalidKey as exc:  # pragma: no cover - a verified signature implies a valid key
        raise GiftWrapError(f"the wrapping key is invalid: {exc}") from None
    return nip44.decrypt(payload, key)


def _parse_signed(text: str, what: str) -> Event:
    try:
        return parse_event(text)
    except InvalidEvent as exc:
        raise GiftWrapError(f"the {what} event is invalid: {exc}") from None


def _parse_rumor(text: str) -> UnsignedEvent:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise GiftWrapError("the sealed rumor is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise GiftWrapError("the sealed rumor is not a JSON object")
    try:
        rumor = UnsignedEvent.from_dict(data)
    except InvalidEvent as exc:
        raise GiftWrapError(f"the sealed rumor is invalid: {exc}") from None
    claimed = data.get("id")
    # NIP-59 rumors carry their id; a rumor without one is accepted with the computed id.
    if claimed is not None and claimed != rumor.id:
        raise GiftWrapError("the rumor's id does not match its content")
    return rumor
