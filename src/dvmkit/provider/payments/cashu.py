"""Cashu: the customer sends a token; the DVM swaps it at its mint, which is the proof of payment.

The swap is also what stops a double spend: a token that paid before is refused by the mint
(:class:`~dvmkit.payments.cashu_errors.TokenAlreadySpent`), and the job it was sent for ends
``error PAYMENT_FAILED``. Refunds are fresh tokens cut from the DVM's own proofs.

The proof file also journals the outputs of every swap in flight (their secrets and blinding
factors), written before the swap is sent: if the DVM dies after the mint answered and before
the new proofs were written, the next start asks the mint for its signatures again (NUT-09)
and nothing that was paid is lost. A journal that cannot be written fails the payment before
the token is swapped, so the customer keeps its money.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson

from dvmkit.errors import PaymentError
from dvmkit.nostr.keys import Keys
from dvmkit.payments.cashu import Blinded, CashuWallet, Proof, decode_token
from dvmkit.payments.cashu_errors import CashuError
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import CASHU, PaymentMessage, Refund
from dvmkit.provider.config import Paid, PaymentRequest
from dvmkit.provider.payments.mailbox import Mailbox
from dvmkit.relay.pool import RelayPool

log = logging.getLogger("dvmkit.provider.payments")

MSAT_PER_SAT = 1000


class CashuPayments:
    """Take Cashu ecash from one mint (amounts in ``sat``; prices are rounded up to whole sats).

    Args:
        mint_url: the mint whose tokens the DVM takes (tokens of other mints are refused
            without contacting them).
        proofs_path: where the DVM's ecash is kept (a JSON file, mode 0600, rewritten before
            each swap and after every payment and refund, before either counts); in memory
            only when None.
        timeout: seconds each call to the mint may take.
    """

    def __init__(
        self, *, mint_url: str, proofs_path: str | Path | None = None, timeout: float = 10.0
    ) -> None:
        self.proofs_path = None if proofs_path is None else Path(proofs_path)
        proofs, pending = self._load()
        journal = None if self.proofs_path is None else self
        self.wallet = CashuWallet(
            mint_url=mint_url, proofs=proofs, journal=journal, timeout=timeout
        )
        self.mint_url = self.wallet.mint_url
        self._tokens: Mailbox[str] = Mailbox(per_key=4)
        self._saving = asyncio.Lock()
        # Outputs the mint may have signed that no saved proof covers yet: the swaps in
        # flight, and what a crash left in the file until the mint has been asked about it.
        self._inflight: dict[int, tuple[Blinded, ...]] = {}
        if pending:
            self._inflight[id(pending)] = pending
        self._left = pending

    def __repr__(self) -> str:
        return f"CashuPayments(mint={self.mint_url!r}, balance={self.wallet.balance})"

    @property
    def methods(self) -> Sequence[str]:
        return (CASHU,)

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        try:
            await self.wallet.load_keysets()
            await self._restore()
        except CashuError as exc:
            # A mint that is down must not keep the DVM (and its other methods) from serving:
            # the keys are fetched again on the first token, and that job fails if it is still
            # down. Outputs left by a crash stay journaled for the next start.
            log.warning("the Cashu mint is unreachable for now: %s", exc)
        yield self

    async def _restore(self) -> None:
        left, self._left = self._left, ()
        if not left:
            return
        found = await self.wallet.restore(left)
        self._inflight.pop(id(left), None)
        await self._persist()
        log.warning(
            "restored %d sat of ecash from %d outputs a crash left unsaved", found, len(left)
        )

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        return PaymentRequest(amount_msat, (CASHU,), details=((CASHU, self.mint_url),))

    def deliver(self, message: PaymentMessage) -> bool:
        if message.method != CASHU:
            return False
        self._tokens.put(message.job_id, message.payload)
        return True

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        token_text = await self._tokens.get(job_id)
        token = decode_token(token_text)
        sats = -(-payment.amount_msat // MSAT_PER_SAT)
        if token.amount < sats:
            # Checked before the swap, so an underpaying customer keeps its token.
            raise PaymentError(f"the token holds {token.amount} sat; the job costs {sats}")
        key = "cashu:" + _digest(token.proofs)
        received = await self.wallet.receive(token)
        await self._persist()  # before the job counts as paid
        return Paid(received * MSAT_PER_SAT, CASHU, key)

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        token = await self.wallet.send(paid.amount_msat // MSAT_PER_SAT)
        await self._persist()
        return Refund(paid.amount_msat, CASHU, token)

    # -- the journal (OutputJournal, for the wallet) ----------------------------------------

    async def record(self, outputs: tuple[Blinded, ...]) -> None:
        self._inflight[id(outputs)] = outputs
        try:
            await self._save()
        except OSError as exc:
            self._inflight.pop(id(outputs), None)
            # Nothing was swapped: the job fails and the customer's token stays spendable.
            raise CashuError(f"cannot record the swap before sending it: {exc}"[:200]) from None

    def forget(self, outputs: tuple[Blinded, ...]) -> None:
        # The next save (after every payment and refund) leaves them out.
        self._inflight.pop(id(outputs), None)

    # -- the proof file ----------------------------------------------------------------------

    def _load(self) -> tuple[list[Proof], tuple[Blinded, ...]]:
        """The saved proofs, and the outputs a crash left journaled. A file of a bare list is
        the format before the journal: proofs only."""
        if self.proofs_path is None or not self.proofs_path.exists():
            return [], ()
        try:
            data = orjson.loads(self.proofs_path.read_bytes())
            rows, pending = (
                (data, []) if isinstance(data, list) else (data["proofs"], data["pending"])
            )
            proofs = [Proof(r["amount"], r["id"], r["secret"], r["C"]) for r in rows]
            return proofs, tuple(Blinded.from_json(b) for b in pending)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CashuError(f"{self.proofs_path} is not a proof file: {exc!r}"[:200]) from None

    async def _persist(self) -> None:
        """Save after a payment or refund. A failure is logged, not raised: the money came,
        and the proofs are still held in memory (losing them needs a crash as well)."""
        try:
            await self._save()
        except OSError as exc:
            log.error("could not save the DVM's ecash to %s: %s", self.proofs_path, exc)

    async def _save(self) -> None:
        """Write the proofs and the journaled outputs, in a thread (an fsync must not stall
        the event loop). One write at a time, each taking its snapshot when its turn comes,
        so an older state never overwrites a newer one."""
        if self.proofs_path is None:
            return
        async with self._saving:
            pending = [b for outputs in self._inflight.values() for b in outputs]
            await asyncio.to_thread(self._write, self.proofs_path, self.wallet.proofs, pending)

    @staticmethod
    def _write(path: Path, proofs: tuple[Proof, ...], pending: list[Blinded]) -> None:
        # Written aside and renamed: a crash mid-write leaves the old file, never half a new one.
        body = {"proofs": [p.to_json() for p in proofs], "pending": [b.to_json() for b in pending]}
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(body))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _digest(proofs: Sequence[Proof]) -> str:
    """A public name for a token's proofs: the same proofs, however encoded, give one key."""
    secrets = sorted(p.secret for p in proofs)
    return hashlib.sha256(orjson.dumps(secrets)).hexdigest()
