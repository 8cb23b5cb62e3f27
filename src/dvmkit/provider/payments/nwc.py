"""bolt11 over NWC: the DVM's own NIP-47 wallet makes the invoice and says when it is paid."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from dvmkit.errors import DVMError, PaymentError
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11, lnurl
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import Notifications, NWCClient
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import BOLT11, PaymentMessage, Refund, refund_address
from dvmkit.provider.config import Paid, PaymentRequest
from dvmkit.provider.payments.mailbox import Mailbox
from dvmkit.relay.pool import RelayPool

log = logging.getLogger("dvmkit.provider.payments")


class NWCPayments:
    """Take bolt11 payments into the DVM's NWC wallet (any NIP-47 wallet: Alby Hub, the
    dvmkit dev wallet, ...).

    A job is released when the wallet itself reports its invoice ``settled``: its
    ``payment_received`` notification wakes the check, and ``lookup_invoice`` is polled every
    ``poll_interval`` seconds for wallets that send none. Nothing the customer says counts.

    Args:
        wallet: the DVM's connection URI (a secret: never logged or shown).
        expiry: the most seconds an invoice stays payable (never past the job's
            ``Limits.payment_timeout``).
        poll_interval: seconds between ``lookup_invoice`` calls while a job waits.
        timeout: seconds each wallet call may take.
    """

    def __init__(
        self,
        wallet: ConnectionURI | str,
        *,
        expiry: int = 600,
        poll_interval: float = 2.0,
        timeout: float = 15.0,
    ) -> None:
        self.uri = wallet if isinstance(wallet, ConnectionURI) else ConnectionURI.parse(wallet)
        self.expiry = expiry
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._client: NWCClient | None = None
        self._settled: Mailbox[None] = Mailbox()

    def __repr__(self) -> str:
        return f"NWCPayments(wallet={self.uri.wallet!r})"

    @property
    def methods(self) -> Sequence[str]:
        return (BOLT11,)

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        # The wallet's own relays (from its URI), on a pool of its own: they need not be the
        # DVM's, and its AUTH identity is the connection's key, not the DVM's.
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(NWCClient(self.uri, timeout=self.timeout))
            notes = await stack.enter_async_context(client.notifications())
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            reader = tg.create_task(self._read(notes), name="nwc payments notifications")
            stack.callback(reader.cancel)  # runs first: the group then has nothing to wait on
            self._client = client
            try:
                yield self
            finally:
                self._client = None

    async def _read(self, notes: Notifications) -> None:
        async for note in notes:
            if note.type == "payment_received":
                self._settled.put(note.transaction.payment_hash, None)

    def _wallet(self) -> NWCClient:
        if self._client is None:
            raise PaymentError("the DVM's wallet is not connected")
        return self._client

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        transaction = await self._wallet().make_invoice(
            amount_msat,
            description=f"dvmkit job {job_id}",
            # Never payable after the job stops waiting for it.
            expiry=max(1, min(self.expiry, expires_in)),
        )
        return PaymentRequest(
            amount_msat,
            (BOLT11,),
            bolt11=transaction.invoice,
            reference=transaction.payment_hash,
        )

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        ref = payment.reference
        if ref is None and payment.bolt11 is not None:
            ref = bolt11.decode(payment.bolt11).payment_hash
        if ref is None:
            raise PaymentError(f"job {job_id} has no invoice to look up")
        wallet = self._wallet()
        while True:
            try:
                transaction = await wallet.lookup_invoice(payment_hash=ref)
            except DVMError as exc:
                # The wallet or its relay hiccuped; the payment timeout bounds the wait.
                log.warning("job %s: lookup_invoice failed: %s", job_id, exc)
            else:
                if transaction.settled and transaction.payment_hash == ref:
                    return Paid(transaction.amount_msat, BOLT11, "bolt11:" + ref)
                if transaction.state == "failed":
                    raise PaymentError(f"the invoice for job {job_id} failed")
                # An expired invoice is the job's payment timeout arriving: the engine's
                # deadline (which the invoice's expiry never passes) ends the wait.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._settled.get(ref)

    def deliver(self, message: PaymentMessage) -> bool:
        return False  # a bolt11 is paid to the wallet, not sent to the DVM

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        """Pay ``paid`` back to the invoice or lightning address the request named (a
        ``["refund", address]`` tag); None when it named none."""
        address = refund_address(request.event)
        if address is None:
            return None
        return await pay_back(self._wallet(), address, paid.amount_msat)


async def pay_back(wallet: NWCClient, address: str, amount_msat: int) -> Refund:
    """Pay ``amount_msat`` to a bolt11 invoice or lightning address.

    Raises:
        PaymentError: the address is unusable (an invoice for another amount, an LNURL
            server that refuses) or the payment failed.
    """
    if address.lower().startswith("ln") and "@" not in address:
        invoice = bolt11.decode(address)
        if invoice.amount_msat not in (None, amount_msat):
            raise PaymentError(
                f"the refund invoice asks {invoice.amount_msat} msat, not {amount_msat}"
            )
        amount = amount_msat if invoice.amount_msat is None else None
        payment = await wallet.pay_invoice(address, amount_msat=amount)
    else:
        info = await lnurl.fetch_pay_info(address)
        invoice_text = await lnurl.fetch_invoice(info, amount_msat)
        payment = await wallet.pay_invoice(invoice_text)
    return Refund(amount_msat, BOLT11, payment.preimage)
