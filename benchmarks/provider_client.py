"""The provider benchmark's customer: one raw websocket to the relay, as cheap as it can be.

The client shares two cores with the relay and the DVM under test, so its hot path does very
little: request frames are signed, serialized and masked (:mod:`benchmarks.wsraw`) before the
clock starts, a burst is one ``write``, and replies are handled inside ``data_received``
without a task wake-up per message. Every answer is timestamped on arrival, before it is
parsed, and matched to its request through its ``e`` tag: a kind-6050 result (NIP-90) or a
kind-25000 ``success`` (dvmkit's modern dialect) settles it, an ``error`` status refuses it,
other statuses are only counted.

Gift-wrapped answers (kind 21059 to the customer) are opened too, but not as they arrive.
Opening one costs the customer about as much as opening the request costs the DVM (a wrap
signature check, an ECDH, a NIP-44 decryption, the inner signature check): done inline, this
process would take a CPU share comparable to the DVM's own on the two cores they share, and
the measure would be the client's as much as the DVM's. A real customer opens a handful of
answers; the benchmark's single customer opens thousands. So a wrap is only stamped and kept
(it is for us: the subscription's ``#p`` is our keys), and counted; once as many have come as
requests are unsettled, all kept wraps are opened with the full check
(:func:`dvmkit.protocol.envelope.open_wrap`) and matched like plain answers. A wrap that turns
out to be another status (``processing``) leaves its request waiting for the next one. The
latencies are the arrival stamps, so the opening costs none of them, and its CPU time is
reported apart (``open_cpu_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import orjson

from benchmarks.provider_jobs import ANSWER_KINDS, Form
from benchmarks.wsraw import OPEN_TIMEOUT, Connection, ProtocolViolation, client_frame, reject
from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import WRAP_KINDS, open_wrap
from dvmkit.protocol.job import FEEDBACK_KIND, MODERN_KIND

RESULT_KIND = 6050

# What benchmarks.provider catches: the relay refused the upgrade, broke RFC 6455, closed the
# connection or sent a message that is not the NIP-01 it claims to be.
ClientError = ProtocolViolation


class Customer(Connection):
    """Publishes job requests and records when each one's result arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived_at = 0.0
        self._eose: asyncio.Future[None] | None = None
        self._waiting: set[str] = set()
        self._all_answered: asyncio.Future[None] | None = None
        self._keys: dict[str, Keys] = {}  # customer pubkey -> its keys, to open wraps
        self._sealed: list[tuple[float, dict[str, object]]] = []  # (arrival, wrap) not opened
        self.inputs: dict[str, str] = {}  # request id -> its input text
        self.results: dict[str, float] = {}  # request id -> perf_counter() when its result came
        self.errors: dict[str, float] = {}  # request id -> when an error feedback said no
        self.last_settled_at = 0.0  # ... or, for wraps, when the last one came (progress)
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.feedback: Counter[str] = Counter()  # status of a non-final answer -> count
        self.wrong_content = 0
        self.duplicates = 0
        self.unknown = 0
        self.opened = 0  # wraps opened
        self.unopenable = 0  # wraps that failed open_wrap's checks
        self.open_cpu_s = 0.0
        self.notices: list[str] = []

    def data_received(self, data: bytes) -> None:
        # Stamped before parsing, so that a result's latency is not the client's own work.
        self._arrived_at = time.perf_counter()
        super().data_received(data)

    def _received(self, messages: list[bytes]) -> None:
        try:
            for message in messages:
                self._handle(message, self._arrived_at)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._fail(ClientError(f"bad message from the relay: {exc!r}"))

    def _fail(self, exc: ProtocolViolation) -> None:
        super()._fail(exc)
        reject(self._eose, exc)
        reject(self._all_answered, exc)

    def _handle(self, message: bytes, now: float) -> None:
        if message.startswith(b'["OK"'):
            _, _, ok, reason = orjson.loads(message)
            if ok:
                self.accepted += 1
            else:
                self.rejected[str(reason)[:80]] += 1
            return
        if message.startswith(b'["EVENT"'):
            event = orjson.loads(message)[2]
            if event["kind"] in WRAP_KINDS:
                self._sealed.append((now, event))
                self.last_settled_at = now
                if len(self._sealed) >= len(self._waiting):
                    self.open_sealed()
            else:
                self._answer(event["kind"], event["tags"], event["content"], now)
            return
        if message.startswith(b'["EOSE"'):
            if self._eose is not None and not self._eose.done():
                self._eose.set_result(None)
            return
        if len(self.notices) < 20:
            self.notices.append(message[:200].decode(errors="replace"))

    def _answer(
        self, kind: object, tags: Sequence[Sequence[str]], content: object, now: float
    ) -> None:
        """One answer in the clear (or out of its wrap): a result, an error, or a status."""
        request = next((t[1] for t in tags if len(t) > 1 and t[0] == "e"), None)
        if kind == RESULT_KIND:
            self._result(request, content, now)
            return
        if kind not in (FEEDBACK_KIND, MODERN_KIND):
            return
        status = next((t[1] for t in tags if len(t) > 1 and t[0] == "status"), "?")
        if kind == MODERN_KIND and status == "success":
            self._result(request, content, now)
            return
        self.feedback[str(status)] += 1
        if status == "error" and request in self.inputs:
            self._refused(request, now)

    def open_sealed(self) -> None:
        """Open the wraps kept so far, checking every layer, and match what they carry."""
        if not self._sealed:
            return
        begin = time.process_time()
        sealed, self._sealed = self._sealed, []
        for arrived, data in sealed:
            try:
                wrap = Event.from_dict(data)
                keys = self._keys[next(t[1] for t in wrap.tags if t[0] == "p")]
                inner = open_wrap(wrap, keys).event
            except (ProtocolError, KeyError, StopIteration):
                self.unopenable += 1
                continue
            self.opened += 1
            self._answer(inner.kind, inner.tags, inner.content, arrived)
        self.open_cpu_s += time.process_time() - begin

    def _result(self, request: object, content: object, now: float) -> None:
        if not isinstance(request, str) or request not in self.inputs:
            self.unknown += 1
            return
        if request in self.results:
            self.duplicates += 1
            return
        self.results[request] = now
        self.last_settled_at = max(self.last_settled_at, now)
        if content != self.inputs[request]:
            self.wrong_content += 1
        self._settle(request)

    def _refused(self, request: str, now: float) -> None:
        """An ``error`` feedback: the DVM will not answer this request (NIP-90)."""
        if request not in self.results and request not in self.errors:
            self.errors[request] = now
            self.last_settled_at = max(self.last_settled_at, now)
            self._settle(request)

    def _settle(self, request: str) -> None:
        self._waiting.discard(request)
        done = self._all_answered
        if not self._waiting and done is not None and not done.done():
            done.set_result(None)

    # -- use -------------------------------------------------------------------------------

    async def subscribe(self, customers: Sequence[Keys], form: Form) -> None:
        """The answers addressed to ``customers`` for requests of ``form``."""
        self._keys.update((c.public_key, c) for c in customers)
        self._eose = asyncio.get_running_loop().create_future()
        answers = {"kinds": list(ANSWER_KINDS[form]), "#p": [c.public_key for c in customers]}
        self._write(client_frame(orjson.dumps(["REQ", "jobs", answers])))
        async with asyncio.timeout(OPEN_TIMEOUT):
            await self._eose

    def expect(self, requests: dict[str, str]) -> asyncio.Future[None]:
        """Wait for these requests (id -> input text); resolves once each has its result or
        an error feedback."""
        self.inputs.update(requests)
        self._waiting = {r for r in requests if r not in self.results and r not in self.errors}
        self._all_answered = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._all_answered.set_result(None)
        return self._all_answered

    def send(self, frames: list[bytes]) -> float:
        """Write pre-built frames at once; returns the perf_counter() just before the write."""
        sent_at = time.perf_counter()
        self._write(b"".join(frames))
        return sent_at
