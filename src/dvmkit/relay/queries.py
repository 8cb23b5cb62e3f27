"""The relay's REQ, COUNT and CLOSE: stored events, then live ones, and NIP-45 counts.

A REQ first commits the events received before it (so it sees them), sends the stored events
its filters match and ``EOSE``, then files the subscription in the relay's
:class:`~dvmkit.relay.fanout.SubscriptionIndex`, through which the
:class:`~dvmkit.relay.ingest.Ingest` delivers new events live. With ``auth``, gift wraps
(1059, 21059) are served only to connections authenticated as their ``p`` recipient (NIP-59).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from dvmkit.nostr.filters import Filter
from dvmkit.relay.fanout import Subscription, SubscriptionIndex
from dvmkit.relay.ingest import RATE_LIMITED, Ingest
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.peer import Peer
from dvmkit.relay.storage import WRAP_KINDS, EventStore
from dvmkit.relay.validation import Rejected, parse_filters, valid_sub_id


class Queries:
    """Answers the REQ, COUNT and CLOSE messages of every connection of one relay.

    Owned by the :class:`~dvmkit.relay.server.Relay`, which sets :attr:`store` while it runs.
    """

    def __init__(
        self,
        *,
        index: SubscriptionIndex,
        ingest: Ingest,
        limits: RelayLimits,
        clock: Callable[[], float],
        auth: bool,
    ) -> None:
        """Start with no store.

        Args:
            index: the relay's live subscriptions, where a REQ files its subscription.
            ingest: the relay's EVENT path, flushed before a query so that it sees every
                event received before it.
            limits: the relay's limits.
            clock: the wall clock, for NIP-40 expirations.
            auth: serve gift wraps (1059/21059) only to connections authenticated as their
                ``p`` recipient (NIP-59).
        """
        self._index = index
        self._ingest = ingest
        self._limits = limits
        self._clock = clock
        self._auth = auth
        #: The relay's store while it runs; None before start and after stop.
        self.store: EventStore | None = None

    def on_req(self, peer: Peer, message: list[object], *, count: bool) -> None:
        """Handle ``["REQ", <id>, <filter>...]`` or, with ``count``, NIP-45 ``["COUNT", ...]``."""
        verb = "COUNT" if count else "REQ"
        sub_id = message[1] if len(message) > 1 else None
        if not isinstance(sub_id, str) or len(sub_id) > self._limits.max_subid_length:
            if peer.requests.take():
                peer.notice(
                    f"invalid: {verb} needs a subscription id of 1 to"
                    f" {self._limits.max_subid_length} characters"
                )
            return
        if not peer.requests.take():
            peer.closed(sub_id, RATE_LIMITED)
            return
        if not valid_sub_id(sub_id, self._limits):
            peer.closed(sub_id, "invalid: subscription id must not be empty")
            return
        try:
            filters = parse_filters(message[2:], limits=self._limits)
        except Rejected as exc:
            peer.closed(sub_id, exc.reason)
            return
        recipients = self._wrap_recipients(peer, filters)
        if isinstance(recipients, str):
            peer.send_challenge()
            peer.closed(sub_id, recipients)
            return
        if (
            not count
            and sub_id not in peer.subs
            and len(peer.subs) >= self._limits.max_subscriptions
        ):
            peer.closed(
                sub_id,
                "blocked: too many open subscriptions"
                f" (at most {self._limits.max_subscriptions}); close some first",
            )
            return
        # Events received before this REQ must be visible to it.
        self._ingest.flush()
        assert self.store is not None
        now = int(self._clock())
        if count:
            total = self.store.count(filters, now=now, wrap_recipients=recipients)
            peer.send(orjson.dumps(["COUNT", sub_id, {"count": total}]))
            return
        old = peer.subs.pop(sub_id, None)  # NIP-01: a REQ with a known id replaces it
        if old is not None:
            self._index.remove(old)
        sub = Subscription(peer, sub_id, filters)
        stored = self.store.query(
            filters,
            now=now,
            default_limit=self._limits.default_limit,
            max_limit=self._limits.max_limit,
            wrap_recipients=recipients,
        )
        for raw in stored:
            peer.send(sub.prefix + raw + b"]")
        peer.send(orjson.dumps(["EOSE", sub_id]))
        peer.subs[sub_id] = sub
        self._index.add(sub)

    def _wrap_recipients(
        self, peer: Peer, filters: tuple[Filter, ...]
    ) -> frozenset[str] | str | None:
        """NIP-59 under ``auth``: who may receive wraps, or an ``auth-required:`` reason."""
        if not self._auth:
            return None
        if peer.authed:
            return frozenset(peer.authed)
        for flt in filters:
            if flt.kinds is None or not flt.kinds.isdisjoint(WRAP_KINDS):
                return "auth-required: gift wraps are served only to their authenticated recipient"
        return frozenset()

    def on_close(self, peer: Peer, message: list[object]) -> None:
        """Handle ``["CLOSE", <id>]``: end that subscription, if the connection has it."""
        if not peer.requests.take():
            return
        sub_id = message[1] if len(message) == 2 else None
        if not isinstance(sub_id, str):
            peer.notice('invalid: CLOSE must be ["CLOSE", <subscription id>]')
            return
        sub = peer.subs.pop(sub_id, None)
        if sub is not None:
            self._index.remove(sub)
