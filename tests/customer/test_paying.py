"""The customer's payment rules, without relays: which method a payer chooses
(:class:`~dvmkit.customer.paying.Payer`) and what a job's :class:`~dvmkit.customer.budget.
Budget` pays or refuses. The Cashu cases use the real test mint; nothing else runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from dvmkit.customer import UpdateType
from dvmkit.customer.budget import Budget
from dvmkit.customer.paying import Ask, Payer
from dvmkit.customer.values import Update
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.payments.cashu import CashuWallet, decode_token
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.payment import read_payment
from payments.mint import funded

from .conftest import PRICE

DVM_KEYS = Keys.generate()
DVM = DVM_KEYS.public_key
REQUEST = "e" * 64
RELAYS = ["ws://127.0.0.1:1"]
#: A wallet that is never entered: choosing a method does not talk to it.
URI = ConnectionURI.parse(
    "nostr+walletconnect://"
    "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
    "?relay=ws%3A%2F%2F127.0.0.1%3A1"
    "&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c"
)
INVOICE = "lnbcrt210n1..."  # never decoded here: only its presence counts


def payer(*, nwc: bool = True, cashu: CashuWallet | None = None) -> Payer:
    wallet = NWCClient(URI) if nwc else None
    return Payer(keys=Keys.generate(), relays=RELAYS, wallet=wallet, cashu=cashu)


def ask(
    amount_msat: int = PRICE,
    *,
    bolt11: str | None = INVOICE,
    methods: Mapping[str, str | None] | None = None,
    left_msat: int | None = None,
    private: bool = False,
) -> Ask:
    """An ask the job checked, under a cap of ``left_msat`` (the price by default) with
    nothing spent yet."""
    left = amount_msat if left_msat is None else left_msat
    return Ask(
        dvm=DVM,
        request_id=REQUEST,
        amount_msat=amount_msat,
        bolt11=bolt11,
        methods=methods or {},
        cap_msat=left,
        left_msat=left,
        private=private,
    )


def asked(
    amount_msat: int = PRICE,
    *,
    kind: UpdateType = UpdateType.PAYMENT_REQUIRED,
    bolt11: str | None = None,
    methods: Mapping[str, str | None] | None = None,
) -> Update:
    """The DVM's answer naming a price."""
    return Update(
        kind, REQUEST, dvm=DVM, amount_msat=amount_msat, bolt11=bolt11, methods=methods or {}
    )


# -- Payer.method_for --------------------------------------------------------------------------


def test_an_invoice_is_paid_by_bolt11_when_the_dvm_names_it_or_names_nothing() -> None:
    assert payer().method_for(ask()) == "bolt11"
    assert payer().method_for(ask(methods={"bolt11": None})) == "bolt11"
    assert payer(nwc=False).method_for(ask()) is None
    # An offer's invoice comes later, with payment-required: bolt11 is still how it is paid.
    assert payer().method_for(ask(bolt11=None), offer=True) == "bolt11"
    assert payer().method_for(ask(bolt11=None)) is None


def test_the_customer_itself_never_zaps_for_a_private_job() -> None:
    # Its own rule too, whatever a DVM offers: a zap would publish the job's id.
    zap = ask(bolt11=None, methods={"zap": "dvm@127.0.0.1:1"})
    assert payer().method_for(zap) == "zap"
    assert payer().method_for(dataclasses.replace(zap, private=True)) is None
    assert payer(nwc=False).method_for(zap) is None


async def test_cashu_is_chosen_for_the_wallets_mint_only_when_it_holds_enough(
    cashu_mint: str,
) -> None:
    purse = await funded(cashu_mint, 21)
    takes = {"cashu": cashu_mint + "/", "bolt11": None}  # wallets differ on the slash
    assert payer(cashu=purse).method_for(ask(methods=takes)) == "cashu"
    assert (
        payer(cashu=purse).method_for(ask(methods={"cashu": "https://elsewhere.example"})) is None
    )
    # Short of funds (one msat more is one sat more): the invoice beside it, if any.
    more = ask(PRICE + 1, methods=takes, left_msat=10 * PRICE)
    assert payer(cashu=purse).method_for(more) == "bolt11"
    assert payer(nwc=False, cashu=purse).method_for(more) is None


async def test_a_price_between_sats_costs_the_sat_above_and_must_fit_under_the_cap(
    cashu_mint: str,
) -> None:
    """21_001 msat is 22 sat in a sat wallet (a DVM is never paid less than it asks): paid
    only when the cap leaves 22_000 msat, and the job's spending counts 22_000."""
    price = 21_001
    purse = await funded(cashu_mint, 22)
    update = asked(price, methods={"cashu": cashu_mint})
    tight = Budget(payer(nwc=False, cashu=purse), price)
    assert tight.ask(update, REQUEST) is not None  # the price fits under the cap...
    assert not tight.payable(update, REQUEST)  # ...but 22 sat do not
    sent: list[Event] = []

    async def send(event: Event) -> None:
        sent.append(event)

    budget = Budget(payer(nwc=False, cashu=purse), 22_000)
    paid = await budget.pay(update, REQUEST, send=send)
    assert (paid.type, paid.method, paid.amount_msat) == (UpdateType.PAID, "cashu", 22_000)
    assert (budget.spent_msat, budget.left_msat, budget.is_paid(REQUEST)) == (22_000, 0, True)
    assert purse.balance == 0
    (message,) = sent
    payment = read_payment(message, DVM_KEYS)
    assert (payment.job_id, payment.method) == (REQUEST, "cashu")
    assert decode_token(payment.payload).amount == 22


# -- Budget ------------------------------------------------------------------------------------


def test_without_a_cap_nothing_is_paid_and_everything_is_an_acceptable_offer() -> None:
    budget = Budget(payer(), None)
    assert budget.left_msat is None
    assert budget.within(10**12)
    assert budget.ask(asked(bolt11=INVOICE), REQUEST) is None
    assert "this job has no cap" in str(budget.refuse(asked()))
    watched = Budget(payer(), PRICE, watch=True)  # someone else's request: never pays
    assert (watched.cap_msat, watched.ask(asked(bolt11=INVOICE), REQUEST)) == (None, None)


def test_a_price_above_what_the_cap_leaves_is_refused() -> None:
    budget = Budget(payer(), PRICE - 1)
    assert budget.left_msat == PRICE - 1
    assert not budget.within(PRICE)
    assert budget.ask(asked(bolt11=INVOICE), REQUEST) is None
    refused = budget.refuse(asked(bolt11=INVOICE))
    assert (refused.amount_msat, refused.cap_msat, refused.bolt11) == (PRICE, PRICE - 1, INVOICE)
    assert "above your cap" in str(refused)


def test_an_ask_within_the_cap_carries_what_it_leaves() -> None:
    got = Budget(payer(), 2 * PRICE, private=True).ask(asked(bolt11=INVOICE), REQUEST)
    assert got == ask(left_msat=2 * PRICE, private=True)


def test_an_offer_is_taken_up_once_per_dvm() -> None:
    budget = Budget(payer(), PRICE)
    offer = asked(kind=UpdateType.OFFER)
    assert budget.rebid(offer, REQUEST)
    assert not budget.rebid(offer, "f" * 64)  # the same DVM offering again
    assert "offer again" in str(budget.refuse(offer))


def test_a_refusal_says_whether_there_is_a_wallet_at_all() -> None:
    cashu_only = asked(bolt11=None, methods={"cashu": "https://mint.example"})
    no_wallet = Budget(payer(nwc=False), PRICE)
    assert not no_wallet.payable(cashu_only, REQUEST)
    assert "no wallet (wallet= / cashu=, or --nwc)" in str(no_wallet.refuse(cashu_only))
    other_wallet = Budget(payer(), PRICE)
    assert not other_wallet.payable(cashu_only, REQUEST)
    assert "no wallet it takes" in str(other_wallet.refuse(cashu_only))
