"""``make demo``: DVMs at work over dvmkit's own relay, every step real.

Act one: a DVM written with the provider framework (one typed handler) announces itself and
answers a legacy NIP-90 request, a modern open request by category, and a request with a bad
param, each in its own dialect.

Act two, a private job, shows the encryption core working (the provider framework learns
gift wraps in a later issue; here the provider is written by hand on the relay pool):

1. dvmkit's relay starts on a random loopback port (SQLite in memory);
2. a provider listens for kind-21059 gift wraps addressed to it;
3. a customer signs a modern kind-25000 job request (category ``text-stats``) and wraps it
   (NIP-44, a one-time key) so only the provider can read it;
4. the provider unwraps it, verifies who sent it, does the work (word, line and character
   counts, the most frequent words, a sha256 of the text) and wraps ``processing`` and
   ``success`` back to the customer;
5. the customer unwraps the answer and checks it came from the provider's key;
6. an observer that subscribed to everything on the relay confirms it never saw the text.

The result goes to stdout as one JSON line; the story goes to stderr.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import re
import sys

import orjson
from rich.console import Console
from rich.markup import escape

from dvmkit.nostr import giftwrap
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.announce import parse_announcement
from dvmkit.protocol.heartbeat import parse_heartbeat
from dvmkit.provider import DVM
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

JOB_KIND = 25000
WRAP_KIND = giftwrap.EPHEMERAL_GIFT_WRAP_KIND
CATEGORY = "text-stats"
TEXT = (
    "Data Vending Machines take a job over Nostr, may ask to be paid, do the work and publish "
    "the result.\nThis job is private: the relay and every observer see only ciphertext, and "
    "the answer is signed by the machine that did the work."
)
console = Console(stderr=True, highlight=False)


def text_stats(text: str) -> dict[str, object]:
    """The demo's real work: a few facts about a text."""
    words = re.findall(r"[\w']+", text.lower())
    return {
        "characters": len(text),
        "lines": text.count("\n") + 1,
        "words": len(words),
        "top_words": collections.Counter(words).most_common(3),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def answer(provider: Keys, request: Event, status: str, content: str = "") -> Event:
    """A status or result about ``request``, in the modern dialect (DESIGN.md §4.2)."""
    return sign_event(
        provider,
        kind=JOB_KIND,
        content=content,
        tags=[
            ["e", request.id],
            ["p", request.pubkey],
            ["category", CATEGORY],
            ["status", status],
        ],
    )


async def provide(pool: RelayPool, provider: Keys, ready: asyncio.Event) -> None:
    """Serve exactly one job: unwrap, verify, work, answer."""
    async with pool.subscribe(
        {"kinds": [WRAP_KIND], "#p": [provider.public_key]}, rewrite_since=False
    ) as sub:
        await sub.wait_stored()  # the relay has the REQ: nothing sent from now on is missed
        ready.set()
        async for wrap in sub:
            opened = giftwrap.unwrap(wrap, provider)
            request = opened.inner
            if not isinstance(request, Event) or request.kind != JOB_KIND:
                continue
            console.print(f"[cyan]provider[/] job {request.id[:12]}… from {opened.sender[:12]}…")
            text = request.tag_value("i") or request.content
            for status, content in (
                ("processing", ""),
                ("success", orjson.dumps(text_stats(text)).decode()),
            ):
                reply = giftwrap.wrap_signed(
                    answer(provider, request, status, content), request.pubkey
                )
                await pool.publish(reply)
                console.print(f"[cyan]provider[/] sent {status}")
            return


async def observe(pool: RelayPool, seen: list[Event], ready: asyncio.Event, count: int) -> None:
    """Record every event on the relay until ``count`` have gone by."""
    async with pool.subscribe({"limit": 0}) as sub:
        await sub.wait_stored()
        ready.set()
        async for event in sub:
            seen.append(event)
            if len(seen) == count:
                return


LEGACY_KIND = 5999  # nostrdvm's "generic" kind: text stats has no registry entry


def stats_dvm(relay: str) -> DVM:
    """Act one's DVM: the whole of what a developer writes."""
    dvm = DVM(
        name="Text Stats",
        about="Counts characters, lines and words, and names the most frequent words",
        categories=[CATEGORY],
        legacy_kinds=[LEGACY_KIND],
        relays=[relay],
    )

    @dvm.job
    async def stats(input: str, top: int = 3) -> dict[str, object]:
        result = text_stats(input)
        result["top_words"] = collections.Counter(re.findall(r"[\w']+", input.lower())).most_common(
            top
        )
        return result

    return dvm


async def act_one(relay: str) -> dict[str, object]:
    """A framework DVM answers both dialects, and an error, each in the request's dialect."""
    console.print("[bold]act one[/]: a DVM written with dvmkit's provider framework")
    dvm = stats_dvm(relay)
    customer = Keys.generate()
    answers: dict[str, object] = {}
    async with (
        dvm.running(),
        RelayPool(relays=[relay]) as pool,
        pool.subscribe({"#p": [customer.public_key]}) as replies,
    ):
        await replies.wait_stored()
        found = await pool.fetch({"kinds": [11999, 11998], "authors": [dvm.public_key]})
        for event in found:
            if event.kind == 11999:
                ann = parse_announcement(event)
                params = sorted(ann.params.get("properties", {}))
                console.print(
                    f"  announced [cyan]{ann.name}[/]: {list(ann.categories)}, params {params}"
                )
            else:
                beat = parse_heartbeat(event)
                console.print(f"  heartbeat: {beat.status}, load {beat.load}, queue {beat.queue}")
        requests = {
            "legacy": sign_event(
                customer,
                kind=LEGACY_KIND,
                tags=[["i", TEXT, "text"], ["param", "top", "2"], ["p", dvm.public_key]],
            ),
            "modern": sign_event(
                customer,
                kind=JOB_KIND,
                content=TEXT,
                tags=[["t", CATEGORY], ["category", CATEGORY]],
            ),
            "bad param": sign_event(
                customer,
                kind=JOB_KIND,
                content=TEXT,
                tags=[["t", CATEGORY], ["category", CATEGORY], ["param", "top", "lots"]],
            ),
        }
        names = {event.id: name for name, event in requests.items()}
        for event in requests.values():
            await pool.publish(event)
        async with asyncio.timeout(10):
            async for reply in replies:
                name = names.get(reply.tag_value("e") or "")
                status = reply.tag("status")
                if name is None or (reply.kind == 7000 and status and status[1] != "error"):
                    continue
                if status is not None and status[1] == "processing":
                    continue
                shown = reply.content if reply.content else " ".join(status or ())
                console.print(f"  {name}: kind {reply.kind} → {escape(shown[:70])}")
                answers[name] = {
                    "kind": reply.kind,
                    "status": list(status or ()),
                    "content": reply.content,
                }
                if len(answers) == len(requests):
                    break
    return answers


async def run_demo() -> dict[str, object]:
    provider, customer = Keys.generate(), Keys.generate()
    async with Relay(port=0) as relay:
        console.print(f"[bold]dvmkit relay[/] listening on {relay.url}")
        framework = await act_one(relay.url)
        console.print("[bold]act two[/]: a private job, gift-wrapped end to end")
        async with (
            RelayPool(relays=[relay.url], signer=provider) as provider_pool,
            RelayPool(relays=[relay.url], signer=customer) as customer_pool,
            RelayPool(relays=[relay.url]) as observer_pool,
            asyncio.TaskGroup() as tg,
        ):
            seen: list[Event] = []
            provider_ready, observer_ready = asyncio.Event(), asyncio.Event()
            # The relay will carry three wraps: the request, processing and success.
            watcher = tg.create_task(observe(observer_pool, seen, observer_ready, 3))
            server = tg.create_task(provide(provider_pool, provider, provider_ready))
            await provider_ready.wait()
            await observer_ready.wait()

            request = sign_event(
                customer,
                kind=JOB_KIND,
                tags=[
                    ["category", CATEGORY],
                    ["t", CATEGORY],
                    ["i", TEXT, "text"],
                    ["p", provider.public_key],
                ],
            )
            async with customer_pool.subscribe(
                {"kinds": [WRAP_KIND], "#p": [customer.public_key]}, rewrite_since=False
            ) as replies:
                await replies.wait_stored()
                outcome = await customer_pool.publish(
                    giftwrap.wrap_signed(request, provider.public_key)
                )
                console.print(
                    f"[green]customer[/] sent wrapped job {request.id[:12]}… "
                    f"({', '.join(o.status for o in outcome.outcomes.values())})"
                )
                async with asyncio.timeout(10):
                    async for wrap in replies:
                        opened = giftwrap.unwrap(wrap, customer)
                        reply = opened.inner
                        if opened.sender != provider.public_key or not isinstance(reply, Event):
                            console.print(
                                "[red]customer[/] ignored an answer not from the provider"
                            )
                            continue
                        status = reply.tag_value("status")
                        console.print(f"[green]customer[/] got {status} (signed by the provider)")
                        if status == "success":
                            result = orjson.loads(reply.content)
                            break
            await server
            async with asyncio.timeout(10):
                await watcher

    leaked = [
        e.id
        for e in seen
        if TEXT[:40] in e.content or any(TEXT[:40] in v for t in e.tags for v in t)
    ]
    console.print(
        f"[magenta]observer[/] saw {len(seen)} events on the relay; "
        f"{'none' if not leaked else len(leaked)} contained the job's text"
    )
    return {
        "framework": framework,
        "job": request.id,
        "provider": provider.public_key,
        "result": result,
        "observer_events": len(seen),
        "observer_saw_plaintext": bool(leaked),
    }


def main() -> None:
    summary = asyncio.run(run_demo())
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
