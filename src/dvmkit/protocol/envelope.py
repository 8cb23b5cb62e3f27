"""Private jobs: requests and answers carried inside gift wraps (DESIGN.md §4.2, SPECS.md §3.4).

A customer who wants its job private signs the request as usual and wraps it to the DVM; the
relay, and anyone reading it, sees only a one-time key sending something to the DVM. Two
forms are read, and each is answered in the form (and wrap kind) it came in:

- ``simple``, ContextVM CEP-4: the signed event straight inside a kind 21059 (or 1059)
  wrap. The inner signature proves the author.
- ``nip59``, full NIP-59: an unsigned rumor inside a kind-13 seal signed by the author,
  inside a wrap; the published encrypted DVM example uses it. The seal's signature, checked
  against the rumor's pubkey, proves the author.

:class:`Envelope` names the form and the wrap kind; a job remembers it so that every status
and the result go back the same way. Like the rest of :mod:`dvmkit.protocol` this module does
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dvmkit.errors import ProtocolError
from dvmkit.nostr import giftwrap
from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.nostr.keys import Keys

WRAP_KINDS = giftwrap.WRAP_KINDS
#: A rumor has no signature; its :class:`Event` view carries this one, which never verifies.
#: The seal it came in was verified instead (see :func:`open_wrap`).
RUMOR_SIG = "0" * 128

Form = Literal["simple", "nip59"]
_FORMS: tuple[Form, ...] = ("simple", "nip59")


@dataclass(frozen=True, slots=True)
class Envelope:
    """How a private job travels: the wrap's form and kind.

    Attributes:
        form: ``simple`` (signed event in a wrap, ContextVM CEP-4) or ``nip59`` (rumor in a
            seal in a wrap).
        kind: 21059 (ephemeral: relays forward it and keep nothing) or 1059 (stored).
    """

    form: Form = "simple"
    kind: int = giftwrap.EPHEMERAL_GIFT_WRAP_KIND

    def __post_init__(self) -> None:
        if self.form not in _FORMS:
            raise ProtocolError(f"unknown wrap form {self.form!r}: simple or nip59")
        if self.kind not in WRAP_KINDS:
            raise ProtocolError(f"kind {self.kind} is not a gift wrap kind (1059 or 21059)")

    def __str__(self) -> str:
        return f"{self.form}:{self.kind}"

    @classmethod
    def parse(cls, text: str) -> Envelope:
        """The envelope written by ``str(envelope)`` (``"simple:21059"``).

        Raises:
            ProtocolError: not of that form.
        """
        form, _, kind = text.partition(":")
        # isdigit alone passes "²" and digit runs too long for int(): both raise ValueError.
        if form not in _FORMS or not (kind.isascii() and kind.isdigit() and len(kind) <= 5):
            raise ProtocolError(f"not an envelope: {text[:40]!r} (write it as simple:21059)")
        return cls(form, int(kind))


@dataclass(frozen=True, slots=True)
class Opened:
    """What :func:`open_wrap` found: the inner event, and how it came.

    Attributes:
        event: the inner event. For the ``nip59`` form it is the rumor, viewed as an
            :class:`Event` whose ``sig`` is :data:`RUMOR_SIG` (its author was proven by the
            seal); for ``simple`` it is the signed event, verified.
        envelope: the form and wrap kind, to answer the same way.
    """

    event: Event
    envelope: Envelope


def open_wrap(wrap: Event, keys: Keys, *, verified: bool = False) -> Opened:
    """Open a wrap addressed to ``keys``, in either form, checking every layer.

    The wrap's own id and signature, the inner event's id and signature (``simple``), or the
    seal's signature and that the seal's signer is the rumor's author (``nip59``): an
    inner event that claims someone else's pubkey never gets through. ``verified``: the
    wrap's own signature was already checked (by the relay pool that delivered it).

    Raises:
        GiftWrapError: not a wrap, not for ``keys``, or a layer does not check out.
        DecryptionError: a ciphertext is malformed, truncated or forged.
    """
    opened = giftwrap.unwrap(wrap, keys, verified=verified)
    envelope = Envelope(opened.form, opened.wrap_kind)
    inner = opened.inner
    event = inner if isinstance(inner, Event) else rumor_event(inner)
    return Opened(event, envelope)


def rumor_event(rumor: UnsignedEvent) -> Event:
    """The :class:`Event` view of a rumor: its own id, and :data:`RUMOR_SIG` for a signature."""
    return Event(
        rumor.id, rumor.pubkey, rumor.created_at, rumor.kind, rumor.tags, rumor.content, RUMOR_SIG
    )


def seal_answer(
    answer: UnsignedEvent, keys: Keys, recipient: str, envelope: Envelope
) -> tuple[str, Event]:
    """Wrap ``answer`` (authored by ``keys``) to ``recipient`` the way ``envelope`` says.

    Returns:
        ``(inner_id, wrap)``: the id of the answer inside (the signed event's, or the
        rumor's) and the wrap to publish. A NIP-59 kind-1059 wrap is back-dated by up to two
        days (NIP-59); the others carry the current time, as ContextVM's do.

    Raises:
        InvalidEvent, GiftWrapError: ``answer`` is not authored by ``keys``.
        InvalidKey: ``recipient`` is not a public key.
    """
    if envelope.form == "nip59":
        return answer.id, giftwrap.gift_wrap(answer, keys, recipient, kind=envelope.kind)
    signed = answer.sign(keys)
    return signed.id, giftwrap.wrap_signed(signed, recipient, kind=envelope.kind)


def wrap_request(
    request: Event, keys: Keys, recipient: str, envelope: Envelope = Envelope()
) -> Event:
    """Wrap the customer's signed ``request`` (or cancellation) to the DVM ``recipient``.

    For the ``nip59`` form the request's signature is dropped: the rumor is its unsigned
    content, sealed by ``keys``, so its id (the job's identity) is unchanged.

    Raises:
        ProtocolError: ``request`` is not authored by ``keys``.
        InvalidKey: ``recipient`` is not a public key.
    """
    if request.pubkey != keys.public_key:
        raise ProtocolError("a request is wrapped by its own author")
    if envelope.form == "nip59":
        rumor = UnsignedEvent(
            request.pubkey, request.created_at, request.kind, request.tags, request.content
        )
        return giftwrap.gift_wrap(rumor, keys, recipient, kind=envelope.kind)
    return giftwrap.wrap_signed(request, recipient, kind=envelope.kind)
