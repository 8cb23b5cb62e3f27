"""Building a customer's job request in either dialect (DESIGN.md §4.1-§4.2).

A category means the modern dialect: kind 25000 with ``["category", c]`` and ``["t", c]`` (relays
index only ``t``). A kind 5000-5999 means legacy NIP-90. Inputs are ``i`` tags, params
``param`` tags, a named DVM a ``p`` tag (absent: open to every DVM of the category or kind).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from dvmkit.nostr import nip04, nip44
from dvmkit.nostr.event import Event, Tag, sign_event
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.protocol.job import LEGACY_MAX_KIND, LEGACY_MIN_KIND, MODERN_KIND, Encryption
from dvmkit.protocol.modern import CANCEL_STATUS, DELETION_KIND, cancel_event
from dvmkit.protocol.payment import refund_address_tag

ParamValue = str | int | float | bool | Sequence[str]
#: The tags NIP-90 encrypted params hide (SPECS.md §1.3).
PRIVATE_TAGS = frozenset({"i", "param"})


def request_kind(target: str | int) -> int:
    """The request kind for a category (25000) or a legacy kind (itself)."""
    if isinstance(target, int):
        if not LEGACY_MIN_KIND <= target <= LEGACY_MAX_KIND:
            raise ValueError(f"kind {target} is not a NIP-90 request kind (5000-5999)")
        return target
    return MODERN_KIND


def param_tags(params: Mapping[str, ParamValue]) -> list[Tag]:
    """``["param", name, value...]`` per param; booleans as ``true``/``false``."""
    tags: list[Tag] = []
    for name, value in params.items():
        if not name:
            raise ValueError("a param needs a name: write name=value")
        if isinstance(value, bool):
            values: tuple[str, ...] = ("true" if value else "false",)
        elif isinstance(value, (int, float, str)):
            values = (str(value),)
        else:
            values = tuple(str(v) for v in value)
            if not values:
                raise ValueError(f"param {name!r} has no value")
        tags.append(("param", name, *values))
    return tags


def request_tags(
    target: str | int,
    *,
    input: str | None = None,
    input_type: str = "text",
    params: Mapping[str, ParamValue] | None = None,
    to: str | None = None,
    bid_msat: int | None = None,
    relays: Sequence[str] = (),
    output: str | None = None,
    refund_to: str | None = None,
) -> list[Tag]:
    """The tags of a job request for ``target`` (a category, or a kind 5000-5999).

    Raises:
        ValueError: a kind outside 5000-5999, an empty category, a malformed ``to`` key, a
            negative bid or a ``refund_to`` that is no lightning address or invoice.
    """
    kind = request_kind(target)
    tags: list[Tag] = []
    if kind == MODERN_KIND:
        assert isinstance(target, str)
        if not target:
            raise ValueError("an empty category: name one (e.g. text, pow)")
        tags += [("category", target), ("t", target)]
    if input is not None:
        tags.append(("i", input, input_type))
    tags += param_tags(params or {})
    if output is not None:
        tags.append(("output", output))
    if bid_msat is not None:
        if bid_msat < 0:
            raise ValueError("a bid is a non-negative number of millisats")
        tags.append(("bid", str(bid_msat)))
    if refund_to is not None:
        tags.append(refund_address_tag(refund_to))
    if relays:
        tags.append(("relays", *relays))
    if to is not None:
        if not is_hex64(to):
            raise ValueError("the DVM to ask must be a 64-character hex public key")
        tags.append(("p", to))
    return tags


def build_request(
    keys: Keys,
    target: str | int,
    *,
    input: str | None = None,
    input_type: str = "text",
    params: Mapping[str, ParamValue] | None = None,
    to: str | None = None,
    bid_msat: int | None = None,
    relays: Sequence[str] = (),
    output: str | None = None,
    refund_to: str | None = None,
    created_at: int | None = None,
    encryption: Encryption | None = None,
) -> Event:
    """A signed job request.

    Args:
        keys: the customer's keys.
        target: a category (modern, kind 25000) or a legacy kind 5000-5999.
        input: the input's data (an ``i`` tag), or None for no input.
        input_type: ``text``, ``url``, ``event`` or ``job``.
        params: ``param`` tags.
        to: the DVM's hex pubkey for a targeted request; None for an open one.
        bid_msat: the most the customer offers to pay (``bid`` tag).
        relays: where the DVM should answer (``relays`` tag).
        output: the expected output MIME type.
        refund_to: where a Lightning refund should go if the DVM fails a job it was paid
            for (``refund`` tag): a lightning address or a bolt11 invoice. Never hidden by
            ``encryption``: the DVM reads it from the clear tags.
        created_at: unix seconds; now when omitted.
        encryption: for a legacy request to one DVM (``to``), hide its ``i`` and ``param``
            tags in the content, encrypted to the DVM with ``nip04`` or ``nip44`` (NIP-90
            encrypted params; SPECS.md §1.3).

    Raises:
        ValueError: see :func:`request_tags`; encryption of a modern request (wrap it
            instead: :func:`dvmkit.protocol.envelope.wrap_request`) or of an open one.
    """
    tags = request_tags(
        target,
        input=input,
        input_type=input_type,
        params=params,
        to=to,
        bid_msat=bid_msat,
        relays=relays,
        output=output,
        refund_to=refund_to,
    )
    kind = request_kind(target)
    if encryption is None:
        return sign_event(keys, kind=kind, tags=tags, created_at=created_at)
    if kind == MODERN_KIND:
        raise ValueError("a modern request is made private by wrapping it, not by encrypted params")
    if to is None:
        raise ValueError("encrypted params are encrypted to one DVM: name it (to=...)")
    return encrypted_request(keys, kind, tags, encryption, to, created_at=created_at)


def encrypted_request(
    keys: Keys,
    kind: int,
    tags: Sequence[Tag],
    encryption: Encryption,
    dvm: str,
    *,
    created_at: int | None = None,
) -> Event:
    """A legacy request for ``dvm`` with its ``i`` and ``param`` tags encrypted to it.

    ``tags`` are the request's tags in the clear; the private ones go into the content as a
    JSON array, and the public ones keep ``p`` (only ``dvm``) and ``["encrypted", scheme]``.
    """
    private = [list(t) for t in tags if t[0] in PRIVATE_TAGS]
    public: list[Tag] = [t for t in tags if t[0] not in PRIVATE_TAGS | {"p", "encrypted"}]
    plaintext = orjson.dumps(private).decode()
    if encryption == "nip04":
        content = nip04.encrypt(keys, dvm, plaintext)
    else:
        content = nip44.encrypt_to(keys, dvm, plaintext)
    public += [("p", dvm), ("encrypted", encryption)]
    return sign_event(keys, kind=kind, content=content, tags=public, created_at=created_at)


def retarget(
    keys: Keys,
    request: Event,
    dvm: str,
    *,
    created_at: int | None = None,
    private: tuple[Sequence[Tag], Encryption] | None = None,
    bid_msat: int | None = None,
) -> Event:
    """A new request like ``request`` but ``p``-tagged to ``dvm`` only (a targeted request
    to the DVM chosen among offers, or failed over to).

    ``private``: for a request with encrypted params, its tags in the clear and the scheme;
    they are encrypted again, to ``dvm``. ``bid_msat``: a new ``bid`` (the price a DVM
    offered when the first bid was below it); the request's own bid when None.
    """
    if private is not None:
        tags, scheme = private
        return encrypted_request(
            keys, request.kind, _with_bid(tags, bid_msat), scheme, dvm, created_at=created_at
        )
    tags = [*_with_bid([t for t in request.tags if t[0] != "p"], bid_msat), ("p", dvm)]
    return sign_event(
        keys, kind=request.kind, content=request.content, tags=tags, created_at=created_at
    )


def _with_bid(tags: Sequence[Tag], bid_msat: int | None) -> list[Tag]:
    if bid_msat is None:
        return list(tags)
    if bid_msat < 0:
        raise ValueError("a bid is a non-negative number of millisats")
    return [t for t in tags if t[0] != "bid"] + [("bid", str(bid_msat))]


def cancellation(
    keys: Keys,
    request: Event | str,
    *,
    providers: Sequence[str] = (),
    created_at: int,
) -> Event:
    """The signed cancellation of the customer's own ``request``, in its dialect.

    A legacy request gets a NIP-09 deletion (``k`` its kind); a modern one a kind 25000
    ``cancel`` status, ``p``-tagged to ``providers`` (else the request's own ``p``) and
    ``t``-tagged with its categories, so that the providers' subscriptions see it. A modern
    request is ephemeral (relays do not keep it), so it may be known only by id: then a
    ``cancel`` status to ``providers``, or, with none, a NIP-09 deletion with ``["k",
    "25000"]``, which every provider following deletions of modern requests sees.

    Args:
        keys: the request's author (only the author can cancel, NIP-09 and DESIGN.md §4.2).
        request: the request event, or its hex id when the relays no longer have it.
        providers: the DVMs to tell (hex pubkeys).
        created_at: unix seconds.

    Raises:
        ValueError: a request written by another key, an id that is not 64 hex characters,
            a malformed provider key, or an event that is not a job request.
    """
    for pubkey in providers:
        if not is_hex64(pubkey):
            raise ValueError(f"{pubkey!r} is not a 64-character hex public key")
    if isinstance(request, str):
        if not is_hex64(request):
            raise ValueError("a request id is 64 hex characters (or pass an nevent)")
        p_tags: list[Tag] = [("p", pk) for pk in dict.fromkeys(providers)]
        if p_tags:
            tags: list[Tag] = [("e", request), ("status", CANCEL_STATUS), *p_tags]
            return sign_event(keys, kind=MODERN_KIND, tags=tags, created_at=created_at)
        tags = [("e", request), ("k", str(MODERN_KIND))]
        return sign_event(keys, kind=DELETION_KIND, tags=tags, created_at=created_at)
    if request.pubkey != keys.public_key:
        raise ValueError(
            f"request {request.id} was written by {request.pubkey}, not by this key: only "
            "its author can cancel it (pass the author's --sec)"
        )
    if request.kind != MODERN_KIND and not LEGACY_MIN_KIND <= request.kind <= LEGACY_MAX_KIND:
        raise ValueError(f"event {request.id} (kind {request.kind}) is not a job request")
    unsigned = cancel_event(request, created_at=created_at, providers=list(providers) or None)
    extra: list[Tag] = []
    if request.kind == MODERN_KIND:
        extra = [("t", c) for c in dict.fromkeys(request.tag_values("t"))]
    return sign_event(
        keys,
        kind=unsigned.kind,
        content=unsigned.content,
        tags=[*unsigned.tags, *extra],
        created_at=created_at,
    )
