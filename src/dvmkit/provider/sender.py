"""Sending what the job store says: publish, mark sent in batches, re-send by job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from dvmkit.errors import DVMError
from dvmkit.nostr.event import Event
from dvmkit.relay.pool import RelayPool, relay_url
from dvmkit.store import JobStore

log = logging.getLogger("dvmkit.provider")


class Sender:
    """Publishes a DVM's committed events to its relays and to the ones requests name.

    Args:
        pool: the DVM's relay pool.
        store: the job store whose outbox the events came from.
        relays: the DVM's own relays (always published to).
        extra_relays: how many relays from requests' ``relays`` tags it will also keep.
    """

    def __init__(
        self, *, pool: RelayPool, store: JobStore, relays: Sequence[str], extra_relays: int
    ) -> None:
        self.pool = pool
        self.store = store
        # The pool knows relays by their normal form (relay_url); so must the targets.
        self.relays = [relay_url(url) for url in relays]
        self.extra_relays = extra_relays
        self._sent: list[str] = []
        self._sent_ready = asyncio.Event()

    async def send(self, event: Event, extra: Sequence[str]) -> bool:
        """Publish to our relays and the request's ``relays``; True when a relay took it."""
        targets = list(self.relays)
        for raw in extra:
            try:
                url = relay_url(raw)
            except DVMError:
                continue  # from the request (untrusted): no relay can be dialled at it
            if url in targets:
                continue
            if url in self.pool.relays:
                targets.append(url)
            elif len(self.pool.relays) < len(self.relays) + self.extra_relays:
                try:
                    await self.pool.add_relay(url)
                    targets.append(url)
                except DVMError:
                    pass
        targets = [t for t in targets if t in self.pool.relays]
        result = await self.pool.publish(event, wait="first", relays=targets)
        if not result.ok:
            log.warning("event %s reached no relay; it stays in the outbox", event.id)
            return False
        # Marked sent in batches: a store round trip per event would cost a quarter of a
        # quick job. Ids a crash leaves unmarked are re-sent with the same ids (harmless).
        self._sent.append(event.id)
        self._sent_ready.set()
        return True

    async def resend(self, job_id: str) -> None:
        """Send again what was already said about a job, with the same event ids."""
        for item in await self.store.job_events(job_id):
            try:
                await self.send(Event.from_json(item.event_json), item.relays)
            except DVMError:
                continue

    async def run(self) -> None:
        """Mark published events sent, a batch per wake-up, until cancelled."""
        while True:
            await self._sent_ready.wait()
            self._sent_ready.clear()
            batch, self._sent = self._sent, []
            await self.store.mark_sent(batch)
