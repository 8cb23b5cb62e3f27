"""The client pool's values: the settings it takes and the results and snapshots it returns.

All frozen: :class:`Timeouts` goes in; :class:`PublishResult` (one :class:`Outcome` per relay),
:class:`CountResult` (one :class:`CountOutcome` per relay), :class:`RelayStats` and
:class:`PoolStats` come out. :func:`backoff_delay` is the one retry schedule the pool uses for
reconnects and for ``rate-limited:`` refusals. :func:`relay_url` checks and normalises the
URLs the pool is given.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from dvmkit.errors import RelayError

OutcomeStatus = Literal["accepted", "duplicate", "rejected", "timeout", "not_connected", "pending"]
CountStatus = Literal["counted", "closed", "malformed", "timeout", "not_connected"]
ConnectionState = Literal["connecting", "connected", "backoff", "stopped"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines and intervals, in seconds.

    ``reconnect_initial`` doubles after each failed attempt up to ``reconnect_max`` (30 s,
    per issue 3), with jitter so that many clients do not reconnect in lockstep.
    """

    connect: float = 10.0
    publish: float = 10.0
    eose: float = 10.0
    close: float = 2.0
    nip11: float = 3.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    stable_after: float = 10.0  # a connection up this long resets the backoff
    count: float = 10.0  # NIP-45 COUNT answers; last so that positional use keeps working


DEFAULT_TIMEOUTS = Timeouts()


def backoff_delay(
    attempt: int, *, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter": a delay in [d/2, d], d = min(cap, initial*2^n)."""
    ceiling = min(cap, initial * 2.0 ** min(attempt, 32))
    return ceiling / 2 + ceiling / 2 * rand()


# -- relay URLs ------------------------------------------------------------------------------

MAX_URL_LENGTH = 2048
# RFC 3986 §2: unreserved and reserved characters, and "%" for percent-encoding. Anything
# else (spaces, controls, quotes, backslashes, non-ASCII) is refused, never escaped for the
# caller: a URL from an untrusted request must either dial as written or not at all.
_NOT_URL_CHAR = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_AUTHORITY = re.compile(r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::(?P<port>[0-9]*))?")
# The resolver IDNA-encodes host names (socket.getaddrinfo): an empty label, or one longer
# than 63 characters, raises UnicodeError there instead of failing the lookup.
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_DEFAULT_PORT = {"ws": 80, "wss": 443}


def relay_url(url: str) -> str:
    """Check a relay URL and return the form the pool knows the relay by.

    Accepted: ``ws://`` or ``wss://`` (any case), a host that is a DNS name (labels of
    letters, digits, ``-`` and ``_``, 1-63 characters each), an IPv4 address or a bracketed
    IPv6 address, an optional port 1-65535, then a path and query of RFC 3986 characters.
    The normal form lower-cases scheme and host and drops a default port, a trailing ``/``
    and an empty query, and keeps IPv6 brackets. Surrounding whitespace is ignored.

    Args:
        url: the URL as given (configuration, or an untrusted ``relays`` tag).

    Returns:
        The normalised URL; ``urllib.parse.urlsplit`` parses it with a valid host and port.

    Raises:
        RelayError: why the URL cannot name a relay (scheme, characters, user information,
            fragment, host or port). User information is never echoed: it may hold a password.
    """
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise RelayError(
            f"a relay URL must be at most {MAX_URL_LENGTH} characters", url=_shown(text)
        )
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORT:
        raise RelayError("a relay URL must start with ws:// or wss://", url=_shown(text))
    if bad := _NOT_URL_CHAR.search(text):
        raise RelayError(
            f"a relay URL may contain only ASCII letters, digits and RFC 3986 punctuation, "
            f"not {bad.group()!r}",
            url=_shown(text),
        )
    if _BAD_PERCENT.search(text):
        raise RelayError("'%' must begin a percent-encoded byte (%XX)", url=_shown(text))
    if "#" in text:
        raise RelayError("a relay URL must not have a fragment ('#')", url=_shown(text))
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # unbalanced IPv6 brackets
        raise RelayError(f"the host does not parse: {exc}", url=_shown(text)) from None
    if "@" in parts.netloc:
        raise RelayError("a relay URL must not contain user information ('user:password@')")
    found = _AUTHORITY.fullmatch(parts.netloc)
    if found is None:
        raise RelayError(f"the host and port {parts.netloc!r} do not parse", url=_shown(text))
    host = _host(found["ipv6"], found["name"], text)
    port = _DEFAULT_PORT[scheme]
    if found["port"]:
        port = int(found["port"])
        if not 1 <= port <= 65535:
            raise RelayError(f"port {port} is outside 1-65535", url=_shown(text))
    netloc = host if port == _DEFAULT_PORT[scheme] else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def _host(ipv6: str | None, name: str | None, text: str) -> str:
    if ipv6 is not None:
        # ipaddress takes "%zone" suffixes; a zone id only means something on this machine.
        try:
            if "%" in ipv6:
                raise ValueError("zone ids are not supported")
            return f"[{ipaddress.IPv6Address(ipv6).compressed}]"
        except ValueError as exc:
            raise RelayError(f"[{ipv6}] is not an IPv6 address: {exc}", url=_shown(text)) from None
    name = (name or "").lower()
    if not name:
        raise RelayError("a relay URL must name a host", url=_shown(text))
    if len(name) > 253:
        raise RelayError("the host name is longer than 253 characters", url=_shown(text))
    labels = name[:-1] if name.endswith(".") else name  # one trailing dot: a rooted name
    for label in labels.split("."):
        if not _LABEL.fullmatch(label):
            raise RelayError(
                f"the host {name!r} is not a DNS name or an IP address: each dot-separated "
                f"label must be 1-63 letters, digits, '-' or '_'",
                url=_shown(text),
            )
    return name


def _shown(text: str) -> str:
    """``text`` for an error message: user information hidden, cut short."""
    rest = text.partition("://")[2] or text
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        text = text.replace(authority, "…@" + authority.rpartition("@")[2], 1)
    return text if len(text) <= 80 else text[:80] + "…"


# -- publish ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one relay did with a published event; ``message`` is the relay's own text."""

    status: OutcomeStatus
    message: str = ""

    @property
    def ok(self) -> bool:
        """The relay has the event (it accepted it now or already had it)."""
        return self.status in ("accepted", "duplicate")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Per-relay outcomes of one publish; relays not finished when it returned are "pending"."""

    event_id: str
    outcomes: Mapping[str, Outcome]
    required: int

    @property
    def accepted(self) -> tuple[str, ...]:
        """Relays that have the event (accepted or duplicate)."""
        return tuple(url for url, o in self.outcomes.items() if o.ok)

    @property
    def ok(self) -> bool:
        """At least ``required`` relays have the event."""
        return len(self.accepted) >= self.required

    def raise_for_status(self) -> None:
        """Raise when fewer than ``required`` relays took the event.

        Raises:
            RelayError: listing every relay's outcome.
        """
        if not self.ok:
            detail = "; ".join(
                f"{u}: {o.status} {o.message}".strip() for u, o in self.outcomes.items()
            )
            raise RelayError(
                f"event {self.event_id} reached {len(self.accepted)} of {self.required} "
                f"required relays ({detail})"
            )


# -- count (NIP-45) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountOutcome:
    """One relay's answer to a NIP-45 COUNT.

    ``status`` is ``"counted"`` (``count`` holds the number, ``approximate`` whether the relay
    said it estimated it), ``"closed"`` (the relay refused with CLOSED, or dvmkit did not send
    because of the relay's NIP-11 limits; ``message`` says why), ``"malformed"`` (the relay
    answered with a COUNT that breaks NIP-45; ``message`` says how), ``"timeout"`` (sent, no
    answer by the deadline: relays without NIP-45 often stay silent) or ``"not_connected"``.
    """

    status: CountStatus
    count: int | None = None
    approximate: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        """The relay answered with a count."""
        return self.status == "counted"


@dataclass(frozen=True, slots=True)
class CountResult:
    """Per-relay answers to one COUNT. Relays count independently, so the numbers are not
    summed: the same event stored on two relays is counted by both."""

    outcomes: Mapping[str, CountOutcome]

    @property
    def counts(self) -> Mapping[str, int]:
        """The relays that answered, with their count."""
        return {u: o.count for u, o in self.outcomes.items() if o.count is not None}

    @property
    def errors(self) -> Mapping[str, str]:
        """The relays that did not answer with a count, with what happened instead."""
        return {u: f"{o.status} {o.message}".strip() for u, o in self.outcomes.items() if not o.ok}


# -- stats -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayStats:
    """A snapshot of one connection's counters."""

    url: str
    state: ConnectionState
    connected: bool
    latency: float | None
    sent: int
    received: int
    accepted: int
    duplicates: int
    rejected: int
    timeouts: int
    invalid: int
    malformed: int
    notices: int
    reconnects: int
    subscriptions: int
    authenticated: bool


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool: per relay, and summed."""

    relays: Mapping[str, RelayStats]
    connected: int
    subscriptions: int
    sent: int
    received: int
    rejected: int
    invalid: int
    reconnects: int
