"""One way to answer a job in whichever dialect it came in.

The provider runtime calls these two and never branches on the dialect itself; the wire
forms live in :mod:`dvmkit.protocol.legacy` (NIP-90) and :mod:`dvmkit.protocol.modern`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dvmkit.nostr.event import Tag, UnsignedEvent
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import Dialect, ErrorCode, JobRequest, StatusKind
from dvmkit.protocol.legacy import feedback_event, legacy_result_event
from dvmkit.protocol.modern import modern_result_event, modern_status_event


def status_event(
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
    relay_hint: str | None = None,
    keys: Keys | None = None,
    extra_tags: Sequence[Tag] = (),
) -> UnsignedEvent:
    """A status about ``request``: kind 7000 feedback (legacy) or kind 25000 (modern).

    Args:
        request: the parsed request.
        status: the job's new status.
        provider: our pubkey (the author).
        created_at: unix seconds.
        content: a (partial) result, or empty.
        code, message: for ``error``, the code (required) and message; otherwise ``message``
            is the status tag's extra info.
        amount_msat, bolt11: the price (required for ``offer`` and ``payment-required``).
        methods, method_details: accepted payment methods and their details
            (:func:`~dvmkit.protocol.payment.method_tags`).
        eta_seconds: an offer's expected time to the result (modern only).
        relay_hint: where the request was seen, for the legacy ``e`` tag.
        keys: the provider's keys, needed to encrypt the content of an answer to a legacy
            request with encrypted params.
        extra_tags: appended as they are (a ``refund`` tag).

    Returns:
        The unsigned event, authored by ``provider``.

    Raises:
        ProtocolError: a status the dialect cannot say (legacy ``offer``), a missing code or
            amount, or an encrypted request without the provider's keys.
    """
    if request.dialect is Dialect.LEGACY:
        return feedback_event(
            request,
            status,
            provider=provider,
            created_at=created_at,
            content=content,
            code=code,
            message=message,
            amount_msat=amount_msat,
            bolt11=bolt11,
            methods=methods,
            method_details=method_details,
            relay_hint=relay_hint,
            keys=keys,
            extra_tags=extra_tags,
        )
    return modern_status_event(
        request,
        status,
        provider=provider,
        created_at=created_at,
        content=content,
        code=code,
        message=message,
        amount_msat=amount_msat,
        bolt11=bolt11,
        methods=methods,
        method_details=method_details,
        eta_seconds=eta_seconds,
        extra_tags=extra_tags,
    )


def result_event(
    request: JobRequest,
    content: str,
    *,
    provider: str,
    created_at: int,
    amount_msat: int | None = None,
    bolt11: str | None = None,
    relay_hint: str | None = None,
    keys: Keys | None = None,
    compact: bool = False,
) -> UnsignedEvent:
    """The result of ``request``: kind + 1000 (legacy) or a kind 25000 ``success`` (modern).

    Args:
        request: the parsed request.
        content: the result.
        provider: our pubkey (the author).
        created_at: unix seconds.
        amount_msat, bolt11: an optional ``amount`` tag (payment after delivery).
        relay_hint: where the request was seen, for the legacy ``e`` tag.
        keys: the provider's keys, needed when a legacy request's params were encrypted.
        compact: a legacy result without the copies of the request (see
            :func:`~dvmkit.protocol.legacy.legacy_result_event`); modern results have none.

    Raises:
        ProtocolError: an encrypted legacy request without the provider's keys.
    """
    if request.dialect is Dialect.LEGACY:
        return legacy_result_event(
            request,
            content,
            provider=provider,
            created_at=created_at,
            amount_msat=amount_msat,
            bolt11=bolt11,
            relay_hint=relay_hint,
            keys=keys,
            compact=compact,
        )
    return modern_result_event(
        request,
        content,
        provider=provider,
        created_at=created_at,
        amount_msat=amount_msat,
        bolt11=bolt11,
    )
