"""A customer of private jobs for the provider tests, built on dvmkit's pool and gift wraps.

It wraps its signed requests to the DVM (:func:`~dvmkit.protocol.envelope.wrap_request`) and
opens every wrap addressed to it with :func:`~dvmkit.nostr.giftwrap.unwrap`, which checks
each layer. Its one subscription has two filters: the customer's own, gift wraps ``p``-tagged
to it with a ``since`` two days back (NIP-59 wraps are back-dated that far), and an
observer's, everything the relay passes on, so that a test can also check what was said in
the clear. Nothing is dropped: :attr:`PrivateCustomer.seen` lists every delivery in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dvmkit.errors import ProtocolError
from dvmkit.nostr import giftwrap
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import WRAP_KINDS, Envelope, rumor_event, wrap_request
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.provider import DVM, Job
from dvmkit.relay.pool import RelayPool, Subscription

from .conftest import WAIT, is_final, make_dvm, status_of

#: Every form and wrap kind a private job may come in (and is answered in).
ENVELOPES = (
    Envelope("simple", 21059),
    Envelope("simple", 1059),
    Envelope("nip59", 1059),
    Envelope("nip59", 21059),
)
#: The default: ContextVM's simplified wrap, ephemeral.
SIMPLE = Envelope()


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as the customer read it: opened from a wrap, or in the clear.

    Attributes:
        event: the answer. For the ``nip59`` form, the rumor viewed as an :class:`Event`
            (its author proven by ``seal``); for ``simple``, the signed inner event.
        wrap: the wrap it came in; None for an answer in the clear.
        form: ``simple`` or ``nip59``; None in the clear.
        seal: the verified seal (``nip59`` only).
    """

    event: Event
    wrap: Event | None = None
    form: str | None = None
    seal: Event | None = None

    @property
    def status(self) -> str | None:
        return status_of(self.event)


class PrivateCustomer:
    """Sends requests (wrapped or not) to one DVM and collects the answers by request id."""

    def __init__(self, pool: RelayPool, keys: Keys, dvm: str) -> None:
        self.pool = pool
        self.keys = keys
        self.pubkey = keys.public_key
        self.dvm = dvm
        #: every event the relay delivered, in order (a re-published one once per delivery).
        self.seen: list[Event] = []
        #: how many times each event id was delivered.
        self.deliveries: collections.Counter[str] = collections.Counter()
        #: every wrap addressed to us that opened, once per delivery.
        self.opened: list[Answer] = []
        #: wraps addressed to us that did not open.
        self.unopened: list[Event] = []
        self._answers: dict[str, list[Answer]] = {}
        self._changed = asyncio.Condition()

    async def _read(self, sub: Subscription) -> None:
        async for event in sub:
            self.seen.append(event)
            self.deliveries[event.id] += 1
            if event.kind not in WRAP_KINDS:
                self._file(Answer(event))
            elif self.pubkey in event.tag_values("p"):
                self._open(event)
            async with self._changed:
                self._changed.notify_all()

    def _open(self, wrap: Event) -> None:
        try:
            opened = giftwrap.unwrap(wrap, self.keys)
        except ProtocolError:
            self.unopened.append(wrap)
            return
        inner = opened.inner if isinstance(opened.inner, Event) else rumor_event(opened.inner)
        answer = Answer(inner, wrap, opened.form, opened.seal)
        self.opened.append(answer)
        self._file(answer)

    def _file(self, answer: Answer) -> None:
        for target in dict.fromkeys(answer.event.tag_values("e")):
            known = self._answers.setdefault(target, [])
            if all(a.event.id != answer.event.id for a in known):
                known.append(answer)

    # -- sending -------------------------------------------------------------------------------

    def sign(
        self, kind: int = MODERN_KIND, *, content: str = "", tags: Sequence[Sequence[str]] = ()
    ) -> Event:
        return sign_event(self.keys, kind=kind, content=content, tags=tags)

    async def send(self, request: Event, envelope: Envelope | None = SIMPLE) -> Event:
        """Publish ``request``, wrapped to the DVM as ``envelope`` says (in the clear when
        None); returns what was published."""
        event = (
            request if envelope is None else wrap_request(request, self.keys, self.dvm, envelope)
        )
        published = await self.pool.publish(event, timeout=WAIT)
        assert published.ok, published
        return event

    async def ask(
        self,
        content: str = "",
        *,
        kind: int = MODERN_KIND,
        tags: Sequence[Sequence[str]] = (),
        envelope: Envelope | None = SIMPLE,
    ) -> Event:
        """Send a request targeted to the DVM; returns the (inner) request."""
        request = self.sign(kind, content=content, tags=[["p", self.dvm], *tags])
        await self.send(request, envelope)
        return request

    # -- receiving -----------------------------------------------------------------------------

    def answers(self, request_id: str) -> list[Answer]:
        """The distinct answers about ``request_id`` received so far, in order."""
        return list(self._answers.get(request_id, ()))

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds (re-checked after every delivery)."""
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(check)

    async def wait(self, request_id: str, check: Callable[[list[Answer]], bool]) -> list[Answer]:
        await self.until(lambda: check(self.answers(request_id)))
        return self.answers(request_id)

    async def final(self, request_id: str) -> Answer:
        """The one answer that ends the job (success, error or cancelled)."""
        answers = await self.wait(request_id, lambda got: any(is_final(a.event) for a in got))
        finals = [a for a in answers if is_final(a.event)]
        assert len(finals) == 1, [a.event.tags for a in finals]
        return finals[0]

    def in_the_clear(self, *, about: Iterable[str] = (), to: Iterable[str] = ()) -> list[Event]:
        """Events seen unwrapped that reference a request in ``about`` (``e``) or address a
        key in ``to`` (``p``)."""
        ids, keys = set(about), set(to)
        return [
            e
            for e in self.seen
            if e.kind not in WRAP_KINDS
            and (ids & set(e.tag_values("e")) or keys & set(e.tag_values("p")))
        ]


@contextlib.asynccontextmanager
async def private_customer(
    relays: str | Sequence[str], dvm: str, keys: Keys | None = None
) -> AsyncIterator[PrivateCustomer]:
    """A listening :class:`PrivateCustomer` of the DVM ``dvm``; it answers NIP-42 AUTH."""
    keys = keys or Keys.generate()
    urls = [relays] if isinstance(relays, str) else list(relays)
    mine = {
        "kinds": sorted(WRAP_KINDS),
        "#p": [keys.public_key],
        "since": int(time.time()) - giftwrap.MAX_BACKDATE - 60,
    }
    everything: dict[str, Any] = {}
    async with (
        RelayPool(relays=urls, signer=keys) as pool,
        # A wrap's created_at lies in the past: after a reconnect, read them all again.
        pool.subscribe(mine, everything, rewrite_since=False) as sub,
    ):
        async with asyncio.timeout(WAIT):
            await sub.wait_stored()
        customer = PrivateCustomer(pool, keys, dvm)
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(customer._read(sub))
            try:
                yield customer
            finally:
                reader.cancel()


def recording_dvm(relay: str | Sequence[str], **kwargs: Any) -> tuple[DVM, list[str]]:
    """A DVM that upper-cases its input after a progress and a partial; and its call log
    (the ids of the jobs its handler ran)."""
    dvm = make_dvm(relay, **kwargs)
    calls: list[str] = []

    @dvm.job
    async def shout(input: str, job: Job, times: int = 1) -> str:
        calls.append(job.id)
        await job.progress("warming up")
        await job.partial(input[::-1], "half done")
        return " ".join([input.upper()] * times)

    return dvm, calls
