"""Reading a DVM's answers to a request, in either dialect, and choosing among offers.

An answer is recognised by its first ``e`` tag (the request id) and its author (DESIGN.md
§4.2); the caller checks the author against the DVM it targeted. Modern answers are kind
25000 with a ``status`` tag; legacy ones are kind 7000 feedback or the result, kind request +
1000 (SPECS.md §1.4-§1.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dvmkit.customer.values import Update, UpdateType
from dvmkit.nostr.event import Event
from dvmkit.protocol.job import FEEDBACK_KIND, MODERN_KIND, RESULT_KIND_OFFSET
from dvmkit.protocol.payment import read_methods

Choose = Literal["cheapest", "fastest", "first"]
CHOICES: tuple[Choose, ...] = ("cheapest", "fastest", "first")

_STATUSES = {t.value: t for t in UpdateType}
_DVM_STATUSES = frozenset(
    {
        UpdateType.OFFER,
        UpdateType.PAYMENT_REQUIRED,
        UpdateType.PROCESSING,
        UpdateType.PARTIAL,
        UpdateType.SUCCESS,
        UpdateType.ERROR,
        UpdateType.CANCELLED,
    }
)
_MAX_TEXT = 2000


def read_answer(
    event: Event, request_id: str, request_kind: int | None, *, content: str | None = None
) -> Update | None:
    """The update ``event`` reports about request ``request_id``, or None if it is not one.

    Args:
        event: a verified event from a relay.
        request_id: our request's id; the event's first ``e`` tag must be exactly it.
        request_kind: the request's kind (25000 or 5000-5999), or None when unknown (a
            request being watched by id): then every answer form is read.
        content: the event's content decrypted (an answer to encrypted params); its own
            content when None.
    """
    text = event.content if content is None else content
    if event.tag_value("e") != request_id:
        return None
    legacy_result = (
        6000 <= event.kind <= 6999
        if request_kind is None
        else event.kind == request_kind + RESULT_KIND_OFFSET and request_kind != MODERN_KIND
    )
    amount, bolt11 = _amount(event)
    if legacy_result:
        return Update(
            UpdateType.SUCCESS,
            request_id,
            dvm=event.pubkey,
            content=text,
            amount_msat=amount,
            bolt11=bolt11,
            event=event,
        )
    modern = event.kind == MODERN_KIND and request_kind in (None, MODERN_KIND)
    legacy = event.kind == FEEDBACK_KIND and request_kind != MODERN_KIND
    if not (modern or legacy):
        return None
    tag = event.tag("status")
    if tag is None or len(tag) < 2:
        return None
    kind = _STATUSES.get(tag[1])
    if kind is None or kind not in _DVM_STATUSES:
        return None
    code: str | None = None
    if kind is UpdateType.ERROR:
        if modern:
            # nips PR #1941: ["status", "error", CODE, message]
            code = tag[2] if len(tag) > 2 and tag[2] else "ERROR"
            text = tag[3] if len(tag) > 3 else ""
        else:
            # NIP-90 as dvmkit writes it: ["status", "error", "CODE: message"]
            extra = tag[2] if len(tag) > 2 else ""
            head, sep, rest = extra.partition(": ")
            code, message = (head, rest) if sep and head.isupper() else ("ERROR", extra)
            # Answering encrypted params, the message is in the (decrypted) content.
            text = text or message
    elif not text and len(tag) > 2:
        text = tag[2]
    priced = kind in (UpdateType.OFFER, UpdateType.PAYMENT_REQUIRED)
    return Update(
        kind,
        request_id,
        dvm=event.pubkey,
        content=text[:_MAX_TEXT] if kind is not UpdateType.SUCCESS else text,
        amount_msat=amount,
        bolt11=bolt11,
        code=code[:64] if code else None,
        methods=read_methods(event) if priced else {},
        event=event,
    )


def _amount(event: Event) -> tuple[int | None, str | None]:
    tag = event.tag("amount")
    if tag is None or len(tag) < 2:
        return None, None
    value = tag[1]
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        return None, None
    bolt11 = tag[2] if len(tag) > 2 and tag[2] else None
    return int(value), bolt11


@dataclass(frozen=True, slots=True)
class Offer:
    """A DVM's offer to do an open request: its price and, if it said, its ETA.

    ``payment_required``: the DVM asked for payment for the open request itself (NIP-90 has
    no offers: a priced legacy DVM answers an open request so); choosing it means paying it.
    """

    dvm: str
    amount_msat: int
    eta: float | None
    order: int
    event: Event = field(repr=False)
    payment_required: bool = False


def offer_from(update: Update, order: int) -> Offer | None:
    """The offer an ``offer`` or ``payment-required`` update makes, or None when it names no
    price."""
    if update.event is None or update.dvm is None or update.amount_msat is None:
        return None
    eta_text = update.event.tag_value("eta")
    eta = float(eta_text) if eta_text and eta_text.isascii() and eta_text.isdigit() else None
    required = update.type is UpdateType.PAYMENT_REQUIRED
    return Offer(update.dvm, update.amount_msat, eta, order, update.event, required)


def rank_offers(
    offers: Sequence[Offer],
    choose: Choose,
    *,
    latency: Callable[[str], float | None],
    dead: Callable[[str], bool],
) -> list[Offer]:
    """``offers`` best first by the strategy; DVMs known to be dead always come last.

    ``cheapest``: lowest price, then earliest. ``fastest``: lowest latency observed on
    earlier jobs, else the offer's ETA, then price. ``first``: arrival order.
    """

    def speed(offer: Offer) -> float:
        seen = latency(offer.dvm)
        if seen is not None:
            return seen
        return offer.eta if offer.eta is not None else math.inf

    if choose == "first":
        return sorted(offers, key=lambda o: (dead(o.dvm), o.order))
    if choose == "cheapest":
        return sorted(offers, key=lambda o: (dead(o.dvm), o.amount_msat, o.order))
    if choose == "fastest":
        return sorted(offers, key=lambda o: (dead(o.dvm), speed(o), o.amount_msat, o.order))
    raise ValueError(f"choose must be one of {', '.join(CHOICES)}, got {choose!r}")
