"""``dvm demo`` (what ``make demo`` runs): a small DVM economy on this machine, every part real.

1. dvmkit's relay starts on 127.0.0.1:10547 when free (so plain ``dvm ask`` finds it), else on
   a random port (the demo says which), with events in memory;
2. it is seeded with a generated corpus (:func:`corpus`: notes, reactions and reposts from
   fixed keys; no downloads);
3. the built-in DVMs start (echo, pow, search, count, trending), plus two competing ``digest``
   providers, both free, that bid on open requests with different ETAs (``DVM(offers=True)``):
   Swift (1 s) and Steady (3 s); and one DVM is "started dead": its announcement and a
   heartbeat 30 minutes old are published, and nothing runs;
4. a customer (:class:`dvmkit.customer.Customer`) narrates on stderr: discovery with live/dead
   badges; an open request whose offers are compared and a winner chosen; a legacy NIP-90
   search; a chained job (a digest of the legacy trending job's result, ``["i", id, "job"]``);
   a provider killed mid-job and the customer failing over; the results.

Each step's outcome is one JSON line on stdout (``{"step", "ok", "result"|"error"}``). Then the
demo keeps serving and prints ``dvm ask`` commands to try, until Ctrl-C; with ``--once`` it
exits instead: 0 when every step succeeded, 1 naming the failed steps otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import random
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from dvmkit import dvms
from dvmkit.customer import Customer, CustomerTimeouts, Update, UpdateType
from dvmkit.customer import Job as CustomerJob
from dvmkit.errors import DVMError, RelayError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM, Limits
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

DEFAULT_PORT = 10547
CATEGORY = "digest"
BUILTINS = ("echo", "pow", "search", "count", "trending")
SEARCH_WORD = "lightning"
TRENDING_COUNT = 5
TEXT = (
    "Data Vending Machines take a job over Nostr, may ask to be paid, do the work and publish "
    "the result.\nOpen requests get offers; the customer picks one and the work gets done."
)
FAILOVER_TEXT = "A provider can vanish mid-job; the customer notices the silence and moves on."
_VOCAB = [
    *("bitcoin", "nostr", "relays", "zaps", "coffee", "lightning", "privacy", "music"),
    *("python", "machines", "keys", "notes", "clients", "wallets", "mining", "search"),
    *("trending", "freedom", "code", "garden"),
]
_TIMEOUTS = CustomerTimeouts(connect=5.0, discover=2.0, offer_window=0.5, silence=4.0)
_LIMITS = Limits(processing_notice=0.25, job_input_wait=5.0, input_timeout=5.0)
STEP_SECONDS = 15.0
console = Console(stderr=True, highlight=False)


# -- the corpus -------------------------------------------------------------------------------


def demo_keys(n: int) -> Keys:
    """The demo's n-th fixed author key (derived, so the corpus is the same every run)."""
    return Keys.parse(hashlib.sha256(f"dvmkit demo author {n}".encode()).hexdigest())


def corpus(base: int) -> list[Event]:
    """40 notes from 6 authors dated from ``base``, then reactions and reposts of them.

    Deterministic for a given ``base``: the demo prints its base, so its results can be
    recomputed from the same events.
    """
    rng = random.Random(90)
    authors = [demo_keys(n) for n in range(6)]
    notes = []
    for n in range(40):
        words = rng.sample(_VOCAB, 6)
        content = f"note {n}: " + " ".join(words)
        notes.append(sign_event(authors[n % 6], kind=1, content=content, created_at=base + n * 60))
    engagement = []
    for n, note in enumerate(notes):
        for r in range((n * 7) % 9):
            reactor = authors[(n + r + 1) % 6]
            tags = [["e", note.id], ["p", note.pubkey]]
            at = note.created_at + r + 1
            engagement.append(sign_event(reactor, kind=7, content="+", tags=tags, created_at=at))
        if n % 5 == 0:
            tags = [["e", note.id], ["p", note.pubkey]]
            engagement.append(
                sign_event(authors[(n + 2) % 6], kind=6, tags=tags, created_at=note.created_at + 30)
            )
    return notes + engagement


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


# -- the competing providers ------------------------------------------------------------------


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
        limits=_LIMITS,
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


# -- the session --------------------------------------------------------------------------------


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


# -- running --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_relay(port: int) -> AsyncIterator[Relay]:
    """Our relay on ``port`` if free, else on a random port."""
    relay = Relay(port=port)
    try:
        await relay.__aenter__()
    except RelayError:
        if port == 0:
            raise
        console.print(f"[yellow]port {port} is busy[/]: using a random port instead")
        relay = Relay(port=0)
        await relay.__aenter__()
    try:
        yield relay
    finally:
        await relay.__aexit__(None, None, None)


async def _serve(dvm: DVM, stop: asyncio.Event, ready: asyncio.Event) -> None:
    async with dvm.running():
        ready.set()
        await stop.wait()


async def run(*, once: bool, port: int = DEFAULT_PORT, without: Sequence[str] = ()) -> int:
    """The whole demo; returns the exit code (0 when every step succeeded).

    Args:
        once: run the session and return, instead of serving until cancelled.
        port: the relay's port (10547 by default; a random one when busy, or with 0).
        without: built-in DVMs not to start (to see a step fail).
    """
    base = int(time.time()) - 3600
    async with open_relay(port) as relay, asyncio.TaskGroup() as tg:
        url = relay.url
        console.print(f"[bold]dvmkit relay[/] on {url} (events in memory)")
        events = [*corpus(base), *dead_dvm_events(url, int(time.time()))]
        async with RelayPool(relays=[url], fetch_info=False) as pool:
            accepted = [(await pool.publish(event)).ok for event in events]
        swift = digest_dvm("Swift Digest", url, eta=1, work=0.05)
        steady = digest_dvm("Steady Digest", url, eta=3, work=0.4)
        running: list[tuple[DVM, asyncio.Event]] = [
            (swift.dvm, swift.stop),
            (steady.dvm, steady.stop),
        ]
        for name in BUILTINS:
            if name not in without:
                running.append((dvms.build(name, relays=[url], limits=_LIMITS), asyncio.Event()))
        serving: dict[DVM, asyncio.Task[None]] = {}
        for dvm, stop in running:
            ready = asyncio.Event()
            serving[dvm] = tg.create_task(_serve(dvm, stop, ready), name=dvm.name)
            await ready.wait()

        async def kill(contender: Contender) -> None:
            contender.stop.set()
            await serving[contender.dvm]

        names = {dvm.public_key: dvm.name for dvm, _ in running}
        started = [dvm.name for dvm, _ in running]
        async with Customer(relays=[url], timeouts=_TIMEOUTS) as customer:
            demo = Demo(url, base, names, swift, steady, started, customer)
            await run_step(demo, "seed", "the relay and its corpus", step_seed(demo, accepted))
            await run_step(demo, "discover", "who is out there", step_discover(demo))
            await run_step(demo, "offers", "an open request: offers, a winner", step_offers(demo))
            await run_step(demo, "legacy", "a legacy NIP-90 search (kind 5302)", step_legacy(demo))
            await run_step(
                demo, "chain", "a chained job: trending, then its digest", step_chain(demo)
            )
            await run_step(demo, "failover", "a provider dies mid-job", step_failover(demo, kill))
        failed = [s["step"] for s in demo.steps if not s["ok"]]
        _summary(demo)
        if not once:
            await _serve_forever(url, port_used=relay.url.endswith(f":{DEFAULT_PORT}"))
        for _dvm, stop in running:
            stop.set()
    if failed:
        console.print(f"[red]demo failed at step(s): {', '.join(failed)}[/]")
        return 1
    return 0


def _summary(demo: Demo) -> None:
    table = Table("step", "", "outcome")
    for line in demo.steps:
        outcome = line["result"]["summary"] if line["ok"] else line["error"]
        table.add_row(line["step"], "[green]✓[/]" if line["ok"] else "[red]✗[/]", outcome)
    console.rule("[bold]results")
    console.print(table)


async def _serve_forever(url: str, *, port_used: bool) -> None:
    relay = "" if port_used else f" {url}"
    template = {"pubkey": demo_keys(0).public_key, "created_at": int(time.time())}
    template.update(kind=1, tags=[], content="mine me")
    note = shlex.quote(orjson.dumps(template).decode())
    commands = [
        f"dvm discover{relay}",
        f"dvm ask echo hello{relay}",
        f'dvm ask digest "some text to digest" --choose fastest{relay}',
        f"dvm ask 5302 {SEARCH_WORD} --legacy{relay}",
        f"dvm ask discovery --param max_results=3{relay}",
        f"dvm ask count '{{\"kinds\": [7]}}'{relay}",
        f"dvm ask pow {note} --param difficulty=12{relay}",
    ]
    console.rule("[bold]your turn")
    console.print("The DVMs keep running. Try, in another terminal:")
    for command in commands:
        console.print(f"  [bold]{command}[/]", soft_wrap=True)
    console.print("Ctrl-C stops the demo.")
    await asyncio.Event().wait()


def main(
    argv: Sequence[str] | None = None, *, once: bool | None = None, port: int | None = None
) -> int:
    """Run the demo from the command line (``python -m dvmkit.demo [--once] [--port N]``)."""
    if once is None or port is None:
        parser = argparse.ArgumentParser(prog="dvm demo")
        parser.add_argument("--once", action="store_true")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        args = parser.parse_args(argv)
        once, port = args.once, args.port

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await run(once=bool(once), port=int(port))

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        console.print("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
