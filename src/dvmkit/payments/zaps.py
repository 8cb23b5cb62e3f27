"""NIP-57 zaps: zap requests (9734), zap receipts (9735) and the checks on both.

A customer signs a zap request and hands it, unpublished, to the recipient's LNURL server
(:mod:`dvmkit.payments.lnurl`), which checks it (Appendix D), makes an invoice whose
description hash is sha256 of the request's JSON, and once paid publishes a receipt signed by
its ``nostrPubkey`` (Appendix E). A DVM that takes zaps as payment releases a job only for a
receipt that passes :func:`verify_receipt` (Appendix F, and the checks a DVM needs on top).

Pure: no I/O. Everything read from a receipt is hostile and bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from dvmkit.errors import InvalidEvent, PaymentError
from dvmkit.nostr.event import Event, parse_event, sign_event, verification_problem
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.payments import bolt11

__all__ = [
    "MAX_DESCRIPTION",
    "ZAP_RECEIPT_KIND",
    "ZAP_REQUEST_KIND",
    "InvalidZap",
    "ZapReceipt",
    "ZapRequest",
    "check_zap_request",
    "receipt_event",
    "verify_receipt",
    "zap_request",
]

ZAP_REQUEST_KIND = 9734
ZAP_RECEIPT_KIND = 9735
#: The largest zap request (``description`` tag, UTF-8 bytes) read at all. Real ones are under
#: 2 KiB; a relay's 64 KiB event limit bounds what a genuine receipt can carry anyway.
MAX_DESCRIPTION = 64 * 1024
_MAX_AMOUNT_DIGITS = 19  # below 2**63 msat: far past every bitcoin there is


class InvalidZap(PaymentError):
    """A zap request or receipt that fails a NIP-57 check.

    Attributes:
        reason: a short machine word: ``kind``, ``signature``, ``signer``, ``malformed``,
            ``bolt11``, ``request``, ``description_hash``, ``amount``, ``underpaid``,
            ``recipient``, ``event``, ``sender`` or ``preimage``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ZapRequest:
    """A zap request that passed :func:`check_zap_request`.

    Attributes:
        event: the signed 9734.
        recipient: its one ``p`` tag (hex pubkey).
        event_id: its ``e`` tag, or None.
        amount_msat: its ``amount`` tag, or None when it has none.
        relays: the ``relays`` tag's values, as given (not yet checked as URLs).
        sender: the request's author.
    """

    event: Event
    recipient: str
    event_id: str | None
    amount_msat: int | None
    relays: tuple[str, ...]
    sender: str


@dataclass(frozen=True, slots=True)
class ZapReceipt:
    """A zap receipt that passed :func:`verify_receipt`.

    Attributes:
        id: the 9735's event id.
        payer: the zap request's author.
        recipient: the zapped pubkey.
        event_id: the zapped event (the DVM's job request, feedback or result).
        amount_msat: what the invoice was for (equal to the request's ``amount``).
        payment_hash: the invoice's payment hash, hex.
        bolt11: the paid invoice.
        paid_at: the receipt's ``created_at`` (NIP-57: the invoice's paid_at).
    """

    id: str
    payer: str
    recipient: str
    event_id: str
    amount_msat: int
    payment_hash: str
    bolt11: str
    paid_at: int


def zap_request(
    keys: Keys,
    *,
    recipient: str,
    amount_msat: int,
    relays: Sequence[str],
    event_id: str | None = None,
    lnurl: str | None = None,
    content: str = "",
    created_at: int | None = None,
) -> Event:
    """Sign a zap request (NIP-57 Appendix A); send it to the LNURL callback, do not publish it.

    Args:
        keys: the sender's keys.
        recipient: the zapped pubkey (hex).
        amount_msat: the amount; the server must invoice exactly this.
        relays: where the server should publish the receipt (one flat ``relays`` tag).
        event_id: the zapped event, e.g. a DVM job request.
        lnurl: the recipient's lnurl (bech32), when known.
        content: an optional message.
        created_at: seconds since the epoch; now when omitted.

    Returns:
        The signed 9734.

    Raises:
        ValueError: a pubkey or event id that is not 64 lowercase hex characters, an amount
            that is not a positive integer, or no relays.
    """
    if not is_hex64(recipient) or (event_id is not None and not is_hex64(event_id)):
        raise ValueError("recipient and event_id must be 64 lowercase hex characters")
    if type(amount_msat) is not int or amount_msat <= 0:
        raise ValueError("amount_msat must be a positive integer")
    if not relays:
        raise ValueError("a zap request needs at least one relay for its receipt")
    tags: list[tuple[str, ...]] = [("relays", *relays), ("amount", str(amount_msat))]
    if lnurl is not None:
        tags.append(("lnurl", lnurl))
    tags.append(("p", recipient))
    if event_id is not None:
        tags.append(("e", event_id))
    return sign_event(
        keys,
        kind=ZAP_REQUEST_KIND,
        content=content,
        tags=tags,
        created_at=created_at,
    )


def check_zap_request(event: Event, *, amount_msat: int | None) -> ZapRequest:
    """Make the checks NIP-57 Appendix D asks of an LNURL server before it makes an invoice.

    Args:
        event: the request, as parsed from the callback's ``nostr`` parameter.
        amount_msat: the callback's ``amount``; an ``amount`` tag must equal it. None skips
            that comparison (the tag must still be a well-formed amount).

    Returns:
        The request's values.

    Raises:
        InvalidZap: ``kind``, ``signature``, ``malformed`` (tags: not exactly one hex ``p``,
            more than one ``e``/``a``/``P``/``amount``, no relays, a bad ``e``, ``a`` or
            amount) or ``amount`` (the tag differs from ``amount_msat``).
    """
    if event.kind != ZAP_REQUEST_KIND:
        raise InvalidZap("kind", f"a zap request is kind {ZAP_REQUEST_KIND}, not {event.kind}")
    problem = verification_problem(event)
    if problem is not None:
        raise InvalidZap("signature", f"zap request {event.id}: {problem}")
    recipients = event.tag_values("p")
    if len(recipients) != 1 or len(event.tags_named("p")) != 1 or not is_hex64(recipients[0]):
        raise InvalidZap("malformed", "a zap request must have exactly one hex 'p' tag")
    event_id = _optional(event, "e")
    if event_id is not None and not is_hex64(event_id):
        raise InvalidZap("malformed", "the zap request's 'e' tag is not a hex event id")
    coordinate = _optional(event, "a")
    if coordinate is not None and not _is_coordinate(coordinate):
        raise InvalidZap("malformed", "the zap request's 'a' tag is not an event coordinate")
    _optional(event, "P")
    relays = event.tags_named("relays")
    if len(relays) != 1 or len(relays[0]) < 2:
        raise InvalidZap("malformed", "a zap request needs one 'relays' tag naming relays")
    amount_text = _optional(event, "amount")
    amount = None if amount_text is None else _parse_amount(amount_text)
    if amount is not None and amount_msat is not None and amount != amount_msat:
        raise InvalidZap(
            "amount", f"the zap request says {amount} msat but {amount_msat} msat were asked"
        )
    return ZapRequest(
        event=event,
        recipient=recipients[0],
        event_id=event_id,
        amount_msat=amount,
        relays=relays[0][1:],
        sender=event.pubkey,
    )


def receipt_event(
    *,
    server_keys: Keys,
    zap_request: Event,
    bolt11: str,
    preimage: str | None,
    paid_at: int,
    description: str | None = None,
) -> Event:
    """Sign the zap receipt an LNURL server publishes once an invoice is paid (Appendix E).

    Args:
        server_keys: the server's ``nostrPubkey`` keys.
        zap_request: the checked zap request.
        bolt11: the paid invoice.
        preimage: its preimage (hex), when the wallet reported one.
        paid_at: when it was paid; the receipt's ``created_at``.
        description: the zap request JSON exactly as the server received it (the invoice's
            description hash is over those bytes); ``zap_request.to_json()`` when omitted.

    Returns:
        The signed 9735, tags ``p``, ``e``/``a``/``k`` (as in the request), ``P``, ``bolt11``,
        ``description``, ``preimage``.

    Raises:
        ValueError: the request has no ``p`` tag, or ``description`` is not its JSON.
    """
    if description is None:
        description = zap_request.to_json()
    else:
        try:
            same = Event.from_json(description).id == zap_request.id
        except InvalidEvent:
            same = False
        if not same:
            raise ValueError("description is not the JSON of the zap request")
    recipient = zap_request.tag_value("p")
    if recipient is None:
        raise ValueError("the zap request has no 'p' tag")
    tags: list[tuple[str, ...]] = [("p", recipient)]
    for name in ("e", "a", "k"):
        value = zap_request.tag_value(name)
        if value is not None:
            tags.append((name, value))
    tags += [("P", zap_request.pubkey), ("bolt11", bolt11), ("description", description)]
    if preimage is not None:
        tags.append(("preimage", preimage))
    return sign_event(server_keys, kind=ZAP_RECEIPT_KIND, content="", tags=tags, created_at=paid_at)


def verify_receipt(
    receipt: Event, *, signer: str, recipient: str, event_id: str, min_amount_msat: int
) -> ZapReceipt:
    """Check a zap receipt as a DVM must before it releases a job for it (Appendix F and more).

    Args:
        receipt: a 9735 as read from a relay.
        signer: the ``nostrPubkey`` of the recipient's LNURL server (from its pay info).
        recipient: the pubkey that was to be zapped (the DVM's).
        event_id: the event that was to be zapped (the job's).
        min_amount_msat: the least the job costs.

    Returns:
        What was paid, by whom, for what.

    Raises:
        InvalidZap: with a distinct ``reason`` for each failure: ``kind``, ``signer`` (not
            signed by ``signer``), ``signature`` (bad id or signature), ``malformed`` (missing,
            repeated or oversized tags), ``bolt11`` (does not decode, or is not written in
            canonical form), ``request`` (the description is not a valid, signed zap request),
            ``description_hash``, ``amount`` (invoice amount differs from the request's, or
            either has none), ``underpaid``, ``recipient``, ``event``, ``sender`` (``P`` is
            not the request's author), ``preimage`` (does not hash to the payment hash).
    """
    if receipt.kind != ZAP_RECEIPT_KIND:
        raise InvalidZap("kind", f"a zap receipt is kind {ZAP_RECEIPT_KIND}, not {receipt.kind}")
    # Appendix F: the receipt's pubkey must be the recipient's LNURL server's nostrPubkey;
    # anyone else can sign a 9735 claiming anything. Compared before paying for a signature.
    if receipt.pubkey != signer:
        raise InvalidZap("signer", f"receipt {receipt.id} is signed by {receipt.pubkey}")
    problem = verification_problem(receipt)
    if problem is not None:
        raise InvalidZap("signature", f"receipt {receipt.id}: {problem}")
    text = _required(receipt, "bolt11")
    description = _required(receipt, "description")
    receipt_p = _required(receipt, "p")
    receipt_e = _optional(receipt, "e")
    sender = _optional(receipt, "P")
    preimage = _optional(receipt, "preimage")
    # Bounded before any parsing: a len() of characters first, bytes only if that passes.
    if len(description) > MAX_DESCRIPTION or len(raw := description.encode()) > MAX_DESCRIPTION:
        raise InvalidZap("malformed", f"the description is over {MAX_DESCRIPTION} bytes")
    try:
        invoice = bolt11.decode(text)
    except bolt11.InvalidInvoice as exc:
        raise InvalidZap("bolt11", f"the receipt's invoice does not decode: {exc}") from None
    if invoice.bolt11 != text:
        raise InvalidZap("bolt11", "the receipt's invoice is not in canonical lowercase form")
    try:
        request = check_zap_request(parse_event(description), amount_msat=None)
    except (InvalidEvent, InvalidZap) as exc:
        raise InvalidZap("request", f"the description is not a valid zap request: {exc}") from None
    # NIP-57: the invoice commits to the zap request through its description hash; without
    # this check one paid invoice could be dressed up as a zap for anything.
    if invoice.description_hash != hashlib.sha256(raw).hexdigest():
        raise InvalidZap("description_hash", "the invoice's description hash is not the request's")
    if request.amount_msat is None:
        raise InvalidZap("amount", "the zap request has no amount tag to check the invoice by")
    if invoice.amount_msat != request.amount_msat:
        raise InvalidZap(
            "amount",
            f"the invoice is for {invoice.amount_msat} msat, "
            f"the zap request for {request.amount_msat} msat",
        )
    if invoice.amount_msat < min_amount_msat:
        raise InvalidZap(
            "underpaid", f"{invoice.amount_msat} msat paid, {min_amount_msat} msat required"
        )
    if receipt_p != recipient or request.recipient != recipient:
        raise InvalidZap("recipient", f"the zap is not for {recipient}")
    if receipt_e != event_id or request.event_id != event_id:
        raise InvalidZap("event", f"the zap is not for event {event_id}")
    if sender is not None and sender != request.sender:
        raise InvalidZap("sender", "the receipt's 'P' tag is not the zap request's author")
    if preimage is not None and not bolt11.preimage_matches(preimage, invoice.payment_hash):
        raise InvalidZap("preimage", "the receipt's preimage does not match the payment hash")
    return ZapReceipt(
        id=receipt.id,
        payer=request.sender,
        recipient=recipient,
        event_id=event_id,
        amount_msat=invoice.amount_msat,
        payment_hash=invoice.payment_hash,
        bolt11=text,
        paid_at=receipt.created_at,
    )


def _optional(event: Event, name: str) -> str | None:
    """The value of the one tag called ``name``, or None: a second one is ambiguous, so refused."""
    tags = event.tags_named(name)
    if len(tags) > 1:
        raise InvalidZap("malformed", f"more than one {name!r} tag")
    if tags and len(tags[0]) < 2:
        raise InvalidZap("malformed", f"the {name!r} tag has no value")
    return tags[0][1] if tags else None


def _required(event: Event, name: str) -> str:
    value = _optional(event, name)
    if value is None:
        raise InvalidZap("malformed", f"no {name!r} tag")
    return value


def _parse_amount(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_AMOUNT_DIGITS):
        raise InvalidZap("malformed", "the 'amount' tag must be a whole number of msat")
    amount = int(text)
    if amount <= 0:
        raise InvalidZap("malformed", "the 'amount' tag must be positive")
    return amount


def _is_coordinate(text: str) -> bool:
    # NIP-01 addressable coordinate: <kind>:<pubkey hex>:<d tag>.
    kind, _, rest = text.partition(":")
    pubkey, sep, _ = rest.partition(":")
    return bool(sep) and kind.isascii() and kind.isdigit() and len(kind) <= 5 and is_hex64(pubkey)
