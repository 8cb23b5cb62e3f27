"""``DVM``: what a developer writes — a name, a handler, and ``run()``.

Example::

    from dvmkit import DVM

    dvm = DVM(name="Shouter", about="Upper-cases text", categories=["text"],
              legacy_kinds=[5050], relays=["ws://127.0.0.1:10547"])

    @dvm.job
    async def shout(input: str, times: int = 1) -> str:
        return " ".join([input.upper()] * times)

    dvm.run()

The DVM announces itself (kind 11999, and NIP-89 kind 31990 when it serves legacy kinds),
beats every ``heartbeat_interval`` seconds (kind 11998), and answers modern kind-25000 and
legacy 5000-5999 requests from the same handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dvmkit.errors import DVMError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.announce import announcement_event, nip89_event
from dvmkit.protocol.heartbeat import heartbeat_event
from dvmkit.protocol.job import LEGACY_MAX_KIND, LEGACY_MIN_KIND
from dvmkit.provider.config import Limits, PaymentProcessor, Price
from dvmkit.provider.engine import Encryption, Engine
from dvmkit.provider.handler import Handler
from dvmkit.provider.pricing import Pricing
from dvmkit.provider.stats import ProviderStats
from dvmkit.relay.pool import RelayPool
from dvmkit.store import JobStore, SQLiteJobStore

log = logging.getLogger("dvmkit.provider")
F = TypeVar("F", bound=Callable[..., Any])
Background = Callable[[RelayPool], Coroutine[Any, Any, None]]
B = TypeVar("B", bound=Background)


class DVM:
    """A Data Vending Machine: configuration, one handler, and its running engine.

    Args:
        name, about, picture, website, documentation, examples: shown by clients.
        categories: modern categories it serves (open requests are matched on ``#t``).
        legacy_kinds: NIP-90 request kinds (5000-5999) it also serves.
        relays: where it listens and publishes.
        keys: its identity. When omitted a key is generated for this run, and jobs are kept
            in memory (durability needs a stable identity: pass ``keys`` or use ``dvm serve``,
            which keeps the key in a 0600 file).
        store: the job store; by default SQLite at ``store_path``.
        store_path: the SQLite file; by default ``.dvmkit/<pubkey prefix>.jobs.sqlite3``
            when ``keys`` is given, in memory otherwise.
        limits: concurrency, queue and timeouts.
        heartbeat_interval: seconds between kind-11998 beats.
        price_msat: a fixed price in millisats (0: free), a
            :class:`~dvmkit.provider.pricing.Pricing` (per input size, per param, free
            tiers, allow-lists), or a function of the request.
        payments: takes and confirms payments (required when there is a price):
            :mod:`dvmkit.provider.payments` (bolt11 over NWC, Cashu, zaps).
        offers: answer an open modern request (no ``p`` tag) with an ``offer`` status (its
            price, ETA and, when priced, payment methods) instead of running it; the
            customer then sends a targeted request to the offer it chose. Off by default:
            every free DVM of the category runs an open request at once. Legacy and targeted
            requests are always run.
        offer_eta: the ETA (whole seconds) offers state; by default the median latency of
            the jobs run so far (no ETA before the first).
        d: the NIP-89 ``d`` identifier (and the heartbeat's); by default from the name.
        encryption: private jobs (DESIGN.md §4.2). ``optional`` (the default) answers
            gift-wrapped requests wrapped back to their customer, and plain ones in the
            clear, and announces ``["encryption", "nip44_v2"]``; ``required`` takes private
            jobs only (a targeted plain request is answered ``error POLICY_VIOLATION``, an
            open one left to others); ``off`` reads no gift wraps and announces none. NIP-90
            encrypted params are read in every mode.
    """

    def __init__(
        self,
        *,
        name: str,
        about: str = "",
        picture: str = "",
        website: str | None = None,
        documentation: str | None = None,
        examples: Sequence[Any] = (),
        categories: Sequence[str] = (),
        legacy_kinds: Sequence[int] = (),
        relays: Sequence[str] = (),
        keys: Keys | None = None,
        store: JobStore | None = None,
        store_path: str | Path | None = None,
        limits: Limits = Limits(),  # noqa: B008 - frozen value
        heartbeat_interval: int = 300,
        price_msat: Price = 0,
        payments: PaymentProcessor | None = None,
        offers: bool = False,
        offer_eta: int | None = None,
        d: str | None = None,
        encryption: Encryption = "optional",
    ) -> None:
        if not categories and not legacy_kinds:
            raise ValueError("a DVM needs at least one category or legacy kind to serve")
        for kind in legacy_kinds:
            if not LEGACY_MIN_KIND <= kind <= LEGACY_MAX_KIND:
                raise ValueError(f"legacy kind {kind} is outside NIP-90's 5000-5999")
        if price_msat != 0 and payments is None:
            raise ValueError("a DVM with a price needs a payments processor to confirm payment")
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if encryption not in ("optional", "required", "off"):
            raise ValueError(f"encryption is optional, required or off, not {encryption!r}")
        if offer_eta is not None and (isinstance(offer_eta, bool) or offer_eta < 0):
            raise ValueError("offer_eta is a non-negative whole number of seconds")
        self.name = name
        self.about = about
        self.picture = picture
        self.website = website
        self.documentation = documentation
        self.examples = tuple(examples)
        self.categories = tuple(dict.fromkeys(categories))
        self.legacy_kinds = tuple(dict.fromkeys(legacy_kinds))
        self.relays = tuple(dict.fromkeys(relays))
        self.keys = keys or Keys.generate()
        self.limits = limits
        self.heartbeat_interval = heartbeat_interval
        self.price = price_msat
        self.payments = payments
        self.offers = offers
        self.offer_eta = offer_eta
        self.encryption: Encryption = encryption
        self.d = d or (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "dvm")
        self._store = store
        self._explicit_store = store is not None or store_path is not None
        if store_path is None and keys is not None:
            store_path = Path(".dvmkit") / f"{self.keys.public_key[:16]}.jobs.sqlite3"
        self._store_path = store_path
        self._handler: Handler | None = None
        self._engine: Engine | None = None
        self._background: list[Background] = []

    def __repr__(self) -> str:
        return f"DVM(name={self.name!r}, pubkey={self.keys.public_key!r})"

    def configure(
        self,
        *,
        keys: Keys | None = None,
        relays: Sequence[str] | None = None,
        store_path: str | Path | None = None,
        limits: Limits | None = None,
        heartbeat_interval: int | None = None,
        encryption: Encryption | None = None,
    ) -> None:
        """Override settings before running (what ``dvm serve`` does with its flags, env and
        TOML). A new key also moves the default job store to that key's file."""
        if self._engine is not None:
            raise RuntimeError("configure a DVM before it runs")
        if keys is not None:
            self.keys = keys
            if store_path is None and not self._explicit_store:
                store_path = Path(".dvmkit") / f"{keys.public_key[:16]}.jobs.sqlite3"
        if relays is not None:
            self.relays = tuple(dict.fromkeys(relays))
        if store_path is not None:
            self._store_path = store_path
        if limits is not None:
            self.limits = limits
        if heartbeat_interval is not None:
            if heartbeat_interval <= 0:
                raise ValueError("heartbeat_interval must be positive")
            self.heartbeat_interval = heartbeat_interval
        if encryption is not None:
            if encryption not in ("optional", "required", "off"):
                raise ValueError(f"encryption is optional, required or off, not {encryption!r}")
            self.encryption = encryption

    @property
    def public_key(self) -> str:
        return self.keys.public_key

    # -- registration -------------------------------------------------------------------------

    def job(self, func: F) -> F:
        """Register the job handler; returns it unchanged (as FastAPI's decorators do).

        Raises:
            TypeError: a parameter cannot be bound, or a handler is already registered.
        """
        if self._handler is not None:
            raise TypeError(f"{self.name} already has a handler ({self._handler.name})")
        self._handler = Handler(func)
        return func

    def background(self, func: B) -> B:
        """Register ``async def task(pool)`` to run while the DVM serves; returns it unchanged.

        For work a handler relies on but no job starts: an index fed by a subscription, a
        cache refreshed on a timer. It starts with the engine, on the DVM's own
        :class:`RelayPool`, and is cancelled when serving stops; an exception it lets out
        stops the DVM (structured concurrency: no task outlives or hides its failure).
        """
        self._background.append(func)
        return func

    def params_schema(self) -> dict[str, Any]:
        """The JSON Schema of the handler's params, as the announcements publish it."""
        return self._require_handler().signature.schema()

    def _require_handler(self) -> Handler:
        if self._handler is None:
            raise TypeError(f"{self.name} has no handler: decorate a function with @dvm.job")
        return self._handler

    # -- events -------------------------------------------------------------------------------

    def announcement(self, now: int) -> Event:
        """The signed kind-11999 announcement."""
        price = self.price
        shown = price if isinstance(price, int) else None
        if isinstance(price, Pricing):
            shown = price.starting_at
        return announcement_event(
            provider=self.public_key,
            created_at=now,
            name=self.name,
            about=self.about,
            picture=self.picture,
            website=self.website,
            documentation=self.documentation,
            params_schema=self.params_schema(),
            examples=self.examples,
            categories=self.categories,
            legacy_kinds=self.legacy_kinds,
            relays=self.relays,
            price_msat=shown,
            payment_methods=tuple(self.payments.methods) if self.payments else (),
            encryption=self.encryption != "off",
        ).sign(self.keys)

    def nip89(self, now: int) -> Event | None:
        """The signed NIP-89 kind-31990 handler information, when legacy kinds are served."""
        if not self.legacy_kinds:
            return None
        return nip89_event(
            provider=self.public_key,
            created_at=now,
            d=self.d,
            kinds=self.legacy_kinds,
            name=self.name,
            about=self.about,
            picture=self.picture,
            params=self.params_schema(),
            categories=self.categories,
            encryption=self.encryption != "off",
        ).sign(self.keys)

    def heartbeat(self, now: int) -> Event:
        """The signed kind-11998 heartbeat, with the current load and queue."""
        stats = self.stats()
        return heartbeat_event(
            provider=self.public_key,
            created_at=now,
            d=self.d,
            load=stats.running / self.limits.concurrency,
            queue=stats.queued,
            interval=self.heartbeat_interval,
        ).sign(self.keys)

    # -- running ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DVM]:
        """Serve while the ``async with`` block runs; listening by the time it is entered."""
        handler = self._require_handler()
        if not self.relays:
            raise ValueError(f"{self.name} has no relays to listen on")
        store = self._store or SQLiteJobStore(self._store_path)
        if self._store_path is not None:
            Path(self._store_path).parent.mkdir(parents=True, exist_ok=True)
        body_error: BaseException | None = None
        try:
            async with (
                store,
                RelayPool(relays=self.relays, signer=self.keys) as pool,
                asyncio.TaskGroup() as tg,
            ):
                engine = Engine(
                    keys=self.keys,
                    handler=handler,
                    pool=pool,
                    store=store,
                    relays=self.relays,
                    categories=self.categories,
                    legacy_kinds=self.legacy_kinds,
                    limits=self.limits,
                    price=self.price,
                    payments=self.payments,
                    offers=self.offers,
                    offer_eta=self.offer_eta,
                    encryption=self.encryption,
                )
                self._engine = engine
                ready = asyncio.Event()
                tasks = [
                    tg.create_task(engine.run(ready), name=f"{self.name} engine"),
                    tg.create_task(self._beat(pool), name=f"{self.name} heartbeat"),
                    *(
                        tg.create_task(task(pool), name=f"{self.name} {task.__name__}")
                        for task in self._background
                    ),
                ]
                try:
                    await ready.wait()
                    try:
                        yield self
                    except BaseException as exc:
                        body_error = exc
                        raise
                finally:
                    for task in tasks:
                        task.cancel()
                    self._engine = None
        except BaseExceptionGroup as group:
            # The caller's own exception comes back as itself, not wrapped by our TaskGroup.
            if body_error is not None and list(group.exceptions) == [body_error]:
                raise body_error from None
            raise

    async def _beat(self, pool: RelayPool) -> None:
        """Announce, then beat; announcements are replaceable, so re-sending keeps them fresh."""
        while True:
            now = int(time.time())
            for event in (self.announcement(now), self.nip89(now), self.heartbeat(now)):
                if event is not None:
                    await _publish(pool, event)
            await asyncio.sleep(self.heartbeat_interval)

    async def serve(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until cancelled; ``on_ready`` is called once the DVM is listening."""
        async with self.running():
            if on_ready is not None:
                on_ready()
            else:
                relays = ", ".join(self.relays)
                log.info("%s serving as %s on %s", self.name, self.keys.npub, relays)
            await asyncio.Event().wait()

    def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM; the blocking entry point."""

        async def main() -> None:
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await self.serve(on_ready=on_ready)

        asyncio.run(main())

    def stats(self) -> ProviderStats:
        if self._engine is None:
            return ProviderStats(0, 0, 0, 0, 0, 0, 0, None, None)
        return self._engine.stats()


async def _publish(pool: RelayPool, event: Event) -> None:
    try:
        result = await pool.publish(event, wait="first")
    except DVMError as exc:
        log.warning("could not publish kind %d: %s", event.kind, exc)
        return
    if not result.ok:
        log.warning("no relay accepted our kind %d event", event.kind)
