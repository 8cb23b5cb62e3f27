"""One job's money: its cap, what it paid, and the rules for paying again (DESIGN.md §6).

A :class:`Budget` belongs to one :class:`~dvmkit.customer.job.Job`. The job reads answers and
checks who wrote them; the budget decides whether a price is paid:

- only with a cap (``max_price_msat``), and the cap is for the whole job: a job that paid one
  DVM and failed over to another pays the second only from what is left;
- a request id is paid once: a ``payment-required`` repeated (a relay replaying it, a DVM
  that restarted and asked again) is never paid a second time;
- a targeted DVM's ``offer`` (the bid was below its price) is taken up once per DVM;
- never for a job being watched (someone else's request).

How a payment is made (method, invoice checks) is the :class:`~dvmkit.customer.paying.Payer`'s.
"""

from __future__ import annotations

from dvmkit.customer.paying import Ask, Payer, Refunded, Send
from dvmkit.customer.values import Update, UpdateType
from dvmkit.errors import JobFailed, PaymentRequired
from dvmkit.nostr.event import Event

__all__ = ["Budget", "JobRefunded", "failure"]


class JobRefunded(JobFailed):
    """The DVM failed a job the customer paid for, and sent a refund with its ``error``.

    Attributes:
        refund_msat: what came back: a Cashu refund's value as received into the customer's
            Cashu wallet, or the amount a Lightning refund says it sent; None when the refund
            could not be taken (the message says why).
        refund_method: how it came (``cashu``, ``bolt11``, ...).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        dvm: str,
        refund_msat: int | None,
        refund_method: str,
    ) -> None:
        super().__init__(code, message, dvm=dvm)
        self.refund_msat = refund_msat
        self.refund_method = refund_method


class Budget:
    """The money side of one job.

    Args:
        payer: the customer's payer.
        cap_msat: the most the job may cost in total; None pays nothing.
        watch: a watched job (someone else's request): never pays.
        private: a private job (its payment messages are wrapped; no zaps).
    """

    def __init__(
        self,
        payer: Payer,
        cap_msat: int | None,
        *,
        watch: bool = False,
        private: bool = False,
    ) -> None:
        self._payer = payer
        self.cap_msat = None if watch else cap_msat
        self._private = private
        self.spent_msat = 0
        self._paid: set[str] = set()
        self._rebids: set[str] = set()

    @property
    def left_msat(self) -> int | None:
        """What the cap leaves for this job (the cap is for the whole job); None: no cap."""
        return None if self.cap_msat is None else self.cap_msat - self.spent_msat

    def is_paid(self, request_id: str) -> bool:
        """Whether ``request_id`` was paid (or a payment for it was tried)."""
        return request_id in self._paid

    def within(self, amount_msat: int) -> bool:
        """Whether the cap leaves room for ``amount_msat`` (no cap: everything is, as an
        offer; paying needs a cap, see :meth:`ask`)."""
        left = self.left_msat
        return left is None or amount_msat <= left

    def ask(self, update: Update, request_id: str) -> Ask | None:
        """``update``'s price as something to pay, or None when this job will not pay it (no
        cap, or above what the cap leaves)."""
        cap, left, amount = self.cap_msat, self.left_msat, update.amount_msat
        if cap is None or left is None or amount is None or update.dvm is None:
            return None
        if amount > left:
            return None
        return Ask(
            dvm=update.dvm,
            request_id=request_id,
            amount_msat=amount,
            bolt11=update.bolt11,
            methods=update.methods,
            cap_msat=cap,
            left_msat=left,
            private=self._private,
        )

    def payable(self, update: Update, request_id: str, *, offer: bool = False) -> bool:
        """Whether this job would pay ``update``'s price with something its DVM takes."""
        ask = self.ask(update, request_id)
        return ask is not None and self._payer.method_for(ask, offer=offer) is not None

    def rebid(self, update: Update, request_id: str) -> bool:
        """Take up a targeted DVM's ``offer``: True (once per DVM) when the cap allows it and
        the customer has something it takes."""
        dvm = update.dvm
        if dvm is None or dvm in self._rebids:
            return False
        if not self.payable(update, request_id, offer=True):
            return False
        self._rebids.add(dvm)
        return True

    async def pay(self, update: Update, request_id: str, *, send: Send) -> Update:
        """Pay ``update``, a ``payment-required`` for ``request_id`` from the job's DVM.

        Args:
            update: the ask.
            request_id: the job's current request, the one ``update`` is about.
            send: publishes an event to the DVM as the job sends its requests (wrapped for a
                private job): a Cashu payment message goes through it.

        Returns:
            The ``paid`` update to report.

        Raises:
            PaymentRequired: not paid: see :meth:`ask`; nothing the DVM takes; an invoice
                refused by :class:`~dvmkit.customer.paying.Payer`.
            PaymentFailed: the wallet or mint failed.
        """
        ask = self.ask(update, request_id)
        if ask is None:
            raise self.refuse(update)
        # Marked before paying: whatever happens next, this request is not paid again.
        self._paid.add(request_id)
        paid = await self._payer.pay(ask, send=send)
        self.spent_msat += paid.amount_msat
        return Update(
            UpdateType.PAID,
            request_id,
            dvm=ask.dvm,
            amount_msat=paid.amount_msat,
            method=paid.method,
            bolt11=update.bolt11 if paid.payment_hash is not None else None,
        )

    async def refund(self, event: Event, request_id: str) -> Refunded | None:
        """The refund an ``error`` about ``request_id`` carries, taken; only for a request
        this job paid (nobody else's token is touched)."""
        if request_id not in self._paid:
            return None
        return await self._payer.refund(event)

    def refuse(self, update: Update) -> PaymentRequired:
        """The error for a price this job does not pay, saying why and what to do."""
        dvm, amount = update.dvm or "?", update.amount_msat or 0
        cap, left = self.cap_msat, self.left_msat
        if cap is None or left is None:
            message = (
                f"DVM {dvm} asks {amount} msat and this job has no cap: give one "
                "(max_price_msat, or dvm ask --max-price with --nwc) and a wallet to pay it, "
                "or choose a free DVM (dvm discover shows prices)"
            )
        elif amount > left:
            spent = self.spent_msat
            already = f" ({spent} msat already paid for this job)" if spent else ""
            message = (
                f"DVM {dvm} asks {amount} msat, above your cap of {cap} msat{already}: "
                "raise --max-price or choose another DVM"
            )
        elif dvm in self._rebids:
            message = (
                f"DVM {dvm} answered with an offer again ({amount} msat) after it was asked "
                "at its price: choose another DVM"
            )
        else:
            wallet = (
                "no wallet it takes"
                if self._payer.can_pay
                else "no wallet (wallet= / cashu=, or --nwc)"
            )
            message = (
                f"DVM {dvm} asks {amount} msat and this customer has {wallet}: see the "
                "payment methods in dvm discover"
            )
        return PaymentRequired(
            message, dvm=dvm, amount_msat=amount, cap_msat=cap, bolt11=update.bolt11
        )


def failure(update: Update, dvm: str, refunded: Refunded | None) -> JobFailed:
    """The error ``update`` reports, with the refund taken from it, if any."""
    code = update.code or "ERROR"
    if refunded is None:
        return JobFailed(code, update.content, dvm=dvm)
    if refunded.amount_msat is None:
        note = f"{update.content} (a refund came and was not taken: {refunded.problem})"
    else:
        note = f"{update.content} (refunded {refunded.amount_msat} msat by {refunded.method})"
    return JobRefunded(
        code, note, dvm=dvm, refund_msat=refunded.amount_msat, refund_method=refunded.method
    )
