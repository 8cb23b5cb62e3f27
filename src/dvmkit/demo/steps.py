"""The customer's narrated steps: each prints what happens on stderr and returns its result.

:func:`run_step` runs one step under a deadline and writes its outcome as one JSON line on
stdout (``{"step", "ok", "result"|"error"}``); a failed step never stops the ones after it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from dvmkit.customer import Customer, Update, UpdateType
from dvmkit.customer import Job as CustomerJob
from dvmkit.demo.corpus import corpus
from dvmkit.demo.providers import (
    CATEGORY,
    PAID_CATEGORY,
    PRICE_MSAT,
    CashuDVM,
    Contender,
    LightningDVM,
)
from dvmkit.errors import DVMError
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.giftwrap import wrap_signed
from dvmkit.payments.cashu import CashuWallet
from dvmkit.payments.nwc import NWCClient

SEARCH_WORD = "lightning"
TRENDING_COUNT = 5
TEXT = (
    "Data Vending Machines take a job over Nostr, may ask to be paid, do the work and publish "
    "the result.\nOpen requests get offers; the customer picks one and the work gets done."
)
FAILOVER_TEXT = "A provider can vanish mid-job; the customer notices the silence and moves on."
PRIVATE_TEXT = "Whisper this one: gift-wrapped to the provider, the relay sees a sealed envelope."
PAID_TEXT = "Twenty-one sats for a digest: the invoice is paid before the work is done."
CASHU_TEXT = "Ecash pays this one: a token the provider swaps at its mint before it works."
#: What the customer's dev-wallet account starts with (msat), and its Cashu wallet (sat).
CUSTOMER_DEPOSIT_MSAT = 100_000
CUSTOMER_SATS = 100
STEP_SECONDS = 15.0
console = Console(stderr=True, highlight=False)


@dataclass(eq=False)
class Demo:
    """Everything a session's steps need: the relay, who is running, and the customer."""

    relay: str
    base: int
    names: dict[str, str]
    swift: Contender
    steady: Contender
    started: list[str]
    customer: Customer
    lightning: LightningDVM
    #: The Cashu-paid DVM, or why there is none (no mint).
    ecash: CashuDVM | str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def name(self, pubkey: str | None) -> str:
        return self.names.get(pubkey or "", (pubkey or "?")[:12])

    async def narrate(self, job: CustomerJob) -> list[Update]:
        """Print each update as it happens; return them all once the job has ended."""
        seen = []
        async for update in job.updates():
            seen.append(update)
            extra = ""
            if update.type is UpdateType.OFFER and update.event is not None:
                extra = f" {update.amount_msat} msat, eta {update.event.tag_value('eta')} s"
            elif update.type is UpdateType.CHOSEN:
                extra = f" ({update.content})"
            elif update.type is UpdateType.PAYMENT_REQUIRED:
                extra = f" {update.amount_msat} msat by {', '.join(update.methods) or 'bolt11'}"
            elif update.type is UpdateType.PAID:
                extra = f" {update.amount_msat} msat by {update.method}"
            who = f" [cyan]{self.name(update.dvm)}[/]" if update.dvm else ""
            console.print(f"    {update.type.value}{who}{extra}")
        return seen


async def step_seed(demo: Demo, accepted: list[bool]) -> dict[str, Any]:
    notes = sum(1 for e in corpus(demo.base) if e.kind == 1)
    console.print(
        f"    {sum(accepted)} of {len(accepted)} events stored: {notes} notes with reactions and"
        f" reposts (corpus base {demo.base}), and the dead DVM's last words"
    )
    if not all(accepted):
        raise DVMError(f"the relay refused {accepted.count(False)} of the seeded events")
    summary = f"{len(accepted)} events on {demo.relay}"
    return {
        "relay": demo.relay,
        "corpus_base": demo.base,
        "events": len(accepted),
        "summary": summary,
    }


async def step_discover(demo: Demo) -> dict[str, Any]:
    found = await demo.customer.discover()
    table = Table("", "name", "serves", "price", "last beat")
    for info in found:
        badge = "[green]live[/]" if info.alive else "[red]dead[/]"
        age = "never" if info.beat_age is None else f"{info.beat_age:.0f} s ago"
        serves = ", ".join([*info.categories, *map(str, info.kinds)])
        table.add_row(badge, info.name, serves, f"{info.price_msat} msat", age)
    console.print(table)
    live = sorted(i.name for i in found if i.alive)
    dead = sorted(i.name for i in found if not i.alive)
    if live != sorted(demo.started) or dead != ["Old Translator"]:
        raise DVMError(f"discovery saw live {live} and dead {dead}; started {demo.started}")
    summary = f"{len(live)} live, {len(dead)} dead ({', '.join(dead)})"
    return {"live": live, "dead": dead, "summary": summary}


async def step_offers(demo: Demo) -> dict[str, Any]:
    job = await demo.customer.request(CATEGORY, input=TEXT, choose="fastest")
    updates = await demo.narrate(job)
    result = await job.result(timeout=1)
    offers: list[dict[str, Any]] = [
        {"dvm": demo.name(u.dvm), "amount_msat": u.amount_msat, "eta": _eta(u)}
        for u in updates
        if u.type is UpdateType.OFFER
    ]
    chosen = next(demo.name(u.dvm) for u in updates if u.type is UpdateType.CHOSEN)
    table = Table("offer from", "price", "eta", "")
    for offer in offers:
        mark = "[green]chosen[/]" if offer["dvm"] == chosen else ""
        table.add_row(offer["dvm"], f"{offer['amount_msat']} msat", f"{offer['eta']} s", mark)
    console.print(table)
    content = _content(result)
    summary = f"{len(offers)} offers; chose {chosen} (fastest): {_words(content)}"
    return {
        "offers": offers,
        "chosen": chosen,
        "by": demo.name(result.dvm),
        **content,
        "summary": summary,
    }


async def step_legacy(demo: Demo) -> dict[str, Any]:
    job = await demo.customer.request(
        5302, input=SEARCH_WORD, params={"max_results": "100"}, legacy=True
    )
    await demo.narrate(job)
    result = await job.result(timeout=1)
    ids = [tag[1] for tag in orjson.loads(result.content)]
    console.print(f"    kind {result.event.kind}: {len(ids)} notes mention {SEARCH_WORD!r}")
    summary = f"kind {result.event.kind} from {demo.name(result.dvm)}: {len(ids)} notes"
    return {"kind": result.event.kind, "by": demo.name(result.dvm), "ids": ids, "summary": summary}


async def step_chain(demo: Demo) -> dict[str, Any]:
    trending = await demo.customer.request(
        5300, params={"max_results": str(TRENDING_COUNT)}, legacy=True
    )
    await demo.narrate(trending)
    first = await trending.result(timeout=1)
    ids = [tag[1] for tag in orjson.loads(first.content)]
    console.print(f"    trending: {len(ids)} notes; now a digest of that job's result")
    job = await demo.customer.request(
        CATEGORY, input=trending.id, input_type="job", choose="fastest"
    )
    await demo.narrate(job)
    result = await job.result(timeout=1)
    content = _content(result)
    summary = f"{len(ids)} trending notes, digested by {demo.name(result.dvm)}: {_words(content)}"
    return {"trending": ids, "by": demo.name(result.dvm), **content, "summary": summary}


async def step_private(demo: Demo) -> dict[str, Any]:
    """A private job, watched by an observer that reads every gift wrap on the relay."""
    pool = demo.customer.pool
    me = demo.customer.keys
    # Relays pass events on in order: once a marker sent after the job is seen, so is the job.
    marker = wrap_signed(sign_event(me, kind=1, content="end of the job"), me.public_key)
    seen: list[bytes] = []
    listening, marked = asyncio.Event(), asyncio.Event()

    async def observe() -> None:
        async with pool.subscribe({"kinds": [21059]}) as sub:
            await sub.wait_stored()
            listening.set()
            async for event in sub:
                if event.id == marker.id:
                    marked.set()
                else:
                    seen.append(event.to_json_bytes())

    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(observe())
        await listening.wait()
        job = await demo.customer.request(
            CATEGORY, input=PRIVATE_TEXT, encrypt=True, choose="fastest"
        )
        await demo.narrate(job)
        result = await job.result(timeout=1)
        await pool.publish(marker, wait="all")
        await marked.wait()
        watcher.cancel()
    leaked = [raw for raw in seen if PRIVATE_TEXT.encode() in raw or job.id.encode() in raw]
    console.print(
        f"    an observer on the relay saw {len(seen)} gift wraps (kind 21059), each from a "
        f"one-time key; the text in {len(leaked)} of them"
    )
    if leaked or not seen:
        raise DVMError("the private job's text or id was readable on the relay")
    content = _content(result)
    return {
        "by": demo.name(result.dvm),
        "wraps_seen": len(seen),
        "leaked": len(leaked),
        **content,
        "summary": f"{demo.name(result.dvm)} answered in {len(seen) - 1} wraps, none readable: "
        + _words(content),
    }


async def step_failover(demo: Demo, kill: Callable[[Contender], Awaitable[None]]) -> dict[str, Any]:
    demo.swift.hang = True
    job = await demo.customer.request(
        CATEGORY, input=FAILOVER_TEXT, choose="fastest", silence_timeout=2.0
    )
    async with asyncio.TaskGroup() as tg:
        watched = tg.create_task(demo.narrate(job))
        async with asyncio.timeout(5):
            await demo.swift.busy.wait()
        console.print(f"    [red]killing {demo.swift.dvm.name} mid-job[/]")
        await kill(demo.swift)
    updates = watched.result()
    result = await job.result(timeout=1)
    chosen = next(demo.name(u.dvm) for u in updates if u.type is UpdateType.CHOSEN)
    moved = [demo.name(u.dvm) for u in updates if u.type is UpdateType.FAILOVER]
    content = _content(result)
    return {
        "chosen": chosen,
        "killed": demo.swift.dvm.name,
        "failover": moved,
        "by": demo.name(result.dvm),
        **content,
        "summary": f"{demo.swift.dvm.name} killed; {demo.name(result.dvm)} answered: "
        + _words(content),
    }


async def step_paid(demo: Demo) -> dict[str, Any]:
    """A priced DVM paid by bolt11 from the customer's own dev-wallet account, over NWC."""
    seller = demo.lightning
    bank = seller.bank
    uri = bank.create_account(name="demo customer", deposit_msat=CUSTOMER_DEPOSIT_MSAT)
    name = seller.dvm.name
    console.print(
        f"    the dev wallet opens the customer an account with {CUSTOMER_DEPOSIT_MSAT} msat;"
        f" {name} asks {PRICE_MSAT} msat a job; the customer pays up to {PRICE_MSAT}"
    )
    customer_before, dvm_before = bank.balance(uri.client), seller.balance_msat
    async with (
        NWCClient(uri, timeout=10.0) as wallet,
        Customer(relays=[demo.relay], wallet=wallet, timeouts=demo.customer.timeouts) as buyer,
    ):
        job = await buyer.request(
            PAID_CATEGORY, input=PAID_TEXT, to=seller.dvm.public_key, max_price_msat=PRICE_MSAT
        )
        updates = await demo.narrate(job)
        result = await job.result(timeout=1)
    customer_after, dvm_after = bank.balance(uri.client), seller.balance_msat
    paid = _paid(updates)
    console.print(
        f"    customer {customer_before} → {customer_after} msat; "
        f"{name} {dvm_before} → {dvm_after} msat"
    )
    if paid != [(PRICE_MSAT, "bolt11")]:
        raise DVMError(f"the customer paid {paid}, not {PRICE_MSAT} msat once by bolt11")
    if customer_before - customer_after != PRICE_MSAT or dvm_after - dvm_before != PRICE_MSAT:
        raise DVMError(
            f"the balances moved by {customer_after - customer_before} msat (customer) and "
            f"{dvm_after - dvm_before} msat ({name}), not by the price, {PRICE_MSAT} msat"
        )
    content = _content(result)
    return {
        "by": demo.name(result.dvm),
        "price_msat": PRICE_MSAT,
        "paid_msat": paid[0][0],
        "method": paid[0][1],
        "customer_msat": {"before": customer_before, "after": customer_after},
        "dvm_msat": {"before": dvm_before, "after": dvm_after},
        **content,
        "summary": f"paid {name} {PRICE_MSAT} msat by bolt11 (NWC): customer "
        f"{customer_before} → {customer_after} msat; " + _words(content),
    }


async def step_cashu(demo: Demo) -> dict[str, Any]:
    """A priced DVM paid with a Cashu token minted at the demo's mint."""
    seller = demo.ecash
    if isinstance(seller, str):
        raise DVMError(seller)
    name, mint_url = seller.dvm.name, seller.payments.mint_url
    wallet = CashuWallet(mint_url=mint_url)
    await wallet.mint(await wallet.request_mint(CUSTOMER_SATS))
    price_sat = PRICE_MSAT // 1000
    console.print(
        f"    the customer mints {wallet.balance} sat at {mint_url} (its FakeWallet pays the"
        f" quote); {name} asks {price_sat} sat in tokens of that mint"
    )
    customer_before, dvm_before = wallet.balance, seller.balance_sat
    async with Customer(
        relays=[demo.relay], cashu=wallet, timeouts=demo.customer.timeouts
    ) as buyer:
        job = await buyer.request(
            PAID_CATEGORY, input=CASHU_TEXT, to=seller.dvm.public_key, max_price_msat=PRICE_MSAT
        )
        updates = await demo.narrate(job)
        result = await job.result(timeout=1)
    customer_after, dvm_after = wallet.balance, seller.balance_sat
    paid = _paid(updates)
    console.print(
        f"    customer {customer_before} → {customer_after} sat; "
        f"{name}'s ecash {dvm_before} → {dvm_after} sat"
    )
    if paid != [(PRICE_MSAT, "cashu")]:
        raise DVMError(f"the customer paid {paid}, not {price_sat} sat once in Cashu")
    if customer_before - customer_after != price_sat or dvm_after - dvm_before != price_sat:
        raise DVMError(
            f"the ecash moved by {customer_after - customer_before} sat (customer) and "
            f"{dvm_after - dvm_before} sat ({name}), not by the price, {price_sat} sat"
        )
    content = _content(result)
    return {
        "by": demo.name(result.dvm),
        "mint": mint_url,
        "paid_sat": price_sat,
        "method": paid[0][1],
        "customer_sat": {"before": customer_before, "after": customer_after},
        "dvm_sat": {"before": dvm_before, "after": dvm_after},
        **content,
        "summary": f"paid {name} {price_sat} sat in Cashu; its ecash is {dvm_after} sat: "
        + _words(content),
    }


def _paid(updates: list[Update]) -> list[tuple[int | None, str | None]]:
    return [(u.amount_msat, u.method) for u in updates if u.type is UpdateType.PAID]


def _eta(update: Update) -> int | None:
    text = update.event.tag_value("eta") if update.event is not None else None
    return int(text) if text is not None and text.isdigit() else None


def _content(result: Any) -> dict[str, Any]:
    return {"result": orjson.loads(result.content)}


def _words(content: dict[str, Any]) -> str:
    stats = content["result"]
    top = ", ".join(f"{w} ×{n}" for w, n in stats["top_words"])
    return f"{stats['words']} words, top {top}"


async def run_step(demo: Demo, name: str, title: str, body: Awaitable[Any]) -> None:
    """Run one step, print its outcome and its JSON line; a failure never stops the rest."""
    console.rule(f"[bold]{title}")
    line: dict[str, Any] = {"step": name}
    try:
        async with asyncio.timeout(STEP_SECONDS):
            result = await body
        line.update(ok=True, result=result)
        console.print(f"  [green]✓[/] {name}")
    except (DVMError, TimeoutError) as exc:
        reason = str(exc) or "timed out"
        line.update(ok=False, error=reason)
        console.print(f"  [red]✗ {name}: {reason}[/]")
    demo.steps.append(line)
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()
