"""dvmkit's modern dialect: every event about a job is an ephemeral kind 25000 (DESIGN.md §4.2).

A provider's answer carries ``["e", request]``, ``["p", customer]``, ``["category", c]`` and
``["status", s, ...]``; an error is ``["status", "error", CODE, message]`` (nips PR #1941),
``payment-required`` adds ``["amount", msat, bolt11?]`` and a ``["payment", method]`` per
accepted method, an ``offer`` adds its price and ETA. The customer cancels with a kind 25000
``["status", "cancel"]`` of its own (modern) or a NIP-09 kind 5 deletion (legacy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event, Tag, UnsignedEvent
from dvmkit.nostr.keys import is_hex64
from dvmkit.protocol.job import (
    MODERN_KIND,
    Dialect,
    ErrorCode,
    JobRequest,
    StatusKind,
    as_status,
)
from dvmkit.protocol.legacy import amount_tag
from dvmkit.protocol.payment import method_tags

#: NIP-09 deletion request: the legacy way to cancel a job (NIP-90 §"Cancellation").
DELETION_KIND = 5
CANCEL_STATUS = "cancel"


def modern_status_event(
    request: JobRequest,
    status: StatusKind | str,
    *,
    provider: str,
    created_at: int,
    content: str = "",
    code: ErrorCode | str | None = None,
    message: str | None = None,
    amount_msat: int | None = None,
    bolt11: str | None = None,
    methods: Sequence[str] = (),
    method_details: Mapping[str, str] | None = None,
    eta_seconds: int | None = None,
    extra_tags: Sequence[Tag] = (),
) -> UnsignedEvent:
    """A kind 25000 status about ``request``.

    Args:
        request: a modern request.
        status: any :class:`StatusKind`; ``success`` carries the result as ``content``
            (see :func:`modern_result_event`), ``partial`` a partial result.
        provider: our pubkey (the author).
        created_at: unix seconds.
        content: the (partial) result, or empty.
        code: for ``error``, the error code (required).
        message: for ``error`` the message; otherwise optional extra info in the status tag.
        amount_msat, bolt11: the price (required for ``offer`` and ``payment-required``).
        methods: accepted payment methods (``bolt11``, ``zap``, ``cashu``), one ``payment``
            tag each, with its detail from ``method_details`` (a zap's lightning address, a
            Cashu mint; :mod:`dvmkit.protocol.payment`).
        eta_seconds: for ``offer``, the expected time to the result.
        extra_tags: appended as they are (a ``refund`` tag on the error ending a paid job).

    Raises:
        ProtocolError: a legacy request, or a missing code or amount.
    """
    if request.dialect is not Dialect.MODERN:
        raise ProtocolError("a legacy request is answered with kind 7000 and kind + 1000 events")
    status = as_status(status)
    if status is StatusKind.ERROR:
        if code is None:
            raise ProtocolError("an error status needs an error code")
        status_tag: Tag = ("status", "error", str(code), message or "")
    elif message:
        status_tag = ("status", str(status), message)
    else:
        status_tag = ("status", str(status))
    needs_amount = status in (StatusKind.OFFER, StatusKind.PAYMENT_REQUIRED)
    if needs_amount and amount_msat is None:
        raise ProtocolError(f"{status} needs amount_msat")
    tags: list[Tag] = [("e", request.id), ("p", request.customer)]
    if request.category is not None:
        tags.append(("category", request.category))
    tags.append(status_tag)
    if amount_msat is not None:
        tags.append(amount_tag(amount_msat, bolt11))
    tags += method_tags(methods, method_details)
    if eta_seconds is not None:
        if isinstance(eta_seconds, bool) or not isinstance(eta_seconds, int) or eta_seconds < 0:
            raise ProtocolError("eta_seconds is a non-negative whole number of seconds")
        tags.append(("eta", str(eta_seconds)))
    tags += extra_tags
    return UnsignedEvent(provider, created_at, MODERN_KIND, tuple(tags), content)


def modern_result_event(
    request: JobRequest,
    content: str,
    *,
    provider: str,
    created_at: int,
    amount_msat: int | None = None,
    bolt11: str | None = None,
) -> UnsignedEvent:
    """The result of a modern job: a ``success`` status whose content is the result.

    An ``amount`` (pay after delivery) is added when given.
    """
    return modern_status_event(
        request,
        StatusKind.SUCCESS,
        provider=provider,
        created_at=created_at,
        content=content,
        amount_msat=amount_msat,
        bolt11=bolt11,
    )


def cancel_event(
    request: Event, *, created_at: int, providers: Sequence[str] | None = None
) -> UnsignedEvent:
    """The customer's cancellation of its own ``request``, in the request's dialect.

    Modern: kind 25000 with ``["e", id]`` and ``["status", "cancel"]``. Legacy: a NIP-09
    kind 5 deletion with ``["e", id]`` and ``["k", kind]``. Both also carry a ``p`` tag per
    provider, so a provider's ``#p`` subscription sees the cancellation of an ephemeral
    request it can no longer look up by id.

    Args:
        request: the signed request (the author of the cancellation is its author).
        created_at: unix seconds.
        providers: who to tell; the request's own ``p`` tags when omitted (an open request's
            customer passes the provider it chose).

    Raises:
        ProtocolError: ``request`` is not a job request.
    """
    targets = request.tag_values("p") if providers is None else list(providers)
    p_tags: list[Tag] = [("p", pk) for pk in dict.fromkeys(targets) if is_hex64(pk)]
    if request.kind == MODERN_KIND:
        tags: list[Tag] = [("e", request.id), ("status", CANCEL_STATUS), *p_tags]
        return UnsignedEvent(request.pubkey, created_at, MODERN_KIND, tuple(tags), "")
    if 5000 <= request.kind <= 5999:
        tags = [("e", request.id), ("k", str(request.kind)), *p_tags]
        return UnsignedEvent(request.pubkey, created_at, DELETION_KIND, tuple(tags), "")
    raise ProtocolError(f"kind {request.kind} is not a job request; nothing to cancel")


def is_cancel(event: Event, request: JobRequest) -> bool:
    """True when ``event`` is ``request``'s customer cancelling it, in either form.

    Only the customer can cancel: anyone may publish a deletion naming the request's id.
    Either form is accepted for either dialect.
    """
    if event.pubkey != request.customer:
        return False
    if request.id not in event.tag_values("e"):
        return False
    if event.kind == DELETION_KIND:
        return True
    return event.kind == MODERN_KIND and event.tag_value("status") == CANCEL_STATUS
