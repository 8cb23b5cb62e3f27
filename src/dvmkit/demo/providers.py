"""The demo's own providers (besides every built-in of :mod:`dvmkit.dvms`): the competing
digest DVMs, the priced ones, and the dead one.

The digest providers bid on open requests (``DVM(offers=True)``) with different ETAs, and one
of them can be stalled mid-job and stopped, for the failover step. The two priced digest DVMs
(:data:`PRICE_MSAT` a job) serve a category of their own, so the free steps never meet them:
one is paid by bolt11 into its account at the demo's dev wallet (NWC), the other in Cashu
ecash of the demo's mint. The dead DVM only exists as an announcement and a heartbeat 30
minutes old: nothing runs.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from dvmkit.nostr.event import Event
from dvmkit.payments.devwallet import DevWallet
from dvmkit.provider import DVM, Limits, PaymentProcessor
from dvmkit.provider.payments import CashuPayments, NWCPayments
from dvmkit.relay.pool import RelayPool

CATEGORY = "digest"
PAID_CATEGORY = "paid-digest"
PRICE_MSAT = 21_000
LIMITS = Limits(processing_notice=0.25, job_input_wait=5.0, input_timeout=5.0)


def text_stats(text: str) -> dict[str, Any]:
    """The digest providers' real work: a few facts about a text."""
    words = re.findall(r"[\w']+", text.lower())
    return {
        "characters": len(text),
        "lines": text.count("\n") + 1,
        "words": len(words),
        "top_words": [list(p) for p in collections.Counter(words).most_common(3)],
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


@dataclass(eq=False)
class Contender:
    """A digest provider the demo can stall (``hang``) and stop (``stop``)."""

    dvm: DVM
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    busy: asyncio.Event = field(default_factory=asyncio.Event)
    hang: bool = False


def digest_dvm(name: str, relay: str, *, eta: int, work: float) -> Contender:
    """A digest provider: stats of a text, or of the notes an ``e``-tag list names."""
    dvm = DVM(
        name=name,
        about=f"Word statistics of a text or of notes; says {eta} s",
        categories=[CATEGORY],
        relays=[relay],
        limits=LIMITS,
        offers=True,
        offer_eta=eta,
    )
    contender = Contender(dvm)

    @dvm.job
    async def digest(input: str) -> dict[str, Any]:
        if contender.hang:  # the demo kills this provider while it "works" on this job
            contender.hang = False
            contender.busy.set()
            await asyncio.Event().wait()
        await asyncio.sleep(work)
        ids = _note_ids(input)
        if ids is None:
            return text_stats(input)
        async with RelayPool(relays=[relay], fetch_info=False) as pool:
            found = {e.id: e.content for e in await pool.fetch({"ids": ids, "kinds": [1]})}
        return {"notes": len(found), **text_stats("\n".join(found[i] for i in ids if i in found))}

    return contender


@dataclass(eq=False)
class LightningDVM:
    """The priced digest DVM paid by bolt11: its account at the dev wallet takes the money."""

    dvm: DVM
    bank: DevWallet
    account: str  # the account's client pubkey (its URI is the DVM's secret)

    @property
    def balance_msat(self) -> int:
        return self.bank.balance(self.account)


@dataclass(eq=False)
class CashuDVM:
    """The priced digest DVM paid in ecash of one mint; its proofs are its balance."""

    dvm: DVM
    payments: CashuPayments

    @property
    def balance_sat(self) -> int:
        return self.payments.wallet.balance


def lightning_dvm(relay: str, bank: DevWallet) -> LightningDVM:
    """ "Lightning Digest": :data:`PRICE_MSAT` a job, by invoices of a fresh dev-wallet account."""
    uri = bank.create_account(name="Lightning Digest")
    # The wallet's payment_received notification wakes the check; the poll is the fallback.
    payments = NWCPayments(uri, poll_interval=0.5, timeout=10.0)
    dvm = priced_dvm("Lightning Digest", relay, payments, about="by bolt11 (NWC)")
    return LightningDVM(dvm, bank, uri.client)


def cashu_dvm(relay: str, mint_url: str) -> CashuDVM:
    """ "Ecash Digest": :data:`PRICE_MSAT` a job, in tokens of ``mint_url`` (kept in memory)."""
    payments = CashuPayments(mint_url=mint_url)
    dvm = priced_dvm("Ecash Digest", relay, payments, about=f"in Cashu of {mint_url}")
    return CashuDVM(dvm, payments)


def priced_dvm(name: str, relay: str, payments: PaymentProcessor, *, about: str) -> DVM:
    """A digest provider that runs a job only once ``payments`` confirms it was paid."""
    dvm = DVM(
        name=name,
        about=f"Word statistics of a text; {PRICE_MSAT // 1000} sat a job, {about}",
        categories=[PAID_CATEGORY],
        relays=[relay],
        limits=LIMITS,
        price_msat=PRICE_MSAT,
        payments=payments,
    )

    @dvm.job
    async def digest(input: str) -> dict[str, Any]:
        return text_stats(input)

    return dvm


def _note_ids(text: str) -> list[str] | None:
    """The ids of a NIP-90 ``e``-tag list result (search, trending), or None for plain text."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list) or not value:
        return None
    ids = [t[1] for t in value if isinstance(t, list) and len(t) > 1 and t[0] == "e"]
    return ids if len(ids) == len(value) and all(isinstance(i, str) for i in ids) else None


def dead_dvm_events(relay: str, now: int) -> list[Event]:
    """A DVM that announced itself and last beat 30 minutes ago (alive means ≤ 900 s)."""
    dvm = DVM(
        name="Old Translator",
        about="Translated text, once",
        categories=["translate"],
        relays=[relay],
        heartbeat_interval=3600,  # its last beat's NIP-40 expiry is still ahead of us
    )
    dvm.job(_never)
    return [dvm.announcement(now - 1800), dvm.heartbeat(now - 1800)]


async def _never(input: str) -> str:
    raise AssertionError("the dead DVM never runs")
