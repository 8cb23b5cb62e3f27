"""The provider benchmark's customer: one raw websocket to the relay, as cheap as it can be.

The client shares two cores with the relay and the DVM under test, so its hot path does very
little: request frames are signed, serialized and masked (:mod:`benchmarks.wsraw`) before the
clock starts, a burst is one ``write``, and replies are handled inside ``data_received``
without a task wake-up per message. Each kind-6050 result (NIP-90) is matched to its request
through its ``e`` tag and timestamped on arrival; kind-7000 feedback is only counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson

from benchmarks.wsraw import OPEN_TIMEOUT, Connection, ProtocolViolation, client_frame, reject
from benchmarks.wsraw import event_frame as event_frame  # what benchmarks.provider builds with

RESULT_KIND = 6050
FEEDBACK_KIND = 7000

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
        self.inputs: dict[str, str] = {}  # request id -> its input text
        self.results: dict[str, float] = {}  # request id -> perf_counter() when its result came
        self.errors: dict[str, float] = {}  # request id -> when an error feedback said no
        self.last_settled_at = 0.0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.feedback: Counter[str] = Counter()  # kind-7000 status -> count
        self.wrong_content = 0
        self.duplicates = 0
        self.unknown = 0
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
            request = next((t[1] for t in event["tags"] if t[:1] == ["e"] and len(t) > 1), None)
            if event["kind"] == FEEDBACK_KIND:
                status = next(
                    (t[1] for t in event["tags"] if t[:1] == ["status"] and len(t) > 1), "?"
                )
                self.feedback[str(status)] += 1
                if status == "error" and request in self.inputs:
                    self._refused(request, now)
            elif event["kind"] == RESULT_KIND:
                self._result(request, event["content"], now)
            return
        if message.startswith(b'["EOSE"'):
            if self._eose is not None and not self._eose.done():
                self._eose.set_result(None)
            return
        if len(self.notices) < 20:
            self.notices.append(message[:200].decode(errors="replace"))

    def _result(self, request: object, content: object, now: float) -> None:
        if not isinstance(request, str) or request not in self.inputs:
            self.unknown += 1
            return
        if request in self.results:
            self.duplicates += 1
            return
        self.results[request] = now
        self.last_settled_at = now
        if content != self.inputs[request]:
            self.wrong_content += 1
        self._settle(request)

    def _refused(self, request: str, now: float) -> None:
        """An ``error`` feedback: the DVM will not answer this request (NIP-90)."""
        if request not in self.results and request not in self.errors:
            self.errors[request] = now
            self.last_settled_at = now
            self._settle(request)

    def _settle(self, request: str) -> None:
        self._waiting.discard(request)
        done = self._all_answered
        if not self._waiting and done is not None and not done.done():
            done.set_result(None)

    # -- use -------------------------------------------------------------------------------

    async def subscribe(self, customers: list[str]) -> None:
        """Results and feedback addressed to ``customers`` (hex pubkeys)."""
        self._eose = asyncio.get_running_loop().create_future()
        request = ["REQ", "jobs", {"kinds": [RESULT_KIND, FEEDBACK_KIND], "#p": customers}]
        self._write(client_frame(orjson.dumps(request)))
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
