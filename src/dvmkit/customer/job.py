"""The job handle: one request's life, from sending to a result, an error or silence.

The :class:`Job` runs as a task of its :class:`~dvmkit.customer.client.Customer`. Answers reach
it through the customer's subscription, routed by request id; only answers whose first ``e``
tag is a request of this job and, for targeted requests, whose author is the DVM targeted are
read, each event once (relays and re-publishes repeat them). Open requests (DESIGN.md §4.2)
take a free result at once, or collect offers for a window, choose, and send a targeted
request to the winner; a DVM silent past the deadline is failed over to the next candidate.

A priced DVM's ``payment-required`` is paid by the job's :class:`~dvmkit.customer.budget.
Budget` (the rules) through the customer's :class:`~dvmkit.customer.paying.Payer` (the
methods); a targeted DVM's ``offer`` (the bid was below its price) is taken up by sending the
job again at that price.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dvmkit.customer.answers import Choose, Offer, offer_from, rank_offers, read_answer
from dvmkit.customer.budget import Budget, failure
from dvmkit.customer.paying import Payer
from dvmkit.customer.request import retarget
from dvmkit.customer.values import JobResult, Update, UpdateType
from dvmkit.errors import (
    DVMError,
    JobCancelled,
    JobError,
    NoAnswer,
    ProtocolError,
    RelayError,
)
from dvmkit.nostr import nip04, nip44
from dvmkit.nostr.event import Event, Tag
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import Envelope, wrap_request
from dvmkit.protocol.job import MODERN_KIND, Encryption, encryption_scheme
from dvmkit.protocol.modern import cancel_event


class Host(Protocol):
    """What a job needs from its customer."""

    keys: Keys
    payer: Payer
    clock: Callable[[], float]

    async def send(self, event: Event) -> None: ...
    def route(self, request_id: str, job: Job | None) -> None: ...
    def latency(self, dvm: str) -> float | None: ...
    def observed(self, dvm: str, seconds: float) -> None: ...
    def is_dead(self, dvm: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """How a job is run (the keyword arguments of ``Customer.request``)."""

    targets: tuple[str, ...]
    choose: Choose
    max_price_msat: int | None
    offer_window: float
    silence: float
    ack: float
    republish: int
    watch: bool = False
    #: a private modern job: every request (and cancel) goes to its DVM in this wrap.
    envelope: Envelope | None = None
    #: a legacy job with encrypted params: its private tags in the clear, and the scheme
    #: (re-encrypted to each DVM failed over to; answers decrypted with it).
    private_tags: tuple[tuple[Tag, ...], Encryption] | None = field(default=None, repr=False)


class _Silent:
    """An attempt that heard nothing for the silence deadline."""


_SILENT = _Silent()


@dataclass(frozen=True, slots=True)
class _Rebid:
    """A targeted request answered ``offer`` (its bid was below the price): ask again."""

    amount_msat: int


class Job:
    """A job in progress. Iterate :meth:`updates`, await :meth:`result`, or :meth:`cancel`."""

    def __init__(self, host: Host, request: Event, plan: Plan) -> None:
        self._host = host
        self._plan = plan
        self.request = request
        self._current = request
        self._current_dvm: str | None = plan.targets[0] if plan.targets else None
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._seen: set[str] = set()
        self._routed: list[str] = []
        self._updates: list[Update] = []
        self._changed = asyncio.Condition()
        self._done = asyncio.Event()
        self._result: JobResult | None = None
        self._error: DVMError | None = None
        self.task: asyncio.Task[None] | None = None
        self._budget = Budget(
            host.payer, plan.max_price_msat, watch=plan.watch, private=plan.envelope is not None
        )

    @property
    def id(self) -> str:
        """The id of the first request sent (the job's identity for the customer)."""
        return self.request.id

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- the public face ----------------------------------------------------------------------

    async def updates(self) -> AsyncIterator[Update]:
        """Every update from the first, live, until the job ends."""
        index = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._has_more, index))
                batch = self._updates[index:]
            for update in batch:
                yield update
            index += len(batch)
            if self.done and index >= len(self._updates):
                return

    async def result(self, *, timeout: float | None = None) -> JobResult:  # noqa: ASYNC109
        """Wait for the result.

        Args:
            timeout: seconds to wait; None waits until the job ends on its own deadlines.

        Raises:
            JobFailed: the DVM answered ``error`` (its code and message);
                :class:`~dvmkit.customer.budget.JobRefunded` when it failed a paid job and
                sent a refund (``refund_msat``).
            PaymentRequired: a DVM asked for more than ``max_price_msat``, or for a payment
                the customer cannot or will not make (no cap, no wallet it takes, an invoice
                that is not for the amount asked, expired, or paid before).
            PaymentFailed: the customer's wallet or mint failed to pay.
            JobCancelled: the job was cancelled.
            NoAnswer: no DVM answered in time (or ``timeout`` passed first).
        """
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            raise NoAnswer(
                f"no result for job {self.id} within {timeout:g} s: wait longer, or check "
                "that a live DVM serves it (dvm discover)"
            ) from None
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def cancel(self) -> None:
        """Tell the DVM to stop (modern cancel status, or NIP-09 deletion for legacy) and end
        the job as cancelled. Does nothing once the job has ended."""
        if self.done:
            return
        await self._send_cancel()
        await self._finish(error=JobCancelled(f"job {self.id} was cancelled"))
        await self._emit(Update(UpdateType.CANCELLED, self._current.id, dvm=self._current_dvm))
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def _has_more(self, index: int) -> bool:
        return index < len(self._updates) or self.done

    # -- inside -------------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Called by the customer's router with an event naming one of our request ids."""
        if event.id not in self._seen:
            self._seen.add(event.id)
            self._inbox.put_nowait(event)

    async def _emit(self, update: Update) -> None:
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    async def _finish(
        self, *, result: JobResult | None = None, error: DVMError | None = None
    ) -> None:
        if self.done:
            return
        self._result, self._error = result, error
        self._done.set()
        async with self._changed:
            self._changed.notify_all()

    def follow(self, request_id: str) -> None:
        """Receive the answers to ``request_id`` from now on (until the job ends)."""
        if request_id not in self._routed:
            self._host.route(request_id, self)
            self._routed.append(request_id)

    async def run(self) -> None:
        """The job's task: drive it to an end, then stop listening."""
        try:
            result = await self._drive()
        except DVMError as exc:
            if isinstance(exc, NoAnswer):
                await self._emit(Update(UpdateType.TIMEOUT, self._current.id, content=str(exc)))
            await self._finish(error=exc)
        except asyncio.CancelledError:
            await self._finish(error=NoAnswer(f"job {self.id} was abandoned"))
            raise
        else:
            await self._finish(result=result)
        finally:
            for request_id in self._routed:
                self._host.route(request_id, None)

    async def _drive(self) -> JobResult:
        plan = self._plan
        if plan.watch:
            outcome = await self._listen(self.request, author=self._current_dvm, open_=False)
        elif plan.targets:
            outcome = await self._targeted(list(plan.targets), self.request)
        else:
            outcome = await self._listen(self.request, author=None, open_=True)
            if isinstance(outcome, list):
                outcome = await self._choose(outcome)
        if isinstance(outcome, JobResult):
            return outcome
        raise NoAnswer(
            f"no DVM answered request {self._current.id} within {plan.silence:g} s: check "
            "that a live DVM serves it (dvm discover), or raise the silence timeout"
        )

    async def _choose(self, offers: list[Offer]) -> JobResult | _Silent:
        ranked = rank_offers(
            offers, self._plan.choose, latency=self._host.latency, dead=self._host.is_dead
        )
        winner = ranked[0]
        await self._emit(
            Update(
                UpdateType.CHOSEN,
                self.request.id,
                dvm=winner.dvm,
                amount_msat=winner.amount_msat,
                content=self._plan.choose,
            )
        )
        dvms = [o.dvm for o in ranked]
        if winner.payment_required:
            # It asked to be paid for the open request itself: that ask is read again, now
            # as the chosen DVM's, and paid; no new request.
            self._inbox.put_nowait(winner.event)
            return await self._targeted(dvms, self.request, resume=True)
        return await self._targeted(dvms, self.request, first_is_new=True)

    async def _targeted(
        self, dvms: list[str], request: Event, *, first_is_new: bool = False, resume: bool = False
    ) -> JobResult | _Silent:
        """Ask ``dvms`` in turn, failing over on silence.

        ``first_is_new``: the first DVM gets a request of its own (targeted to it);
        ``resume``: the first DVM already has ``request``, which is not sent again.
        """
        for number, dvm in enumerate(dvms):
            if number > 0:
                await self._send_cancel()
                await self._emit(Update(UpdateType.FAILOVER, self._current.id, dvm=dvm))
            if number > 0 or first_is_new:
                request = retarget(self._host.keys, request, dvm, private=self._plan.private_tags)
            self._current, self._current_dvm = request, dvm
            send = not (resume and number == 0)
            outcome = await self._listen(request, author=dvm, open_=False, send=send)
            while isinstance(outcome, _Rebid):
                # The same job again at the DVM's price: a new request (its id is new).
                request = retarget(
                    self._host.keys,
                    request,
                    dvm,
                    bid_msat=outcome.amount_msat,
                    private=self._plan.private_tags,
                )
                self._current = request
                outcome = await self._listen(request, author=dvm, open_=False)
            if isinstance(outcome, JobResult):
                return outcome
            assert not isinstance(outcome, list)
        return _SILENT

    async def _listen(
        self, request: Event, *, author: str | None, open_: bool, send: bool = True
    ) -> JobResult | list[Offer] | _Silent | _Rebid:
        """Send ``request`` (unless watching, or ``send`` is False) and read its answers
        until one ends it.

        Returns the result, the offers collected (open requests whose window closed with
        offers and nobody working for free), silence, or a targeted DVM's offer to take up.
        """
        plan = self._plan
        loop = asyncio.get_running_loop()
        kind = None if plan.watch else request.kind
        self.follow(request.id)
        if not plan.watch and send:
            await self._host.send(self._wire(request, author))
            await self._emit(Update(UpdateType.SENT, request.id, dvm=author))
        started = last = sent_at = loop.time()
        heard, republished = False, 0
        offers: list[Offer] = []
        working: set[str] = set()
        pending_error: DVMError | None = None
        give_up = math.inf
        while True:
            now = loop.time()
            deadlines = [last + plan.silence, give_up]
            may_republish = not heard and republished < plan.republish and not plan.watch
            if may_republish and request.kind == MODERN_KIND:
                deadlines.append(sent_at + plan.ack)
            if offers and not working:
                window = 0.0 if plan.choose == "first" else plan.offer_window
                deadlines.append(started + window)
            try:
                async with asyncio.timeout(max(0.0, min(deadlines) - now)):
                    event = await self._inbox.get()
            except TimeoutError:
                now = loop.time()
                if offers and not working:
                    return offers
                if may_republish and request.kind == MODERN_KIND and now < last + plan.silence:
                    # Same event, same id: a DVM that already has it answers from its store.
                    republished += 1
                    sent_at = now
                    # A private request goes in a fresh wrap; the DVM knows it by its inner id.
                    await self._host.send(self._wire(request, author))
                    await self._emit(Update(UpdateType.REPUBLISHED, request.id, dvm=author))
                    continue
                if pending_error is not None:
                    raise pending_error from None
                return _SILENT
            if event.pubkey == self._host.keys.public_key:
                continue
            if author is not None and event.pubkey != author:
                continue  # a third key answering for the DVM we asked: never believed
            try:
                content = self._readable(event)
            except ProtocolError:
                continue  # encrypted to someone else, or garbled: not an answer we can read
            update = read_answer(event, request.id, kind, content=content)
            if update is None:
                continue
            heard, last = True, loop.time()
            dvm = event.pubkey
            refunded = None
            if update.type is UpdateType.ERROR:
                refunded = await self._budget.refund(event, request.id)
                if refunded is not None:
                    update = dataclasses.replace(
                        update, refund_msat=refunded.amount_msat, method=refunded.method
                    )
            await self._emit(update)
            if update.type is UpdateType.SUCCESS:
                self._host.observed(dvm, last - started)
                self._current, self._current_dvm = request, dvm
                return JobResult(update.content, dvm, request.id, event, update.amount_msat)
            if update.type is UpdateType.ERROR:
                failed = failure(update, dvm, refunded)
                if not open_:
                    raise failed
                # Another DVM of the category may still answer; not for long.
                pending_error = pending_error or failed
                give_up = min(give_up, last + plan.offer_window)
            elif update.type is UpdateType.CANCELLED:
                if not open_:
                    raise JobCancelled(f"DVM {dvm} cancelled job {request.id}", dvm=dvm)
            elif update.type in (UpdateType.PROCESSING, UpdateType.PARTIAL):
                working.add(dvm)
            elif update.type is UpdateType.PAYMENT_REQUIRED and update.amount_msat:
                if not open_:
                    # Only the DVM asked can get here (author check above), and only about
                    # the current request (read_answer): pay it once, within the cap.
                    if not self._budget.is_paid(request.id):
                        to_dvm = functools.partial(self._send_to, dvm)
                        await self._emit(await self._budget.pay(update, request.id, send=to_dvm))
                        last = loop.time()  # the DVM starts once its wallet confirms
                    continue
                # An open request is paid only once a DVM is chosen: this ask is an offer.
                offer = offer_from(update, len(offers))
                if offer is not None and self._budget.payable(update, request.id):
                    offers.append(offer)
                else:
                    pending_error = pending_error or self._budget.refuse(update)
                    give_up = min(give_up, last + plan.offer_window)
            elif update.type is UpdateType.OFFER and open_:
                offer = offer_from(update, len(offers))
                if offer is not None and self._budget.within(offer.amount_msat):
                    offers.append(offer)
                elif offer is not None:
                    pending_error = pending_error or self._budget.refuse(update)
                    give_up = min(give_up, last + plan.offer_window)
            elif update.type is UpdateType.OFFER and update.amount_msat is not None:
                # A targeted request whose bid was below the DVM's price: ask again at the
                # price, once per DVM, when the cap allows and it takes something we have.
                if not self._budget.rebid(update, request.id):
                    raise self._budget.refuse(update)
                return _Rebid(update.amount_msat)

    async def _send_to(self, dvm: str, event: Event) -> None:
        """Send ``event`` (a payment message) to ``dvm`` as this job's requests go."""
        await self._host.send(self._wire(event, dvm))

    async def _send_cancel(self) -> None:
        """Tell the current DVM to stop, if the request is ours (only its author can cancel);
        best effort: a cancel no relay takes does not fail the job that is ending or moving on.
        """
        request, dvm, keys = self._current, self._current_dvm, self._host.keys
        if request.pubkey != keys.public_key:
            return  # a watched request of someone else's
        providers = None if dvm is None else [dvm]
        cancel = cancel_event(request, created_at=int(self._host.clock()), providers=providers)
        with contextlib.suppress(NoAnswer, RelayError):
            await self._host.send(self._wire(cancel.sign(keys), dvm))

    def _wire(self, request: Event, dvm: str | None) -> Event:
        """What goes on the wire for ``request`` (or a cancel or payment message about it):
        itself, or wrapped to its DVM (in the clear it would name the private request's id).
        """
        envelope = self._plan.envelope
        if envelope is None:
            return request
        assert dvm is not None, "a private job is always targeted"
        return wrap_request(request, self._host.keys, dvm, envelope)

    def _readable(self, event: Event) -> str:
        """``event``'s content, decrypted when it answers a request with encrypted params.

        Raises:
            ProtocolError: it does not decrypt.
        """
        if self._plan.private_tags is None or not event.content:
            return event.content
        try:
            # The tag is read as a provider reads a request's (bare means NIP-04): an answer
            # repeats the request's tag (protocol.legacy).
            scheme = encryption_scheme(event)
        except JobError as exc:  # an unknown scheme: unreadable, like a garbled answer
            raise ProtocolError(exc.message) from None
        if scheme is None:
            return event.content
        if scheme == "nip44":
            return nip44.decrypt_from(self._host.keys, event.pubkey, event.content)
        return nip04.decrypt(self._host.keys, event.pubkey, event.content)


def unique_targets(to: str | Sequence[str] | None) -> tuple[str, ...]:
    """``to`` as a tuple of distinct DVM pubkeys, in order."""
    if to is None:
        return ()
    if isinstance(to, str):
        return (to,)
    return tuple(dict.fromkeys(to))
