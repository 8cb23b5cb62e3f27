"""Zaps (NIP-57): the customer zaps the job; the DVM's own LNURL server signs the receipt.

A receipt is only a claim until it passes every check of
:func:`dvmkit.payments.zaps.verify_receipt`: signed by the ``nostrPubkey`` of the DVM's own
LNURL server, its invoice's amount equal to the zap request's and covering the price, the
invoice's description hash that of the zap request, both ``p`` tags this DVM and both ``e``
tags this job. The job store's payment ledger then takes the invoice's payment hash once, so a
receipt replayed (to this job or any other) releases nothing. nostrdvm checks none of this
(research/nostrdvm.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

from dvmkit.errors import PaymentError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys, is_hex64
from dvmkit.payments import lnurl
from dvmkit.payments.zaps import ZAP_RECEIPT_KIND, InvalidZap, verify_receipt
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import ZAP, PaymentMessage, Refund
from dvmkit.provider.config import Paid, PaymentRequest
from dvmkit.provider.payments.mailbox import Mailbox
from dvmkit.relay.pool import RelayPool

log = logging.getLogger("dvmkit.provider.payments")


class ZapPayments:
    """Take zaps to the DVM's lightning address.

    Args:
        address: the DVM's lightning address (``name@host``), served by its own LNURL server;
            customers are shown it in ``payment-required``.
        nostr_pubkey: the LNURL server's ``nostrPubkey``, the only key whose receipts count;
            read from the server at start when None (it must then allow Nostr zaps).
        lookback: seconds of stored receipts read at start, so a zap paid while the DVM was
            down still releases its job.
    """

    def __init__(
        self, *, address: str, nostr_pubkey: str | None = None, lookback: int = 86_400
    ) -> None:
        if nostr_pubkey is not None and not is_hex64(nostr_pubkey):
            raise ValueError("nostr_pubkey is a 64-character hex public key")
        self.address = address
        self.nostr_pubkey = nostr_pubkey
        self.lookback = lookback
        self.refused = 0  # receipts that failed a check
        self._me: str | None = None
        self._receipts: Mailbox[Event] = Mailbox()

    def __repr__(self) -> str:
        return f"ZapPayments(address={self.address!r}, nostr_pubkey={self.nostr_pubkey!r})"

    @property
    def methods(self) -> Sequence[str]:
        return (ZAP,)

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        if self.nostr_pubkey is None:
            info = await lnurl.fetch_pay_info(self.address)
            if not info.allows_nostr or info.nostr_pubkey is None:
                raise PaymentError(f"{self.address} does not allow Nostr zaps (NIP-57)")
            self.nostr_pubkey = info.nostr_pubkey
        self._me = keys.public_key
        window = {
            "kinds": [ZAP_RECEIPT_KIND],
            "#p": [keys.public_key],
            "since": int(time.time()) - self.lookback,
        }
        async with pool.subscribe(window) as sub, asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._read(sub), name="zap receipts")
            try:
                yield self
            finally:
                reader.cancel()

    async def _read(self, sub: AsyncIterator[Event]) -> None:
        async for receipt in sub:
            # Filed under every job it names; verify_receipt decides which one it may pay.
            for job_id in dict.fromkeys(receipt.tag_values("e")[:4]):
                self._receipts.put(job_id, receipt)

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        return PaymentRequest(amount_msat, (ZAP,), details=((ZAP, self.address),))

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        signer, me = self.nostr_pubkey, self._me
        if signer is None or me is None:
            raise PaymentError("zap payments are not being served")
        while True:
            receipt = await self._receipts.get(job_id)
            try:
                zap = verify_receipt(
                    receipt,
                    signer=signer,
                    recipient=me,
                    event_id=job_id,
                    min_amount_msat=payment.amount_msat,
                )
            except InvalidZap as exc:
                self.refused += 1
                log.info("job %s: zap receipt %s refused: %s", job_id, receipt.id, exc)
                continue
            return Paid(zap.amount_msat, ZAP, "zap:" + zap.payment_hash)

    def deliver(self, message: PaymentMessage) -> bool:
        return False  # zaps are paid to the LNURL server; its receipt is what counts

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        return None  # the money is in the LNURL server's wallet: owed, for its operator
