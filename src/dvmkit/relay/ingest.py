"""The relay's EVENT path: check, group commit, acknowledge in order, fan out.

Events that arrive in one event-loop tick are written in one SQLite transaction (a group
commit); their ``OK`` is queued only after the commit, so an ``OK true`` is never lost to a
crash. A connection's replies go out in the order its EVENTs arrived: a refusal that needs no
storage still waits behind the OKs of that connection's events awaiting the commit, so a
client that pipelines sees its OKs in the order it sent. Stored and ephemeral events are then
handed to the live subscriptions that match them (:class:`~dvmkit.relay.fanout.SubscriptionIndex`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TypeGuard

from dvmkit.nostr.kinds import is_ephemeral
from dvmkit.relay.fanout import SubscriptionIndex
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.peer import Peer
from dvmkit.relay.storage import WRAP_KINDS, EventStore, SaveOutcome
from dvmkit.relay.validation import Accepted, Rejected, validate_event

log = logging.getLogger("dvmkit.relay")

#: The refusal for a connection over its EVENT or request rate (NIP-01 ``rate-limited:``).
RATE_LIMITED = "rate-limited: slow down"
_HEX64_LEN = 64
_OUTCOME = {
    SaveOutcome.STORED: (True, ""),
    SaveOutcome.DUPLICATE: (True, "duplicate: already have this event"),
    SaveOutcome.SUPERSEDED: (
        False,
        "invalid: a newer version of this replaceable event is already stored",
    ),
    SaveOutcome.DELETED: (False, "blocked: this event was deleted by its author (NIP-09)"),
}


class Ingest:
    """Takes in the EVENT messages of every connection of one relay.

    Owned by the :class:`~dvmkit.relay.server.Relay`, which sets :attr:`store` while it runs
    and calls :meth:`flush` before anything that must see every event received so far.
    """

    def __init__(
        self,
        *,
        index: SubscriptionIndex,
        limits: RelayLimits,
        clock: Callable[[], float],
        auth: bool,
    ) -> None:
        """Start with no store and nothing pending.

        Args:
            index: the relay's live subscriptions, to fan accepted events out to.
            limits: the relay's limits.
            clock: the wall clock, for created_at windows and NIP-40 expirations.
            auth: deliver gift wraps (1059/21059) only to connections authenticated as their
                ``p`` recipient (NIP-59).
        """
        self._index = index
        self._limits = limits
        self._clock = clock
        self._auth = auth
        #: The relay's store while it runs; None before start and after stop.
        self.store: EventStore | None = None
        #: EVENT replies of this tick, in arrival order: (peer, event, its id, reason); the
        #: event is None for one refused without storage, whose OK waits behind the others.
        self._pending: list[tuple[Peer, Accepted | None, str, str]] = []
        self._flush_scheduled = False
        #: Events so far, by what became of them.
        self.counts = dict.fromkeys(("received", "stored", "duplicate", "rejected", "ephemeral"), 0)

    def on_event(self, peer: Peer, message: list[object]) -> None:
        """Handle ``["EVENT", <event>]``: refuse it now or queue it for this tick's commit."""
        data = message[1] if len(message) == 2 else None
        event_id = data.get("id") if type(data) is dict else None
        if not _is_hex64(event_id):
            peer.notice('invalid: EVENT must be ["EVENT", <event with a 64-hex id>]')
            return
        self.counts["received"] += 1
        if not peer.events.take():
            self.reject(peer, event_id, RATE_LIMITED)
            return
        try:
            accepted = validate_event(data, limits=self._limits, now=int(self._clock()))
        except Rejected as exc:
            self.reject(peer, event_id, exc.reason)
            return
        event = accepted.event
        # NIP-70: an event tagged ["-"] may only be published by its authenticated author.
        if event.tag("-") is not None and event.pubkey not in peer.authed:
            peer.send_challenge()
            self.reject(
                peer, event_id, "auth-required: this event may only be published by its author"
            )
            return
        self._queue(peer, accepted, event_id, "")

    def reject(self, peer: Peer, event_id: str, reason: str) -> None:
        """``OK false``, after the OKs of this connection's events still waiting for a commit."""
        self.counts["rejected"] += 1
        if peer.queued_events:
            self._queue(peer, None, event_id, reason)
        else:
            peer.ok(event_id, False, reason)

    def _queue(self, peer: Peer, accepted: Accepted | None, event_id: str, reason: str) -> None:
        peer.queued_events += 1
        self._pending.append((peer, accepted, event_id, reason))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Store the events of this tick in one transaction, then acknowledge and fan out.

        Replies go out in the order the EVENTs arrived, refusals included, so a client that
        pipelines sees its OKs in the order it sent.
        """
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        for peer, *_ in pending:
            peer.queued_events = 0
        store = self.store
        outcomes: list[SaveOutcome | None] = []
        try:
            if store is None:
                raise sqlite3.OperationalError("the store is closed")
            storable = [acc for _, acc, _, _ in pending if acc is not None]
            if any(not is_ephemeral(item.event.kind) for item in storable):
                with store.transaction():
                    for item in storable:
                        outcomes.append(
                            None
                            if is_ephemeral(item.event.kind)
                            else store.save(item.event, item.raw, expiration=item.expiration)
                        )
            else:
                outcomes = [None] * len(storable)
        except sqlite3.Error as exc:
            log.error("could not store %d events: %s", len(pending), exc)
            for peer, acc, event_id, reason in pending:
                if acc is None:
                    peer.ok(event_id, False, reason)
                else:
                    self.counts["rejected"] += 1
                    peer.ok(event_id, False, "error: the relay could not store the event")
            return
        counts = self.counts
        next_outcome = iter(outcomes).__next__
        for peer, acc, event_id, reason in pending:
            if acc is None:
                peer.ok(event_id, False, reason)
                continue
            outcome = next_outcome()
            if outcome is None:
                # NIP-01: ephemeral events are delivered live and never stored.
                counts["ephemeral"] += 1
                peer.ok(event_id, True, "")
                self._fan_out(acc)
                continue
            accepted, reason = _OUTCOME[outcome]
            peer.ok(event_id, accepted, reason)
            if outcome is SaveOutcome.STORED:
                counts["stored"] += 1
                self._fan_out(acc)
            elif outcome is SaveOutcome.DUPLICATE:
                counts["duplicate"] += 1
            else:
                counts["rejected"] += 1

    def _fan_out(self, acc: Accepted) -> None:
        event = acc.event
        subs = self._index.matching(event)
        if not subs:
            return
        recipients: set[str] | None = None
        if self._auth and event.kind in WRAP_KINDS:
            recipients = set(event.tag_values("p"))
        tail = acc.raw + b"]"
        for sub in subs:
            if recipients is not None and recipients.isdisjoint(sub.peer.authed):
                continue  # NIP-59: a wrap goes only to its authenticated recipient
            sub.peer.send_live(sub.prefix + tail)


def _is_hex64(value: object) -> TypeGuard[str]:
    # Same answer as keys.is_hex64 without the regex: this runs for every EVENT.
    if type(value) is not str or len(value) != _HEX64_LEN:
        return False
    try:
        return bytes.fromhex(value).hex() == value
    except ValueError:
        return False
