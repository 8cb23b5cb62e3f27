"""Legacy NIP-90 answers: kind 7000 feedback and kind + 1000 results, and encrypted params.

Wire forms are SPECS.md §1.3-§1.5. A request whose params were encrypted is answered in the
same scheme it used, with the same ``encrypted`` tag spelling, so a NIP-04-only client can read
its answer (nostrdvm always answers NIP-44, whatever the request used: research/nostrdvm.md
§1.8; we do not copy that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from dvmkit.errors import DecryptionError, InvalidEvent, InvalidKey, JobError, ProtocolError
from dvmkit.nostr import nip04, nip44
from dvmkit.nostr.event import Event, Tag, UnsignedEvent, normalize_tags
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import (
    FEEDBACK_KIND,
    Dialect,
    ErrorCode,
    JobRequest,
    StatusKind,
    as_status,
    encryption_scheme,
)
from dvmkit.protocol.payment import method_tags

#: The clear error message of an answer to encrypted params; the real one is in the content.
ENCRYPTED_MESSAGE = "the message is encrypted in the content"
# NIP-90 feedback knows these; `offer` belongs to the modern open-request flow only.
_FEEDBACK_STATUSES = frozenset(StatusKind) - {StatusKind.OFFER}


def decrypt_legacy_params(event: Event, keys: Keys) -> list[list[str]]:
    """Decrypt the private tags of a legacy request (NIP-90 §"Encrypted Params").

    The customer serializes its ``i`` and ``param`` tags (some clients: every tag) as a JSON
    array of arrays, encrypts it to the provider, and keeps only ``p`` and ``encrypted`` in
    the clear. Bare ``["encrypted"]`` means NIP-04.

    Args:
        event: the request, verified.
        keys: the provider's keys; the request must be ``p``-tagged to them.

    Returns:
        The decrypted tags, to pass to :func:`~dvmkit.protocol.job.parse_request` as
        ``decrypted_tags``.

    Raises:
        ProtocolError: the request is not encrypted, or is encrypted for someone else (or for
            no one named): ignore it.
        JobError: BAD_REQUEST when the scheme is unknown, the content does not decrypt with
            our key, or the plaintext is not a JSON array of string arrays.
    """
    scheme = encryption_scheme(event)
    if scheme is None:
        raise ProtocolError(f"request {event.id} has no encrypted tag")
    targets = [value.lower() for value in event.tag_values("p")]
    if not targets:
        raise ProtocolError(f"encrypted request {event.id} names no provider in a p tag")
    if keys.public_key not in targets:
        raise ProtocolError(f"request {event.id} is encrypted for another provider")
    try:
        if scheme == "nip04":
            plaintext = nip04.decrypt(keys, event.pubkey, event.content)
        else:
            plaintext = nip44.decrypt_from(keys, event.pubkey, event.content)
    except InvalidKey as exc:
        raise ProtocolError(f"request {event.id}: {exc}") from None
    except DecryptionError as exc:
        raise JobError(
            ErrorCode.BAD_REQUEST,
            f"could not decrypt the params with {scheme} ({exc}): encrypt them to this "
            "provider's pubkey with the scheme the encrypted tag names",
        ) from None
    try:
        tags = normalize_tags(orjson.loads(plaintext))
    except orjson.JSONDecodeError:
        raise JobError(
            ErrorCode.BAD_REQUEST, "the decrypted params are not JSON: send a JSON array of tags"
        ) from None
    except InvalidEvent as exc:
        raise JobError(
            ErrorCode.BAD_REQUEST, f"the decrypted params are not a list of tags: {exc}"
        ) from None
    return [list(tag) for tag in tags]


def feedback_event(
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
    relay_hint: str | None = None,
    keys: Keys | None = None,
    extra_tags: Sequence[Tag] = (),
) -> UnsignedEvent:
    """A kind 7000 feedback event (NIP-90 §"Job Feedback").

    Args:
        request: a legacy request.
        status: anything but ``offer``; ``cancelled`` is not in NIP-90 and is sent verbatim.
        provider: our pubkey (the author).
        created_at: unix seconds.
        content: empty, or a partial result; encrypted when the request was.
        code: for ``error``, the error code (required).
        message: human-readable extra info; for ``error``, ``"CODE: message"`` is sent. For an
            error about encrypted params the message is the (encrypted) content instead, and
            the tag says ``"CODE: "`` + :data:`ENCRYPTED_MESSAGE`.
        amount_msat, bolt11: an ``amount`` tag (required for ``payment-required``).
        methods, method_details: ``payment`` tags (:mod:`dvmkit.protocol.payment`); NIP-90
            has none, and its clients ignore tags they do not know.
        relay_hint: where we saw the request, for the ``e`` tag.
        keys: the provider's keys, needed only when the request was encrypted.
        extra_tags: appended as they are (a ``refund`` tag on the error ending a paid job).

    Raises:
        ProtocolError: a modern request, ``offer``, a missing code or amount, or an encrypted
            request with no (or the wrong) keys.
    """
    _check_legacy(request)
    status = as_status(status)
    if status not in _FEEDBACK_STATUSES:
        raise ProtocolError(f"legacy NIP-90 has no {str(status)!r} status; use payment-required")
    if status is StatusKind.ERROR:
        if code is None:
            raise ProtocolError("an error status needs an error code")
        extra: str | None = f"{code}: {message}" if message else str(code)
        if request.encryption is not None and message:
            # An error message may quote the private params (a value it refused, an input it
            # could not read): like the rest of the feedback (NIP-90 §"Encrypted Params") it
            # goes encrypted in the content; the clear tag keeps only the code.
            content, extra = content or message, f"{code}: {ENCRYPTED_MESSAGE}"
    else:
        extra = message
        if request.encryption is not None and message:
            # A progress message may quote the private input too: into the content it goes.
            content, extra = content or message, None
    if status is StatusKind.PAYMENT_REQUIRED and amount_msat is None:
        raise ProtocolError("payment-required needs amount_msat")
    body, encrypted = _encrypt(request, content, provider=provider, keys=keys)
    tags: list[Tag] = [("status", str(status)) if extra is None else ("status", str(status), extra)]
    if amount_msat is not None:
        tags.append(amount_tag(amount_msat, bolt11))
    tags += method_tags(methods, method_details)
    tags += [_e_tag(request, relay_hint), ("p", request.customer)]
    if encrypted is not None:
        tags.append(encrypted)
    tags += extra_tags
    return UnsignedEvent(provider, created_at, FEEDBACK_KIND, tuple(tags), body)


def legacy_result_event(
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
    """The result, kind = request kind + 1000 (NIP-90 §"Job Result").

    Tags: ``request`` (the request's JSON), ``e``, each original ``i`` tag (left out when the
    request was encrypted, so the result does not leak the private input), ``p``, an optional
    ``amount``, and ``encrypted`` when the content is encrypted.

    ``compact`` leaves out the copies of the request (``request`` and ``i``): a result that
    carries a large request twice can exceed what relays accept, and clients link results
    to requests by the ``e`` tag.

    Raises:
        ProtocolError: a modern request, or an encrypted one with no (or the wrong) keys.
    """
    _check_legacy(request)
    body, encrypted = _encrypt(request, content, provider=provider, keys=keys)
    tags: list[Tag] = [] if compact else [("request", request.event.to_json())]
    tags.append(_e_tag(request, relay_hint))
    if request.encryption is None and not compact:
        tags += request.event.tags_named("i")
    tags.append(("p", request.customer))
    if amount_msat is not None:
        tags.append(amount_tag(amount_msat, bolt11))
    if encrypted is not None:
        tags.append(encrypted)
    return UnsignedEvent(provider, created_at, request.result_kind, tuple(tags), body)


def amount_tag(amount_msat: int, bolt11: str | None = None) -> Tag:
    """``["amount", msat, bolt11?]`` (NIP-90; the same form in the modern dialect)."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat < 0:
        raise ProtocolError("an amount is a non-negative whole number of millisats")
    return ("amount", str(amount_msat)) if bolt11 is None else ("amount", str(amount_msat), bolt11)


def _check_legacy(request: JobRequest) -> None:
    if request.dialect is not Dialect.LEGACY:
        raise ProtocolError("a modern (kind 25000) request is answered with modern events")


def _e_tag(request: JobRequest, relay_hint: str | None) -> Tag:
    return ("e", request.id) if relay_hint is None else ("e", request.id, relay_hint)


def _encrypt(
    request: JobRequest, content: str, *, provider: str, keys: Keys | None
) -> tuple[str, Tag | None]:
    """``content`` encrypted back to the customer in the request's scheme, and its tag.

    Empty content stays empty and untagged: NIP-44 cannot encrypt an empty string, and a
    status-only feedback has nothing to hide.
    """
    if request.encryption is None or not content:
        return content, None
    if keys is None or keys.public_key != provider:
        raise ProtocolError(
            f"request {request.id} was encrypted: pass the provider's keys to encrypt the answer"
        )
    if request.encryption == "nip04":
        body = nip04.encrypt(keys, request.customer, content)
    else:
        body = nip44.encrypt_to(keys, request.customer, content)
    # Answer with the tag exactly as the customer wrote it, so old clients recognise it.
    tag = request.event.tag("encrypted") or ("encrypted", request.encryption)
    return body, tag
