"""What customer and provider say to each other about money, in both dialects (DESIGN.md §6).

Three things beyond NIP-90's ``amount`` tag, which says only *how much*:

- **Payment methods** on ``offer`` and ``payment-required``: one ``["payment", method,
  detail?]`` tag each. ``bolt11`` pays the invoice in the ``amount`` tag; ``zap`` names the
  lightning address whose LNURL server signs the receipts the DVM accepts; ``cashu`` names
  the mint whose tokens it takes.
- **A payment message** from the customer, for methods that carry the money itself (a Cashu
  token is a bearer instrument): a kind 25000 event ``["e", job]``, ``["p", dvm]``,
  ``["status", "payment"]``, ``["payment", method]``, whose content is the payload NIP-44
  encrypted to the DVM. Like a cancellation it reaches the DVM through its ``#p``
  subscription, whatever the job's dialect; a private job's goes gift-wrapped as well.
- **A refund** on the ``error`` that ends a paid job: ``["refund", msat, method, payload]``,
  the payload (a Cashu token, or the preimage of a Lightning refund) NIP-44 encrypted to the
  customer. A customer names where a Lightning refund should go with ``["refund", address]``
  in its request: a lightning address or an invoice.

Pure: no I/O. Encryption randomness comes from :mod:`dvmkit.nostr.nip44`'s default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dvmkit.errors import DecryptionError, InvalidKey, ProtocolError
from dvmkit.nostr import nip44
from dvmkit.nostr.event import Event, Tag, UnsignedEvent
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.protocol.job import MODERN_KIND

PAYMENT_STATUS = "payment"
BOLT11 = "bolt11"
ZAP = "zap"
CASHU = "cashu"
# A token of many proofs runs to a few kilobytes; nothing legitimate needs more.
MAX_PAYLOAD = 64 * 1024
MAX_REFUND_ADDRESS = 2048
# LUD-16 names (a-z 0-9 - _ . +) at a host; or a bolt11 invoice (bech32: "ln", then letters
# and digits). Checked when a customer writes the tag, so a typo fails at once, not at refund.
_REFUND_ADDRESS = re.compile(r"[a-z0-9\-_.+]+@[a-z0-9\-.]+(:[0-9]{1,5})?|ln[a-z0-9]+")


def method_tags(methods: Sequence[str], details: Mapping[str, str] | None = None) -> list[Tag]:
    """``["payment", method, detail?]`` for each method, in order, once each."""
    details = details or {}
    tags: list[Tag] = []
    for method in dict.fromkeys(methods):
        detail = details.get(method)
        tags.append(("payment", method) if not detail else ("payment", method, detail))
    return tags


def read_methods(event: Event) -> dict[str, str | None]:
    """The payment methods an offer or ``payment-required`` names, with their details.

    Methods other than :data:`BOLT11`, :data:`ZAP` and :data:`CASHU` are kept as the peer
    wrote them; the caller picks the ones it can pay.
    """
    out: dict[str, str | None] = {}
    for tag in event.tags_named("payment"):
        if len(tag) > 1 and tag[1] and len(tag[1]) <= 32 and tag[1] not in out:
            out[tag[1]] = tag[2][:2048] if len(tag) > 2 and tag[2] else None
    return out


@dataclass(frozen=True, slots=True)
class PaymentMessage:
    """A customer's payment for a job, opened by the DVM it was sent to."""

    job_id: str
    payer: str
    method: str
    payload: str = field(repr=False)  # a Cashu token is money: never shown


def payment_event(
    keys: Keys,
    *,
    job_id: str,
    provider: str,
    method: str,
    payload: str,
    created_at: int,
) -> Event:
    """The customer's signed payment message for ``job_id`` (see the module docstring).

    Raises:
        ProtocolError: a bad job id or provider key, or a payload empty or over 64 KiB.
    """
    if not (is_hex64(job_id) and is_hex64(provider)):
        raise ProtocolError("a payment names a job id and a provider pubkey, 64 hex each")
    if not payload or len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"a payment payload is 1 to {MAX_PAYLOAD} characters")
    tags: tuple[Tag, ...] = (
        ("e", job_id),
        ("p", provider),
        ("status", PAYMENT_STATUS),
        ("payment", method),
    )
    content = nip44.encrypt_to(keys, provider, payload)
    return UnsignedEvent(keys.public_key, created_at, MODERN_KIND, tags, content).sign(keys)


def is_payment(event: Event) -> bool:
    """True for a kind 25000 payment message (its ``status`` tag is ``payment``)."""
    return event.kind == MODERN_KIND and event.tag_value("status") == PAYMENT_STATUS


def read_payment(event: Event, keys: Keys) -> PaymentMessage:
    """Open a payment message addressed to ``keys``.

    Raises:
        ProtocolError: not a payment message, not for us, no method, or a payload that does
            not decrypt (forged, or encrypted to someone else).
    """
    if not is_payment(event):
        raise ProtocolError(f"event {event.id} is not a payment message")
    job_id = event.tag_value("e")
    if job_id is None or not is_hex64(job_id):
        raise ProtocolError(f"payment {event.id} names no job")
    if keys.public_key not in event.tag_values("p"):
        raise ProtocolError(f"payment {event.id} is for another provider")
    method = event.tag_value("payment")
    if not method:
        raise ProtocolError(f"payment {event.id} names no method")
    if len(event.content) > 2 * MAX_PAYLOAD:
        raise ProtocolError(f"payment {event.id} is too large")
    try:
        payload = nip44.decrypt_from(keys, event.pubkey, event.content)
    except (DecryptionError, InvalidKey) as exc:
        raise ProtocolError(f"payment {event.id} does not decrypt: {exc}") from None
    return PaymentMessage(job_id, event.pubkey, method[:32], payload)


@dataclass(frozen=True, slots=True)
class Refund:
    """Money a DVM gave back for a paid job that failed, opened by its customer."""

    amount_msat: int
    method: str
    payload: str = field(repr=False)  # a Cashu token (money), or a Lightning preimage


def refund_tag(keys: Keys, customer: str, refund: Refund) -> Tag:
    """``["refund", msat, method, payload encrypted to the customer]``."""
    payload = nip44.encrypt_to(keys, customer, refund.payload)
    return ("refund", str(refund.amount_msat), refund.method, payload)


def read_refund(event: Event, keys: Keys) -> Refund | None:
    """The refund ``event`` (an ``error`` about a paid job) carries to ``keys``, if any.

    Raises:
        ProtocolError: a refund tag that is malformed or does not decrypt.
    """
    tag = next((t for t in event.tags_named("refund") if len(t) >= 4), None)
    if tag is None:
        return None
    amount = tag[1]
    if not (amount.isascii() and amount.isdigit() and len(amount) <= 19):
        raise ProtocolError(f"refund in {event.id} has a bad amount")
    if len(tag[3]) > 2 * MAX_PAYLOAD:
        raise ProtocolError(f"refund in {event.id} is too large")
    try:
        payload = nip44.decrypt_from(keys, event.pubkey, tag[3])
    except (DecryptionError, InvalidKey) as exc:
        raise ProtocolError(f"refund in {event.id} does not decrypt: {exc}") from None
    return Refund(int(amount), tag[2][:32], payload)


def refund_address_tag(address: str) -> Tag:
    """``["refund", address]`` for a request: where a Lightning refund should go.

    Raises:
        ValueError: ``address`` is neither a lightning address (``name@host``) nor a bolt11
            invoice.
    """
    text = address.strip().lower()
    if len(text) > MAX_REFUND_ADDRESS or not _REFUND_ADDRESS.fullmatch(text):
        raise ValueError(
            "a refund address is a lightning address (name@host) or a bolt11 invoice (ln...)"
        )
    return ("refund", text)


def refund_address(event: Event) -> str | None:
    """Where a request asks a Lightning refund to go: ``["refund", address]`` (a lightning
    address or a bolt11 invoice), or None."""
    for tag in event.tags_named("refund"):
        if len(tag) == 2 and 0 < len(tag[1]) <= MAX_REFUND_ADDRESS:
            return tag[1]
    return None
