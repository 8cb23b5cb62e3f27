"""The customer's values: what discovery finds, what a job reports, and how long to wait.

All frozen dataclasses (STYLE.md): a :class:`DVMInfo` per DVM found, an :class:`Update` per
thing that happened to a job, a :class:`JobResult` at the end, and :class:`CustomerTimeouts`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dvmkit.nostr.event import Event
from dvmkit.protocol.job import Dialect


@dataclass(frozen=True, slots=True)
class CustomerTimeouts:
    """How long a customer waits, in seconds.

    Attributes:
        connect: for the relays to answer the customer's first subscription.
        discover: for relays to send stored announcements and heartbeats.
        offer_window: after sending an open request, how long offers are collected before
            one is chosen (a free result that arrives meanwhile wins at once).
        ack: an ephemeral request nobody answered within this is published again (relays
            do not store kind 25000: a DVM that was reconnecting missed it).
        republish: how many times it is published again.
        silence: a DVM that says nothing for this long is given up on (the next candidate
            is tried, or the job ends with :class:`~dvmkit.errors.NoAnswer`).
    """

    connect: float = 5.0
    discover: float = 3.0
    offer_window: float = 1.0
    ack: float = 2.0
    republish: int = 2
    silence: float = 15.0


DEFAULT_CUSTOMER_TIMEOUTS = CustomerTimeouts()


@dataclass(frozen=True, slots=True)
class DVMInfo:
    """One DVM as discovery sees it: its announcements (11999 and 31990) and last heartbeat.

    ``alive`` follows Amethyst (PR #4069): the latest beat is at most 900 s old and has not
    expired. A DVM that never beat is not alive. A legacy-only DVM's beat is the one whose
    ``d`` is its NIP-89 ``d`` (several such DVMs may share a key).
    """

    pubkey: str
    name: str
    about: str
    picture: str
    categories: tuple[str, ...]
    kinds: tuple[int, ...]
    dialects: tuple[Dialect, ...]
    price_msat: int | None
    payment_methods: tuple[str, ...]
    encryption: bool
    relays: tuple[str, ...]
    params: Mapping[str, Any] = field(hash=False)
    last_beat: int | None
    beat_age: float | None
    load: float | None
    queue: int | None
    alive: bool
    #: the NIP-89 ``d`` identifier; several legacy-only DVMs under one key differ by it.
    d: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``dvm discover`` prints per line)."""
        return {
            "pubkey": self.pubkey,
            "d": self.d,
            "name": self.name,
            "about": self.about,
            "picture": self.picture,
            "categories": list(self.categories),
            "kinds": list(self.kinds),
            "dialects": [d.value for d in self.dialects],
            "price_msat": self.price_msat,
            "payment_methods": list(self.payment_methods),
            "encryption": self.encryption,
            "relays": list(self.relays),
            "params": dict(self.params),
            "last_beat": self.last_beat,
            "beat_age": None if self.beat_age is None else round(self.beat_age, 1),
            "load": self.load,
            "queue": self.queue,
            "alive": self.alive,
        }


class UpdateType(enum.StrEnum):
    """What happened to a job, in the order a customer usually sees it."""

    SENT = "sent"
    REPUBLISHED = "republished"
    OFFER = "offer"
    CHOSEN = "chosen"
    PAYMENT_REQUIRED = "payment-required"
    PAID = "paid"
    PROCESSING = "processing"
    PARTIAL = "partial"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"
    FAILOVER = "failover"
    TIMEOUT = "timeout"


FINAL_UPDATES = frozenset(
    {UpdateType.SUCCESS, UpdateType.ERROR, UpdateType.CANCELLED, UpdateType.TIMEOUT}
)


@dataclass(frozen=True, slots=True)
class Update:
    """One thing that happened to a job.

    Attributes:
        type: what happened.
        request_id: the request event it is about (a job that fails over has several).
        dvm: the DVM concerned (the author of the answer, the one chosen, the one failed over
            to), or None.
        content: a (partial) result, or the message of an error or status.
        amount_msat, bolt11: the price of an offer or payment-required; what was paid.
        code: an error's code.
        methods: the payment methods an offer or payment-required names, each with its
            detail (a Cashu mint, a lightning address) or None.
        method: how the customer paid (``paid``), or how a refund came (``error``).
        refund_msat: what the DVM gave back with the ``error`` ending a paid job.
        event: the event that carried it (None for updates of the customer's own making).
    """

    type: UpdateType
    request_id: str
    dvm: str | None = None
    content: str = ""
    amount_msat: int | None = None
    bolt11: str | None = None
    code: str | None = None
    methods: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    method: str | None = None
    refund_msat: int | None = None
    event: Event | None = field(default=None, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.type in FINAL_UPDATES

    def describe(self) -> str:
        """One line for people (``dvm ask``'s progress): what happened, who, at what price.

        Text from the DVM is cut to one printable line: it comes from the network, and a
        terminal must not run escape sequences a stranger wrote.
        """
        who = _short(self.dvm) if self.dvm else "?"
        price = f" {self.amount_msat} msat" if self.amount_msat is not None else ""
        text = _printable(self.content)
        # Method names and details come from the DVM too: printable, and short.
        methods = ", ".join(_printable(m)[:32] for m in self.methods)
        refund = f" (refunded {self.refund_msat} msat)" if self.refund_msat else ""
        words = {
            UpdateType.SENT: f"sent request {_short(self.request_id)}"
            + (f" to {who}" if self.dvm else " (open)"),
            UpdateType.REPUBLISHED: f"republished request {_short(self.request_id)}: no answer yet",
            UpdateType.OFFER: f"offer from {who}:{price or ' no price'}",
            UpdateType.CHOSEN: f"chose {who}{price}" + (f" ({text})" if text else ""),
            UpdateType.PAYMENT_REQUIRED: f"payment required by {who}:{price}"
            + (f" ({methods})" if methods else ""),
            UpdateType.PAID: f"paid{price} to {who}"
            + (f" by {_printable(self.method)[:32]}" if self.method else ""),
            UpdateType.PROCESSING: f"processing by {who}" + (f": {text}" if text else ""),
            UpdateType.PARTIAL: f"partial result from {who}: {text}",
            UpdateType.FAILOVER: f"failing over to {who}: the DVM before it stayed silent",
            UpdateType.SUCCESS: f"result from {who}{price}",
            UpdateType.ERROR: f"error from {who}: {self.code or 'ERROR'} {text}".rstrip() + refund,
            UpdateType.CANCELLED: f"cancelled by {who}",
            UpdateType.TIMEOUT: f"timeout: {text}",
        }
        return words[self.type]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of ``dvm job wait``)."""
        out: dict[str, Any] = {"type": self.type.value, "request": self.request_id}
        if self.dvm is not None:
            out["dvm"] = self.dvm
        if self.content:
            out["content"] = self.content
        if self.amount_msat is not None:
            out["amount_msat"] = self.amount_msat
        if self.bolt11 is not None:
            out["bolt11"] = self.bolt11
        if self.code is not None:
            out["code"] = self.code
        if self.methods:
            out["methods"] = dict(self.methods)
        if self.method is not None:
            out["method"] = self.method
        if self.refund_msat is not None:
            out["refund_msat"] = self.refund_msat
        if self.event is not None:
            out["event"] = self.event.id
        return out


_MAX_LINE = 200


def _short(key: str) -> str:
    return key[:12] + "…" if len(key) > 12 else key


def _printable(text: str) -> str:
    """``text`` on one line of printable characters, at most 200 of them."""
    line = "".join(ch if ch.isprintable() else " " for ch in text[: _MAX_LINE * 2])
    line = " ".join(line.split())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


@dataclass(frozen=True, slots=True)
class JobResult:
    """A job's result: the content, who produced it, and the event that carried it."""

    content: str
    dvm: str
    request_id: str
    event: Event = field(repr=False)
    amount_msat: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": self.content,
            "dvm": self.dvm,
            "request": self.request_id,
            "event": self.event.id,
        }
        if self.amount_msat is not None:
            out["amount_msat"] = self.amount_msat
        return out
