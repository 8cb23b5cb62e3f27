"""DVM announcements: kind 11999 (modern) and NIP-89 kind 31990 (legacy), built and parsed.

11999 is replaceable, one per DVM key; its content is a JSON object (name, about, picture,
website, documentation, ``params`` as a JSON Schema, examples) and its tags say where and how
to reach the DVM (DESIGN.md §4.2). 31990 is addressable by its ``d`` tag, lists the request
kinds in ``k`` tags, and carries JSON content whose keys come from practice rather than the NIP
(SPECS.md §1.8): both spellings of the encryption flag are written and read.

The parser serves discovery over public relays, so it is tolerant of fields it cannot use (a
name that is not a string is no name) but refuses content that is not a JSON object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event, Tag, UnsignedEvent
from dvmkit.protocol.job import (
    LEGACY_MAX_KIND,
    LEGACY_MIN_KIND,
    MODERN_KIND,
    Dialect,
    is_relay_url,
)

ANNOUNCEMENT_KIND = 11999
NIP89_KIND = 31990
#: What an announcement's content may weigh; ours are a few kilobytes.
MAX_CONTENT_CHARS = 128 * 1024
ENCRYPTION_NIP44 = "nip44_v2"


@dataclass(frozen=True, slots=True)
class DVMAnnouncement:
    """What a DVM says about itself, from either announcement kind."""

    pubkey: str
    kind: int
    d: str | None
    name: str
    about: str
    picture: str
    website: str | None
    documentation: str | None
    categories: tuple[str, ...]
    kinds: tuple[int, ...]
    dialects: tuple[Dialect, ...]
    price_msat: int | None
    payment_methods: tuple[str, ...]
    encryption: bool
    relays: tuple[str, ...]
    #: 11999: the params JSON Schema; 31990: ``nip90Params``. Empty when absent.
    params: Mapping[str, Any] = field(hash=False)
    created_at: int
    event: Event


def announcement_event(
    *,
    provider: str,
    created_at: int,
    name: str,
    about: str = "",
    picture: str = "",
    website: str | None = None,
    documentation: str | None = None,
    params_schema: Mapping[str, Any] | None = None,
    examples: Sequence[Any] = (),
    categories: Sequence[str] = (),
    legacy_kinds: Sequence[int] = (),
    relays: Sequence[str] = (),
    price_msat: int | None = None,
    payment_methods: Sequence[str] = (),
    encryption: bool = False,
) -> UnsignedEvent:
    """The kind 11999 announcement (DESIGN.md §4.2).

    Args:
        provider: the DVM's pubkey.
        created_at: unix seconds.
        name, about, picture, website, documentation: shown by clients.
        params_schema: a JSON Schema object of the accepted params.
        examples: example requests, any JSON.
        categories: one ``category`` and one ``t`` tag each (relays index only ``t``).
        legacy_kinds: NIP-90 kinds also served, one ``k`` tag each after ``["k", "25000"]``.
        relays: where the DVM listens.
        price_msat: the per-job price; a ``price`` tag when above zero.
        payment_methods: one ``payment`` tag each (``bolt11``, ``zap``, ``cashu``).
        encryption: the DVM accepts gift-wrapped jobs (``["encryption", "nip44_v2"]``).

    Raises:
        ProtocolError: a legacy kind outside 5000-5999, a negative price, or content that
            is not JSON-serializable.
    """
    body: dict[str, Any] = {"name": name, "about": about, "picture": picture}
    if website is not None:
        body["website"] = website
    if documentation is not None:
        body["documentation"] = documentation
    body["params"] = dict(params_schema or {})
    if examples:
        body["examples"] = list(examples)
    tags: list[Tag] = [("name", name), ("about", about), ("picture", picture)]
    for category in dict.fromkeys(categories):
        tags += [("category", category), ("t", category)]
    tags.append(("k", str(MODERN_KIND)))
    tags += [("k", str(kind)) for kind in _legacy_kinds(legacy_kinds)]
    if relays:
        tags.append(("relays", *dict.fromkeys(relays)))
    if price_msat is not None:
        if isinstance(price_msat, bool) or not isinstance(price_msat, int) or price_msat < 0:
            raise ProtocolError("price_msat is a non-negative whole number of millisats")
        if price_msat:
            tags.append(("price", str(price_msat), "msat", "per-job"))
    tags += [("payment", method) for method in dict.fromkeys(payment_methods)]
    if encryption:
        tags.append(("encryption", ENCRYPTION_NIP44))
    return UnsignedEvent(provider, created_at, ANNOUNCEMENT_KIND, tuple(tags), _dumps(body))


def nip89_event(
    *,
    provider: str,
    created_at: int,
    d: str,
    kinds: Sequence[int],
    name: str,
    about: str = "",
    picture: str = "",
    params: Mapping[str, Any] | None = None,
    categories: Sequence[str] = (),
    encryption: bool = False,
) -> UnsignedEvent:
    """The NIP-89 kind 31990 handler announcement for the legacy kinds a DVM serves.

    Args:
        provider: the DVM's pubkey.
        created_at: unix seconds.
        d: the handler's identifier; heartbeats carry the same ``d`` (Amethyst matches them).
        kinds: NIP-90 request kinds, one ``k`` tag each.
        name, about, picture: shown by clients.
        params: the ``nip90Params`` object (name -> required/values/description).
        categories: one ``t`` tag each.
        encryption: written as both ``encryptionSupported`` and ``supportsEncryption``, the
            two spellings clients read.

    Raises:
        ProtocolError: an empty ``d``, no kinds or one outside 5000-5999, or params that are
            not JSON-serializable.
    """
    if not d:
        raise ProtocolError("a NIP-89 announcement needs a non-empty d identifier")
    legacy = _legacy_kinds(kinds)
    if not legacy:
        raise ProtocolError("a NIP-89 announcement needs at least one NIP-90 kind")
    body = {
        "name": name,
        "about": about,
        "picture": picture,
        "nip90Params": dict(params or {}),
        "encryptionSupported": encryption,
        "supportsEncryption": encryption,
    }
    tags: list[Tag] = [("d", d), *(("k", str(kind)) for kind in legacy)]
    tags += [("t", category) for category in dict.fromkeys(categories)]
    return UnsignedEvent(provider, created_at, NIP89_KIND, tuple(tags), _dumps(body))


def parse_announcement(event: Event) -> DVMAnnouncement:
    """Read a kind 11999 or 31990 announcement.

    Empty content reads as ``{}`` (NIP-89: "use the pubkey's kind 0"); fields of the wrong
    type are treated as absent; tags fill in what the content leaves out.

    Raises:
        ProtocolError: another kind, or content that is oversized, not JSON, or not a JSON
            object.
    """
    if event.kind not in (ANNOUNCEMENT_KIND, NIP89_KIND):
        raise ProtocolError(f"kind {event.kind} is not a DVM announcement (11999 or 31990)")
    body = _content_object(event)
    kinds = tuple(dict.fromkeys(k for k in map(_kind, event.tag_values("k")) if k is not None))
    legacy = any(LEGACY_MIN_KIND <= k <= LEGACY_MAX_KIND for k in kinds)
    modern = event.kind == ANNOUNCEMENT_KIND or MODERN_KIND in kinds
    dialects = tuple(d for d, on in ((Dialect.MODERN, modern), (Dialect.LEGACY, legacy)) if on)
    params = body.get("params" if event.kind == ANNOUNCEMENT_KIND else "nip90Params")
    flags = (body.get("encryptionSupported"), body.get("supportsEncryption"))
    encryption = any(flag is True or flag == "true" for flag in flags) or any(
        value.lower() in (ENCRYPTION_NIP44, "nip44") for value in event.tag_values("encryption")
    )
    return DVMAnnouncement(
        pubkey=event.pubkey,
        kind=event.kind,
        d=event.tag_value("d"),
        name=_text(body, event, "name") or "",
        about=_text(body, event, "about") or "",
        picture=_text(body, event, "picture") or _text(body, event, "image") or "",
        website=_text(body, event, "website"),
        documentation=_text(body, event, "documentation"),
        categories=_unique([*event.tag_values("category"), *event.tag_values("t")]),
        kinds=kinds,
        dialects=dialects,
        price_msat=_price(event, body),
        payment_methods=_unique(event.tag_values("payment")),
        encryption=encryption,
        relays=_unique(v for tag in event.tags_named("relays") for v in tag[1:] if is_relay_url(v)),
        params=params if isinstance(params, dict) else {},
        created_at=event.created_at,
        event=event,
    )


def _content_object(event: Event) -> dict[str, Any]:
    if not event.content.strip():
        return {}
    if len(event.content) > MAX_CONTENT_CHARS:
        raise ProtocolError(
            f"announcement {event.id} content is {len(event.content)} characters; "
            f"the limit is {MAX_CONTENT_CHARS}"
        )
    try:
        body = orjson.loads(event.content)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"announcement {event.id} content is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"announcement {event.id} content must be a JSON object")
    return body


def _text(body: Mapping[str, Any], event: Event, key: str) -> str | None:
    value = body.get(key)
    if isinstance(value, str) and value:
        return value
    return event.tag_value(key) or None


def _price(event: Event, body: Mapping[str, Any]) -> int | None:
    tag = event.tag("price")
    if tag is not None and len(tag) > 1 and tag[1].isascii() and tag[1].isdigit():
        unit = tag[2].lower() if len(tag) > 2 else "msat"
        scale = {"msat": 1, "msats": 1, "sat": 1000, "sats": 1000}.get(unit)
        if scale is not None and len(tag[1]) <= 19:
            return int(tag[1]) * scale
    # nips PR #1358's 31990 content: "amount" is "free", "flexible" or a number of sats.
    amount = body.get("amount")
    if amount == "free":
        return 0
    if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 0:
        return amount * 1000
    if isinstance(amount, str) and amount.isascii() and amount.isdigit() and len(amount) <= 16:
        return int(amount) * 1000
    return None


def _kind(value: str) -> int | None:
    if value.isascii() and value.isdigit() and len(value) <= 5 and int(value) <= 65535:
        return int(value)
    return None


def _legacy_kinds(kinds: Iterable[int]) -> tuple[int, ...]:
    out = tuple(dict.fromkeys(kinds))
    for kind in out:
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise ProtocolError(f"a NIP-90 kind is an integer, got {kind!r}")
        if not LEGACY_MIN_KIND <= kind <= LEGACY_MAX_KIND:
            raise ProtocolError(f"kind {kind} is not a NIP-90 request kind (5000-5999)")
    return out


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _dumps(body: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(body).decode()
    except TypeError as exc:
        raise ProtocolError(f"announcement content is not JSON-serializable: {exc}") from None
