"""``Customer``: the other side of the market — discover DVMs, ask them for work.

::

    async with Customer(relays=["ws://127.0.0.1:10547"]) as customer:
        for dvm in await customer.discover("text"):
            print(dvm.name, "alive" if dvm.alive else "dead")
        job = await customer.request("text", input="hello")
        async for update in job.updates():
            print(update.type, update.dvm)
        print((await job.result()).content)

The customer owns a :class:`~dvmkit.relay.pool.RelayPool` and one subscription to everything
``p``-tagged to its key (DVMs tag their answers with the customer, in both dialects), and runs
each job as a task of its own task group; leaving the ``async with`` ends them all.

A customer given a wallet pays priced DVMs by itself, up to each job's ``max_price_msat``
(the rules: :mod:`dvmkit.customer.budget`; the methods: :mod:`dvmkit.customer.paying`)::

    async with NWCClient(uri) as wallet, Customer(relays=relays, wallet=wallet) as customer:
        job = await customer.request("text", input="hi", to=dvm, max_price_msat=21_000)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from dvmkit.customer import discovery
from dvmkit.customer.answers import CHOICES, Choose
from dvmkit.customer.job import Job, Plan, unique_targets
from dvmkit.customer.paying import Payer
from dvmkit.customer.request import ParamValue, build_request, request_tags
from dvmkit.customer.values import DEFAULT_CUSTOMER_TIMEOUTS, CustomerTimeouts, DVMInfo
from dvmkit.errors import NoAnswer, ProtocolError, RelayError
from dvmkit.nostr.event import Event
from dvmkit.nostr.giftwrap import MAX_BACKDATE
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.protocol.envelope import WRAP_KINDS, Envelope, open_wrap
from dvmkit.relay.pool import RelayPool

if TYPE_CHECKING:
    from dvmkit.payments.cashu import CashuWallet
    from dvmkit.payments.nwc import NWCClient

# Answers dated a little before the subscription opened still belong to this session.
_SINCE_SLACK = 30
# How many opened wraps are remembered (see Customer._open).
_OPENED_WRAPS = 4096
#: How many encrypting DVMs a private request to a category is offered to, in turn.
_PRIVATE_CANDIDATES = 5


class Customer:
    """A DVM customer on some relays.

    Args:
        relays: relay URLs to publish requests to and read answers from.
        keys: the customer's identity; a fresh key for this session when omitted.
        timeouts: connect, discovery, offer window, re-publish and silence deadlines.
        clock: unix time (for liveness, invoice expiry, the dates of cancellations).
        wallet: an NWC wallet to pay invoices and zaps with. The caller runs it (``async
            with NWCClient(uri) as wallet``) for as long as the customer: the customer never
            opens or closes it, and never shows its URI.
        cashu: a Cashu wallet to pay DVMs that take tokens of its mint, and to receive
            Cashu refunds into.

    A job pays only when ``request`` gave it a ``max_price_msat`` and one of these wallets
    pays something the DVM takes; otherwise it ends with
    :class:`~dvmkit.errors.PaymentRequired` as before.

    Attributes:
        keys: the customer's keys.
        timeouts: its deadlines.
        clock: its unix time.
        payer: what its jobs pay with (the wallets above); never shows a secret.
    """

    def __init__(
        self,
        *,
        relays: Sequence[str],
        keys: Keys | None = None,
        timeouts: CustomerTimeouts = DEFAULT_CUSTOMER_TIMEOUTS,
        clock: Callable[[], float] = time.time,
        wallet: NWCClient | None = None,
        cashu: CashuWallet | None = None,
    ) -> None:
        if not relays:
            raise ValueError("a customer needs at least one relay: start one with `dvm relay`")
        self.keys = keys or Keys.generate()
        self.timeouts = timeouts
        self.clock = clock
        # NIP-11 documents are not needed to send small requests; skipping them saves a round
        # trip per relay at start (the CLI's start-to-result time).
        self._pool = RelayPool(relays=relays, signer=self.keys, fetch_info=False)
        self._stack = contextlib.AsyncExitStack()
        self._tg: asyncio.TaskGroup | None = None
        self._routes: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._latency: dict[str, float] = {}
        self._known: dict[str, DVMInfo] = {}
        self._opened: collections.OrderedDict[str, Event | None] = collections.OrderedDict()
        self._wrap_feed: asyncio.Future[None] | None = None
        self.payer = Payer(keys=self.keys, relays=relays, wallet=wallet, cashu=cashu, clock=clock)

    def __repr__(self) -> str:
        return f"Customer(pubkey={self.keys.public_key!r}, relays={list(self._pool.relays)!r})"

    @property
    def pool(self) -> RelayPool:
        return self._pool

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Customer:
        try:
            await self._stack.enter_async_context(self._pool)
            self._tg = await self._stack.enter_async_context(asyncio.TaskGroup())
            since = int(self.clock()) - _SINCE_SLACK
            sub = await self._stack.enter_async_context(
                self._pool.subscribe({"#p": [self.keys.public_key], "since": since})
            )
            self._spawn(self._read(sub.__aiter__()), "customer answers")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeouts.connect):
                    await sub.wait_stored()
            if not sub.eose:
                raise RelayError(
                    f"no relay answered ({', '.join(self._pool.relays)}): start one with "
                    "`dvm relay`, or pass relay URLs (or set DVMKIT_RELAYS)"
                )
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        # Jobs and readers end with the customer; the task group then finds nothing to wait on.
        self._tg = None
        for task in list(self._tasks):
            task.cancel()
        await self._stack.aclose()

    async def _read(self, events: Any) -> None:
        async for event in events:
            self._route_event(event)

    def _route_event(self, event: Event) -> None:
        if event.kind in WRAP_KINDS:
            inner = self._open(event)
            if inner is None:
                return
            event = inner
        # Answers name the request in their first `e` tag (DESIGN.md §4.2).
        target = event.tag_value("e")
        job = self._routes.get(target) if target is not None else None
        if job is not None:
            job.deliver(event)

    def _open(self, wrap: Event) -> Event | None:
        """The answer inside a wrap to us, checked (the inner signature, or the seal against
        the rumor's author), or None. Who wrote it is checked by the job it names.

        A wrap arrives through both subscriptions and from every relay, and a DVM re-sends
        the same wraps to a request it already answered: each is opened once, and what it
        held is routed again every time (the job drops what it has seen).
        """
        if wrap.id in self._opened:
            self._opened.move_to_end(wrap.id)
            return self._opened[wrap.id]
        try:
            # The pool verified the wrap's signature on receipt: not twice.
            inner: Event | None = open_wrap(wrap, self.keys, verified=True).event
        except ProtocolError:
            inner = None  # not for us, forged or garbled: nobody's answer
        if inner is not None and inner.kind in WRAP_KINDS:
            inner = None
        self._opened[wrap.id] = inner
        if len(self._opened) > _OPENED_WRAPS:
            self._opened.popitem(last=False)
        return inner

    async def _open_wrap_feed(self) -> None:
        """Subscribe to wraps addressed to us, once, before the first private request.

        The main subscription starts ``since`` now, and a stored (1059) wrap may be dated up
        to two days back (NIP-59): this one reaches that far, and keeps its window after a
        reconnect. A key with many wraps (NIP-17 messages) pays for reading them once.
        """
        if self._wrap_feed is None:
            self._wrap_feed = asyncio.get_running_loop().create_future()
            self._spawn(self._feed_wraps(self._wrap_feed), "customer wraps")
        await asyncio.shield(self._wrap_feed)

    async def _feed_wraps(self, ready: asyncio.Future[None]) -> None:
        since = int(self.clock()) - MAX_BACKDATE - _SINCE_SLACK
        wraps = {"kinds": sorted(WRAP_KINDS), "#p": [self.keys.public_key], "since": since}
        try:
            async with self._pool.subscribe(wraps, rewrite_since=False) as sub:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeouts.connect):
                        await sub.wait_stored()
                ready.set_result(None)
                async for event in sub:
                    self._route_event(event)
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)  # the request waiting for the feed fails with it
            raise
        finally:
            if not ready.done():
                ready.cancel()  # cancelled before it was ready: so is the waiting request

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise RelayError("the customer is not running: use 'async with Customer(...)'")
        task = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the Host protocol of jobs ------------------------------------------------------------

    async def send(self, event: Event) -> None:
        result = await self._pool.publish(event, wait="first")
        if not result.ok:
            reasons = "; ".join(
                f"{url}: {o.status} {o.message}" for url, o in result.outcomes.items()
            )
            raise NoAnswer(
                f"no relay accepted request {event.id} ({reasons}): check the relays are "
                "running and accept the kind"
            )

    def route(self, request_id: str, job: Job | None) -> None:
        if job is None:
            self._routes.pop(request_id, None)
        else:
            self._routes[request_id] = job

    def latency(self, dvm: str) -> float | None:
        return self._latency.get(dvm)

    def observed(self, dvm: str, seconds: float) -> None:
        # An exponential average: one slow job does not exile a DVM.
        known = self._latency.get(dvm)
        self._latency[dvm] = seconds if known is None else 0.7 * known + 0.3 * seconds

    def is_dead(self, dvm: str) -> bool:
        info = self._known.get(dvm)
        return info is not None and not info.alive

    # -- discovery ----------------------------------------------------------------------------

    async def discover(
        self,
        target: str | int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline for EOSE, not a cancellation
    ) -> list[DVMInfo]:
        """DVMs serving a category or request kind (all DVMs for None), live ones first.

        Args:
            target: a category (``"text"``), a request kind (5000-5999 or 25000), or None.
            timeout: seconds to wait for stored announcements and heartbeats.

        Returns:
            One :class:`DVMInfo` per DVM, live ones first; dead ones are marked
            (``alive=False``) and sorted after, never mixed in.

        Raises:
            ValueError: a target that is neither a category nor a request kind.
        """
        parsed = discovery.parse_target(target)
        wait = self.timeouts.discover if timeout is None else timeout
        events = await self._pool.fetch(*discovery.announcement_filters(parsed), timeout=wait)
        found = discovery.announcements_by_dvm(events, parsed)
        pubkeys = sorted({pubkey for pubkey, _ in found})[: discovery.MAX_DVMS]
        beats = {}
        if pubkeys:
            beat_events = await self._pool.fetch(discovery.heartbeat_filter(pubkeys), timeout=wait)
            asked = set(pubkeys)
            beats = discovery.latest_beats(e for e in beat_events if e.pubkey in asked)
        infos = discovery.describe(found, beats, self.clock())
        # Several DVMs may share a key: the key counts as alive when any of them is.
        alive = {info.pubkey for info in infos if info.alive}
        for info in infos:
            if info.alive or info.pubkey not in alive:
                self._known[info.pubkey] = info
        return infos

    # -- jobs ---------------------------------------------------------------------------------

    async def request(
        self,
        target: str | int,
        *,
        input: str | None = None,
        input_type: str = "text",
        params: Mapping[str, ParamValue] | None = None,
        to: str | Sequence[str] | None = None,
        legacy: bool = False,
        max_price_msat: int | None = None,
        bid_msat: int | None = None,
        refund_to: str | None = None,
        choose: Choose = "cheapest",
        offer_window: float | None = None,
        silence_timeout: float | None = None,
        relays_hint: Sequence[str] = (),
        encrypt: bool | Literal["nip04", "nip44"] = False,
        envelope: Envelope | None = None,
    ) -> Job:
        """Send a job request and return its handle; the job runs in the background.

        Args:
            target: a category (modern kind 25000) or a legacy kind 5000-5999.
            input: the input data (an ``i`` tag); None for none.
            input_type: ``text``, ``url``, ``event`` or ``job``.
            params: ``param`` tags.
            to: a DVM's hex pubkey (targeted), or several to fail over through in order;
                None for an open request (every DVM of the category may answer).
            legacy: the NIP-90 dialect; ``target`` must then be a kind.
            max_price_msat: the most this job may cost, in total: offers and payment
                requests above it are refused, and with a ``wallet`` or ``cashu`` the customer
                pays those within it (once per request, checked: see
                :mod:`dvmkit.customer.budget`). None: nothing is paid.
            bid_msat: a ``bid`` tag, what the customer offers. A DVM that charges more answers
                a targeted request with an ``offer``; the job asks it once more, bidding its
                price, when that is within ``max_price_msat``.
            refund_to: where a Lightning refund should go if a DVM fails a job it was paid
                for by bolt11 or zap: your lightning address, or an invoice (a ``refund``
                tag). By default the ``wallet``'s own lightning address (its URI's ``lud16``)
                when the job may be paid. Without one such a job ends owed, not refunded;
                Cashu refunds need none. It is inside the wrap of a private modern job, and
                in the clear on a legacy one (only ``i`` and ``param`` tags are encrypted
                there), so that one gets no default.
            choose: how an open request's offers are ranked: ``cheapest``, ``fastest``
                (observed latency, else the offer's ETA) or ``first``.
            offer_window: seconds to collect offers; the customer's default when None.
            silence_timeout: seconds a DVM may stay silent before it is given up on.
            relays_hint: a ``relays`` tag: where the DVM should answer.
            encrypt: a private job (DESIGN.md §4.2): nothing about it is readable on the
                relays but who it was sent to. A modern request is gift-wrapped to its DVM
                (``envelope``: the simplified wrap, kind 21059, by default), and so is its
                cancellation; a legacy one has its ``i`` and ``param`` tags encrypted to
                the DVM (NIP-90 encrypted params; ``True`` means ``nip44``, or name
                ``nip04``). Never sent in the clear: without ``to``, the live DVMs that
                announce encryption are asked in turn, and with none, :class:`NoAnswer`.
            envelope: how to wrap a private request (implies ``encrypt``):
                ``Envelope("nip59", 1059)`` for full NIP-59 in a stored wrap.

        Raises:
            ValueError: a bad target, key, param, choice, price or refund address;
                ``nip04``/``nip44`` for a modern request.
            NoAnswer: ``encrypt`` with no DVM to ask: none named, and no live one of the
                category announces encryption; or a DVM named that announces it has none.
        """
        if legacy and not isinstance(target, int):
            raise ValueError(
                f"a legacy NIP-90 request needs a kind 5000-5999, not the category {target!r}"
            )
        if choose not in CHOICES:
            raise ValueError(f"choose must be one of {', '.join(CHOICES)}, got {choose!r}")
        if max_price_msat is not None and max_price_msat < 0:
            raise ValueError("max_price_msat is a non-negative number of millisats")
        if bid_msat is not None and bid_msat < 0:
            raise ValueError("bid_msat is a non-negative number of millisats")
        targets = unique_targets(to)
        for pubkey in targets:
            if not is_hex64(pubkey):
                raise ValueError(f"{pubkey!r} is not a 64-character hex public key")
        private = bool(encrypt) or envelope is not None
        modern = not isinstance(target, int)
        if modern and encrypt in ("nip04", "nip44"):
            raise ValueError(
                f"{encrypt} names NIP-90 encrypted params; a modern job is made private by "
                "wrapping it (encrypt=True)"
            )
        if private:
            targets = await self._private_targets(target, targets, choose)
        scheme: Literal["nip04", "nip44"] | None = None
        if private and envelope is None and not modern:
            scheme = "nip04" if encrypt == "nip04" else "nip44"
        elif private:
            envelope = envelope or Envelope()
        wallet = self.payer.wallet
        if refund_to is None and max_price_msat and scheme is None and wallet is not None:
            refund_to = wallet.uri.lud16
        event = build_request(
            self.keys,
            target,
            input=input,
            input_type=input_type,
            params=params,
            to=targets[0] if targets else None,
            bid_msat=bid_msat,
            relays=relays_hint,
            refund_to=refund_to,
            encryption=scheme,
        )
        if envelope is not None:
            await self._open_wrap_feed()
        private_tags = None
        if scheme is not None:
            # Kept in the clear to encrypt them again for each DVM a failover moves to.
            clear = request_tags(
                target,
                input=input,
                input_type=input_type,
                params=params,
                bid_msat=bid_msat,
                relays=relays_hint,
                refund_to=refund_to,
            )
            private_tags = (tuple(clear), scheme)
        t = self.timeouts
        plan = Plan(
            targets=targets,
            choose=choose,
            max_price_msat=max_price_msat,
            offer_window=t.offer_window if offer_window is None else offer_window,
            silence=t.silence if silence_timeout is None else silence_timeout,
            ack=t.ack,
            republish=t.republish,
            envelope=envelope,
            private_tags=private_tags,
        )
        return self._start(Job(self, event, plan))

    async def _private_targets(
        self, target: str | int, named: tuple[str, ...], choose: Choose
    ) -> tuple[str, ...]:
        """The DVMs a private job may go to: the ones named, else live ones that announce
        encryption, ranked by ``choose`` on what they announce and what was observed (a wrap
        is for one recipient: a private job is never open, so it gathers no offers)."""
        if named:
            for pubkey in named:
                info = self._known.get(pubkey)
                if info is not None and not info.encryption:
                    raise NoAnswer(
                        f"DVM {pubkey} does not announce encryption: it could not read a "
                        "private job, and this one will not be sent in the clear"
                    )
            return named
        live = [i for i in await self.discover(target) if i.alive and i.encryption]
        if choose == "cheapest":
            live.sort(key=lambda i: i.price_msat or 0)
        elif choose == "fastest":
            live.sort(key=lambda i: self._latency.get(i.pubkey, math.inf))
        found = [i.pubkey for i in live]
        if not found:
            raise NoAnswer(
                f"no live DVM for {target!r} announces encryption: a private job is not sent "
                "in the clear (drop --encrypt, or name a DVM with --to)"
            )
        return tuple(dict.fromkeys(found))[:_PRIVATE_CANDIDATES]

    def watch(
        self,
        request: Event | str,
        *,
        dvm: str | None = None,
        silence_timeout: float | None = None,
    ) -> Job:
        """Follow the answers to a request already sent (by anyone), without sending it.

        Args:
            request: the request event, or its hex id.
            dvm: only believe answers from this DVM.
            silence_timeout: seconds without an answer before the job ends ``NoAnswer``.
        """
        if isinstance(request, str):
            request = _placeholder(request)
        plan = Plan(
            targets=(dvm,) if dvm else (),
            choose="first",
            max_price_msat=None,
            offer_window=0.0,
            silence=self.timeouts.silence if silence_timeout is None else silence_timeout,
            ack=0.0,
            republish=0,
            watch=True,
        )
        job = Job(self, request, plan)
        # Answers are routed from now on, not from the job task's first step: a caller may
        # publish something (a cancel) right after this returns.
        job.follow(request.id)
        # Someone else's request is not p-tagged to us: follow it by its id.
        feed = self._spawn(self._follow(request.id), f"follow {request.id[:8]}")
        job.task = self._spawn(_then_cancel(job, feed), f"job {request.id[:8]}")
        return job

    async def _follow(self, request_id: str) -> None:
        async with self._pool.subscribe({"#e": [request_id]}) as sub:
            async for event in sub:
                self._route_event(event)

    def _start(self, job: Job) -> Job:
        job.task = self._spawn(job.run(), f"job {job.id[:8]}")
        return job


async def _then_cancel(job: Job, feed: asyncio.Task[None]) -> None:
    try:
        await job.run()
    finally:
        feed.cancel()


def _placeholder(request_id: str) -> Event:
    """A stand-in for a request known only by id (its answers are matched by id alone)."""
    if not is_hex64(request_id):
        raise ValueError("a request id is 64 hex characters (or pass an nevent)")
    return Event(request_id, "0" * 64, 0, 25000, (), "", "0" * 128)
