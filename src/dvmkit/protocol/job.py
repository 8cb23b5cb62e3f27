"""Job requests in both dialects: the values, and the parser that reads them off the wire.

Legacy NIP-90 requests are kinds 5000-5999 (SPECS.md §1.2); dvmkit's modern requests are
ephemeral kind 25000 (DESIGN.md §4.2). Both carry ``i``, ``param``, ``output``, ``bid``,
``relays`` and ``p`` tags. Parsing is lenient about what it does not know (unknown tags are
ignored) and precise about what it does: a malformed known tag is the customer's mistake and
raises :class:`~dvmkit.errors.JobError` with a code and a message a person can act on, which the
provider sends back. A :class:`~dvmkit.errors.ProtocolError` means the event is not a job for
this provider at all and is ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from dvmkit.errors import InvalidEvent, JobError, ProtocolError
from dvmkit.nostr import nip40
from dvmkit.nostr.event import Event, Tag, normalize_tags
from dvmkit.nostr.keys import is_hex64
from dvmkit.protocol.envelope import Envelope

MODERN_KIND = 25000
LEGACY_MIN_KIND = 5000
LEGACY_MAX_KIND = 5999
FEEDBACK_KIND = 7000
#: NIP-90: a result's kind is always the request's kind + 1000 (5001 -> 6001).
RESULT_KIND_OFFSET = 1000
# bids are millisats; 19 digits hold any amount a 64-bit counter can (and stop int() from
# chewing on a megabyte of digits).
_MAX_AMOUNT_DIGITS = 19

Encryption = Literal["nip04", "nip44"]


class Dialect(enum.Enum):
    MODERN = "modern"
    LEGACY = "legacy"


class StatusKind(enum.StrEnum):
    """What a provider says about a job (DESIGN.md §4.2; the legacy subset is NIP-90 §1.5)."""

    OFFER = "offer"
    PAYMENT_REQUIRED = "payment-required"
    PROCESSING = "processing"
    PARTIAL = "partial"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


class ErrorCode(enum.StrEnum):
    """Error codes from nips PR #1941, plus TIMEOUT and INTERNAL_ERROR of dvmkit's own."""

    BAD_REQUEST = "BAD_REQUEST"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    MISSING_PARAMETER = "MISSING_PARAMETER"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    UNAUTHORIZED = "UNAUTHORIZED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"
    POLICY_VIOLATION = "POLICY_VIOLATION"
    #: the job ran past its per-job time limit.
    TIMEOUT = "TIMEOUT"
    #: the handler raised something unexpected; the message says only that.
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True, slots=True)
class JobInput:
    """One ``["i", data, type, relay?, marker?]`` tag (NIP-90 §1.2)."""

    data: str
    type: str
    relay: str | None = None
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A parsed job request; ``event`` is the request exactly as the customer signed it.

    ``envelope`` is how a private request came (gift-wrapped, :mod:`dvmkit.protocol.envelope`):
    ``event`` is then the inner request, and every answer goes back wrapped the same way.
    """

    id: str
    customer: str
    dialect: Dialect
    kind: int
    category: str | None
    inputs: tuple[JobInput, ...]
    params: tuple[tuple[str, tuple[str, ...]], ...]
    output: str | None
    bid_msat: int | None
    relays: tuple[str, ...]
    providers: tuple[str, ...]
    encryption: Encryption | None
    expiration: int | None
    created_at: int
    event: Event
    envelope: Envelope | None = None

    @property
    def private(self) -> bool:
        """The request came encrypted: gift-wrapped, or with NIP-90 encrypted params."""
        return self.envelope is not None or self.encryption is not None

    def param(self, name: str) -> str | None:
        """The first value of the first ``param`` tag called ``name``, or None."""
        for key, values in self.params:
            if key == name:
                return values[0]
        return None

    def param_values(self, name: str) -> tuple[str, ...]:
        """Every value of every ``param`` tag called ``name``, in order.

        NIP-90 lets a param repeat (``relay`` in kind 5400) or carry several values
        (``["param", "range", start, end]``); both read as one sequence here.
        """
        return tuple(v for key, values in self.params if key == name for v in values)

    def is_targeted_to(self, pubkey: str) -> bool:
        """True when the request names ``pubkey`` in a ``p`` tag."""
        return pubkey in self.providers

    @property
    def is_open(self) -> bool:
        """True when no provider is named: any provider of the category may answer."""
        return not self.providers

    @property
    def result_kind(self) -> int:
        if self.dialect is Dialect.LEGACY:
            return self.kind + RESULT_KIND_OFFSET
        return MODERN_KIND


def dialect_of(kind: int) -> Dialect | None:
    """The dialect whose request kind ``kind`` is, or None."""
    if kind == MODERN_KIND:
        return Dialect.MODERN
    if LEGACY_MIN_KIND <= kind <= LEGACY_MAX_KIND:
        return Dialect.LEGACY
    return None


def encryption_scheme(event: Event) -> Encryption | None:
    """The scheme of a legacy request's encrypted params, or None when it has none.

    Bare ``["encrypted"]`` is NIP-90 as merged and means NIP-04; ``["encrypted", "nip04" |
    "nip44"]`` is nips PR #1259 (SPECS.md §1.3).

    Raises:
        JobError: BAD_REQUEST for a scheme other than those two.
    """
    tag = event.tag("encrypted")
    if tag is None:
        return None
    scheme = tag[1].strip().lower() if len(tag) > 1 else ""
    if scheme in ("", "nip04"):
        return "nip04"
    if scheme == "nip44":
        return "nip44"
    raise JobError(
        ErrorCode.BAD_REQUEST,
        f"unsupported encryption {_show(tag[1])}: encrypt the params with nip04 or nip44",
    )


def parse_request(
    event: Event,
    *,
    provider: str | None = None,
    decrypted_tags: Sequence[Sequence[str]] | None = None,
    envelope: Envelope | None = None,
) -> JobRequest:
    """Read a job request in either dialect.

    Args:
        event: a verified event of kind 25000 (modern) or 5000-5999 (legacy).
        provider: our pubkey; when given, a request ``p``-tagged only to other providers is
            refused before anything else is read (DESIGN.md §4.1: such requests are ignored).
        decrypted_tags: for a legacy request with an ``encrypted`` tag, its decrypted tag list
            (:func:`dvmkit.protocol.legacy.decrypt_legacy_params`); its ``i`` and ``param``
            tags replace the public ones. Ignored for unencrypted requests.
        envelope: how the request came when it was gift-wrapped (``event`` is then the
            inner request, already checked by :func:`~dvmkit.protocol.envelope.open_wrap`).

    Returns:
        The request. A modern request with no ``i`` tag takes a non-empty ``content`` as its
        one ``text`` input; a legacy request's content is never an input.

    Raises:
        ProtocolError: not a request kind, a kind 25000 status or cancellation (it has a
            ``status`` tag), addressed to other providers, or encrypted with no
            ``decrypted_tags`` given: not a job to answer.
        JobError: a malformed ``i``, ``param`` or ``bid`` tag, or an unsupported encryption
            scheme: BAD_REQUEST or INVALID_PARAMETER with a message for the customer.
    """
    dialect = dialect_of(event.kind)
    if dialect is None:
        raise ProtocolError(
            f"kind {event.kind} is not a job request (25000, or 5000-5999 for NIP-90)"
        )
    if dialect is Dialect.MODERN and event.tag("status") is not None:
        # Statuses, results and cancellations share kind 25000; only requests lack `status`.
        raise ProtocolError(f"event {event.id} is a job status or cancellation, not a request")
    providers = _unique(v.lower() for v in event.tag_values("p") if is_hex64(v.lower()))
    if provider is not None and providers and provider not in providers:
        raise ProtocolError(f"request {event.id} is addressed to other providers")
    encryption = encryption_scheme(event) if dialect is Dialect.LEGACY else None
    tags: Sequence[Tag] = event.tags
    if encryption is not None:
        if decrypted_tags is None:
            raise ProtocolError(
                f"request {event.id} has encrypted params: decrypt them with "
                "decrypt_legacy_params and pass decrypted_tags"
            )
        try:
            private = normalize_tags(decrypted_tags)
        except InvalidEvent as exc:
            raise JobError(ErrorCode.BAD_REQUEST, f"encrypted params: {exc}") from None
        tags = [t for t in event.tags if t[0] not in ("i", "param")] + list(private)

    inputs: list[JobInput] = []
    params: list[tuple[str, tuple[str, ...]]] = []
    relays: list[str] = []
    output: str | None = None
    bid: int | None = None
    category: str | None = None
    topic: str | None = None
    for tag in tags:
        name = tag[0]
        if name == "i":
            inputs.append(_input(tag, len(inputs) + 1))
        elif name == "param":
            params.append(_param(tag))
        elif name == "bid":
            amount = _bid(tag)
            bid = amount if bid is None else bid
        elif name == "relays":
            relays.extend(v for v in tag[1:] if is_relay_url(v))
        elif name == "output" and output is None and len(tag) > 1 and tag[1]:
            output = tag[1]
        elif name == "category" and category is None and len(tag) > 1 and tag[1]:
            category = tag[1]
        elif name == "t" and topic is None and len(tag) > 1 and tag[1]:
            topic = tag[1]
    if dialect is Dialect.MODERN:
        # DESIGN.md §4.2: a request names its category in both tags; relays index only `t`.
        category = category or topic
        if not inputs and event.content:
            inputs.append(JobInput(event.content, "text"))
    return JobRequest(
        id=event.id,
        customer=event.pubkey,
        dialect=dialect,
        kind=event.kind,
        category=category,
        inputs=tuple(inputs),
        params=tuple(params),
        output=output,
        bid_msat=bid,
        relays=_unique(relays),
        providers=providers,
        encryption=encryption,
        expiration=nip40.expiration(event),
        created_at=event.created_at,
        event=event,
        envelope=envelope,
    )


def answerable_request(event: Event, *, envelope: Envelope | None = None) -> JobRequest:
    """What is needed to answer a request that :func:`parse_request` refused with a JobError.

    The id, customer, dialect, category, ``relays``, encryption scheme and ``envelope`` are
    kept (an answer to a private request stays private); inputs and params, which were the
    problem, are left empty.

    Raises:
        ProtocolError: ``event`` is not of a request kind.
    """
    dialect = dialect_of(event.kind)
    if dialect is None:
        raise ProtocolError(f"kind {event.kind} is not a job request")
    category = None
    if dialect is Dialect.MODERN:
        category = event.tag_value("category") or event.tag_value("t") or None
    relays = [v for tag in event.tags_named("relays") for v in tag[1:] if is_relay_url(v)]
    encryption: Encryption | None = None
    if dialect is Dialect.LEGACY:
        try:
            encryption = encryption_scheme(event)
        except JobError:
            encryption = None  # an unknown scheme: the answer can only be in the clear
    return JobRequest(
        id=event.id,
        customer=event.pubkey,
        dialect=dialect,
        kind=event.kind,
        category=category,
        inputs=(),
        params=(),
        output=None,
        bid_msat=None,
        relays=_unique(relays),
        providers=(),
        encryption=encryption,
        expiration=nip40.expiration(event),
        created_at=event.created_at,
        event=event,
        envelope=envelope,
    )


def as_status(value: StatusKind | str) -> StatusKind:
    """``value`` as a :class:`StatusKind`.

    Raises:
        ProtocolError: not one of the statuses.
    """
    try:
        return StatusKind(value)
    except ValueError:
        raise ProtocolError(f"unknown job status {_show(str(value))}") from None


def parse_amount(value: str, what: str) -> int:
    """A non-negative whole number of millisats written in ASCII digits.

    Raises:
        JobError: BAD_REQUEST naming ``what`` and the value.
    """
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_AMOUNT_DIGITS):
        raise JobError(
            ErrorCode.BAD_REQUEST,
            f"{what} must be a whole number of millisats, got {_show(value)}",
        )
    return int(value)


def _input(tag: Tag, number: int) -> JobInput:
    if len(tag) < 2 or not tag[1]:
        raise JobError(
            ErrorCode.BAD_REQUEST,
            f'input {number} has no data: write it as ["i", "<data>", "<type>"]',
        )
    data = tag[1]
    # NIP-90 makes the type mandatory, but clients in the wild omit it; a bare value can only
    # be read literally.
    kind = tag[2] if len(tag) > 2 and tag[2] else "text"
    if kind in ("event", "job"):
        if not is_hex64(data.lower()):
            raise JobError(
                ErrorCode.BAD_REQUEST,
                f"input {number} of type {kind!r} must be a 64-character hex event id, "
                f"got {_show(data)}",
            )
        data = data.lower()
    relay = tag[3] if len(tag) > 3 and tag[3] else None
    marker = tag[4] if len(tag) > 4 and tag[4] else None
    return JobInput(data, kind, relay, marker)


def _param(tag: Tag) -> tuple[str, tuple[str, ...]]:
    if len(tag) < 2 or not tag[1].strip():
        raise JobError(
            ErrorCode.BAD_REQUEST,
            'a param tag has no name: write it as ["param", "<name>", "<value>"]',
        )
    if len(tag) < 3:
        raise JobError(
            ErrorCode.INVALID_PARAMETER,
            f'param {_show(tag[1])} has no value: write it as ["param", "<name>", "<value>"]',
        )
    return tag[1], tuple(tag[2:])


def _bid(tag: Tag) -> int:
    if len(tag) < 2:
        raise JobError(ErrorCode.BAD_REQUEST, 'the bid tag has no amount: ["bid", "<msat>"]')
    return parse_amount(tag[1], "bid")


def is_relay_url(value: str) -> bool:
    """True for a ``ws://`` or ``wss://`` URL (any case): what a ``relays`` tag may name."""
    return value[:6].lower() == "wss://" or value[:5].lower() == "ws://"


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _show(value: str, limit: int = 40) -> str:
    """``value`` quoted for an error message, cut short so a hostile tag cannot bloat it."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"
