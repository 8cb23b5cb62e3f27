"""Paying a DVM, up to the customer's cap, and taking its refunds (DESIGN.md §6).

A :class:`Payer` belongs to one :class:`~dvmkit.customer.client.Customer` and holds what it
pays with: an NWC wallet (``pay_invoice``) and a Cashu wallet. A job hands it an :class:`Ask`
only after the job's own checks (the ``payment-required`` is from the job's DVM, about its
current request, not paid before, within the cap); the payer then chooses how to pay:

1. **cashu**, when the DVM names the mint the customer's Cashu wallet uses and the wallet
   holds enough: a token sent in a payment message (:func:`~dvmkit.protocol.payment.
   payment_event`), NIP-44 encrypted to the DVM and, for a private job, wrapped to it;
2. **bolt11**, the invoice in the ``amount`` tag, paid with the NWC wallet;
3. **zap**, through the DVM's lightning address: a zap request for the job, the LNURL
   callback's invoice, paid with the NWC wallet. Never for a private job: a zap request is
   signed by the customer, names the DVM and the job, and its receipt is public.

Every invoice is decoded first and refused when its amount is not exactly the one asked (or
is missing), when it has expired, or when its payment hash was paid before by this customer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dvmkit.errors import DVMError, PaymentError, PaymentRequired, ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.cashu_errors import CashuError
from dvmkit.payments.cashu_token import normalize_mint_url
from dvmkit.payments.nip47 import WalletError
from dvmkit.protocol.payment import BOLT11, CASHU, ZAP, payment_event, read_refund

if TYPE_CHECKING:
    # The wallets' own machinery (HTTP to the mint, the NWC relay pool) comes with the
    # wallets the caller passes in.
    from dvmkit.payments.cashu import CashuWallet
    from dvmkit.payments.nwc import NWCClient

__all__ = ["Ask", "Paid", "Payer", "PaymentFailed", "Refunded"]


class PaymentFailed(PaymentError):
    """The customer tried to pay a DVM and its wallet, mint or LNURL service failed.

    The message names the DVM, the amount and the method, and the wallet's reason; never a
    connection URI or a token.

    Attributes:
        dvm: the DVM's pubkey.
        request_id: the request being paid for.
        amount_msat: what was to be paid.
        method: ``bolt11``, ``cashu`` or ``zap``.
        code: the NWC wallet's error code (:class:`~dvmkit.payments.nip47.WalletError`) when
            the wallet failed, else None: ``TIMEOUT``, it did not answer in time (the payment
            may still go out); ``NOT_SENT``, no relay took the request to it.
    """

    def __init__(
        self,
        message: str,
        *,
        dvm: str,
        request_id: str,
        amount_msat: int,
        method: str,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.dvm = dvm
        self.request_id = request_id
        self.amount_msat = amount_msat
        self.method = method
        self.code = code


@dataclass(frozen=True, slots=True)
class Ask:
    """A ``payment-required`` the job checked and wants paid.

    Attributes:
        dvm: the DVM asking (the author, checked by the job).
        request_id: the job's current request, the one the DVM named.
        amount_msat: what it asks.
        bolt11: its invoice, if it sent one.
        methods: the methods it named, with their details (empty: a NIP-90 DVM that names
            none takes the invoice it sent).
        cap_msat: the job's cap.
        left_msat: what the cap leaves (the cap is for the whole job: a job failed over after
            paying one DVM has less left), the most this payment may cost.
        private: a wrapped job (no zap; the payment message is wrapped too).
    """

    dvm: str
    request_id: str
    amount_msat: int
    bolt11: str | None
    methods: Mapping[str, str | None]
    cap_msat: int
    left_msat: int
    private: bool = False


@dataclass(frozen=True, slots=True)
class Paid:
    """A payment made: how much (msat), how, and the invoice's payment hash if there was one."""

    amount_msat: int
    method: str
    payment_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Refunded:
    """A refund taken: its amount (msat, None when it could not be taken) and method."""

    amount_msat: int | None
    method: str
    problem: str | None = None


Send = Callable[[Event], Awaitable[None]]


class Payer:
    """What a customer pays with, and the invoices it has paid.

    Args:
        keys: the customer's keys (they sign payment messages and zap requests).
        wallet: a running NWC client (the caller enters it), or None.
        cashu: a Cashu wallet, or None.
        relays: where a zap receipt should be published (the customer's relays).
        clock: unix time (invoice expiry, event dates).
    """

    def __init__(
        self,
        *,
        keys: Keys,
        relays: Sequence[str],
        wallet: NWCClient | None = None,
        cashu: CashuWallet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.wallet = wallet
        self.cashu = cashu
        self.relays = tuple(relays)
        self._clock = clock
        # Payment hashes paid (or being paid) by this customer: an invoice is paid at most
        # once, whichever job or DVM presents it again.
        self._hashes: set[str] = set()

    def __repr__(self) -> str:
        return f"Payer(wallet={self.wallet is not None}, cashu={self.cashu is not None})"

    @property
    def can_pay(self) -> bool:
        return self.wallet is not None or self.cashu is not None

    def method_for(self, ask: Ask, *, offer: bool = False) -> str | None:
        """How ``ask`` would be paid (cashu, then bolt11, then zap), or None if it cannot be.

        Args:
            ask: what is asked.
            offer: ``ask`` is an offer: its invoice comes later, with ``payment-required``.
        """
        if self._cashu_cost(ask) is not None:
            return CASHU
        return self._lightning(ask, offer=offer)

    def _lightning(self, ask: Ask, *, offer: bool = False) -> str | None:
        if self.wallet is None:
            return None
        if (ask.bolt11 or offer) and (BOLT11 in ask.methods or not ask.methods):
            return BOLT11
        if ask.methods.get(ZAP) and not ask.private:
            return ZAP
        return None

    def _cashu_cost(self, ask: Ask) -> int | None:
        """What ``ask`` costs in the Cashu wallet's unit, when the wallet can pay it: the DVM
        names its mint, the cost (rounded up) fits in what the cap leaves, and the wallet
        holds that much (short of funds, it falls through to Lightning rather than fail)."""
        cashu, detail = self.cashu, ask.methods.get(CASHU)
        if cashu is None or not detail or normalize_mint_url(detail) != cashu.mint_url:
            return None
        cost = _cashu_amount(cashu, ask.amount_msat)
        if cost is None or _msat(cashu, cost) > ask.left_msat or cashu.balance < cost:
            return None
        return cost

    async def pay(self, ask: Ask, *, send: Send) -> Paid:
        """Pay ``ask`` by the method :meth:`method_for` chooses.

        Args:
            ask: what to pay.
            send: publishes an event to the DVM (wrapped for a private job): the payment
                message of a Cashu payment goes through it.

        Returns:
            What was paid.

        Raises:
            PaymentRequired: nothing to pay with that the DVM takes, or an invoice refused
                (its amount is not the one asked, it expired, or it was paid before).
            PaymentFailed: the wallet, mint or LNURL service failed.
        """
        cost = self._cashu_cost(ask)
        method = CASHU if cost is not None else self._lightning(ask)
        if method is None:
            raise self._unpayable(ask)
        try:
            if cost is not None:
                return await self._pay_cashu(ask, cost, send)
            if method == BOLT11:
                assert ask.bolt11 is not None
                return await self._pay_invoice(ask, ask.bolt11, BOLT11)
            return await self._pay_zap(ask)
        except (PaymentRequired, PaymentFailed):
            raise
        except (DVMError, ValueError) as exc:
            # Wallet, mint and LNURL errors say what went wrong and never hold a secret.
            raise PaymentFailed(
                f"paying DVM {ask.dvm} {ask.amount_msat} msat by {method} failed: {exc}",
                dvm=ask.dvm,
                request_id=ask.request_id,
                amount_msat=ask.amount_msat,
                method=method,
                code=exc.code if isinstance(exc, WalletError) else None,
            ) from None

    async def _pay_cashu(self, ask: Ask, cost: int, send: Send) -> Paid:
        cashu = self.cashu
        assert cashu is not None
        token = await cashu.send(cost, memo=f"job {ask.request_id[:16]}")
        message = payment_event(
            self.keys,
            job_id=ask.request_id,
            provider=ask.dvm,
            method=CASHU,
            payload=token,
            created_at=int(self._clock()),
        )
        try:
            await send(message)
        except BaseException:
            # No relay took it, so the DVM cannot have it: take the token back rather than
            # lose the money (if it was spent after all, the mint says so and nothing moves).
            with contextlib.suppress(CashuError):
                await cashu.receive(token)
            raise
        return Paid(_msat(cashu, cost), CASHU)

    async def _pay_zap(self, ask: Ask) -> Paid:
        # Imported here: LNURL needs an HTTP client that a customer without zaps never loads.
        from dvmkit.payments.lnurl import fetch_invoice, fetch_pay_info
        from dvmkit.payments.zaps import zap_request

        address = ask.methods.get(ZAP)
        assert address is not None
        info = await fetch_pay_info(address)
        request = zap_request(
            self.keys,
            recipient=ask.dvm,
            amount_msat=ask.amount_msat,
            relays=self.relays,
            event_id=ask.request_id,
            created_at=int(self._clock()),
        )
        invoice = await fetch_invoice(info, ask.amount_msat, zap_request=request)
        return await self._pay_invoice(ask, invoice, ZAP)

    async def _pay_invoice(self, ask: Ask, text: str, method: str) -> Paid:
        invoice = self._check_invoice(ask, text)
        assert self.wallet is not None
        # Marked before the wallet is asked: a second job presenting it meanwhile is refused,
        # and an invoice whose payment timed out is never tried again (it may have gone out).
        self._hashes.add(invoice.payment_hash)
        await self.wallet.pay_invoice(invoice.bolt11)
        return Paid(ask.amount_msat, method, invoice.payment_hash)

    def _check_invoice(self, ask: Ask, text: str) -> bolt11.Invoice:
        def refuse(why: str) -> PaymentRequired:
            return PaymentRequired(
                f"DVM {ask.dvm} asks {ask.amount_msat} msat with {why}: not paid",
                dvm=ask.dvm,
                amount_msat=ask.amount_msat,
                cap_msat=ask.cap_msat,
                bolt11=text,
            )

        try:
            invoice = bolt11.decode(text)
        except bolt11.InvalidInvoice as exc:
            raise refuse(f"an invoice that does not decode ({exc})") from None
        if invoice.amount_msat is None:
            raise refuse("an invoice for any amount (it must name the amount asked)")
        # The amount asked is within what the cap leaves (the job's check): an invoice for
        # exactly that amount is too.
        if invoice.amount_msat != ask.amount_msat:
            raise refuse(f"an invoice for {invoice.amount_msat} msat")
        if invoice.is_expired(now=self._clock()):
            raise refuse("an invoice that has expired")
        if invoice.payment_hash in self._hashes:
            raise refuse(f"an invoice this customer already paid ({invoice.payment_hash[:16]})")
        return invoice

    def _unpayable(self, ask: Ask) -> PaymentRequired:
        named = [f"{m} ({d[:80]})" if d else m for m, d in ask.methods.items()]
        takes = ", ".join(named) or ("bolt11" if ask.bolt11 else "no method it names")
        have = []
        if self.wallet is not None:
            have.append("an NWC wallet")
        if self.cashu is not None:
            have.append(f"Cashu at {self.cashu.mint_url} ({self.cashu.balance} {self.cashu.unit})")
        what = " and ".join(have) if have else "no wallet (pass --nwc, or wallet= / cashu=)"
        why = ""
        if ask.private and ask.methods.get(ZAP):
            why = " (a private job does not zap: the zap request and receipt are public)"
        return PaymentRequired(
            f"DVM {ask.dvm} asks {ask.amount_msat} msat and takes {takes}; this customer has "
            f"{what}, which cannot pay it{why}",
            dvm=ask.dvm,
            amount_msat=ask.amount_msat,
            cap_msat=ask.cap_msat,
            bolt11=ask.bolt11,
        )

    async def refund(self, event: Event) -> Refunded | None:
        """Take the refund an ``error`` about a paid job carries, if any.

        A Cashu refund is received into the Cashu wallet (swapped at the mint: only then is
        it ours). A Lightning refund is already paid; its amount is reported as the DVM
        states it.

        Returns:
            The refund, or None when the event carries none.
        """
        try:
            refund = read_refund(event, self.keys)
        except ProtocolError as exc:
            return Refunded(None, "?", f"the refund does not read: {exc}")
        if refund is None:
            return None
        if refund.method != CASHU:
            return Refunded(refund.amount_msat, refund.method)
        if self.cashu is None:
            return Refunded(None, CASHU, "a Cashu refund, and this customer has no Cashu wallet")
        try:
            received = await self.cashu.receive(refund.payload)
        except CashuError as exc:
            return Refunded(None, CASHU, f"the Cashu refund could not be received: {exc}")
        return Refunded(_msat(self.cashu, received), CASHU)


def _cashu_amount(wallet: CashuWallet, amount_msat: int) -> int | None:
    """``amount_msat`` in the wallet's unit, rounded up (a DVM is never paid less than it
    asks); None for a unit that is not sat or msat."""
    if wallet.unit == "msat":
        return amount_msat
    if wallet.unit == "sat":
        return -(-amount_msat // 1000)
    return None


def _msat(wallet: CashuWallet, amount: int) -> int:
    return amount * 1000 if wallet.unit == "sat" else amount
