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
from dvmkit.demo.providers import CATEGORY, Contender
from dvmkit.errors import DVMError
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.giftwrap import wrap_signed

SEARCH_WORD = "lightning"
TRENDING_COUNT = 5
TEXT = (
    "Data Vending Machines take a job over Nostr, may ask to be paid, do the work and publish "
    "the result.\nOpen requests get offers; the customer picks one and the work gets done."
)
FAILOVER_TEXT = "A provider can vanish mid-job; the customer notices the silence and moves on."
PRIVATE_TEXT = "Whisper this one: gift-wrapped to the provider, the relay sees a sealed envelope."
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
