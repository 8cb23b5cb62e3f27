"""The demo session: start the mint, the relay, the dev wallet and the DVMs, run the steps, then
serve or exit.

``run`` owns every task and process it starts (one TaskGroup: the relay's and the dev wallet's
lifetimes bound the DVMs'; the mint outlives them all); ``main`` is the command-line entry,
which reads ``--mint-bin`` or ``$DVMKIT_MINT_BIN`` and turns SIGINT/SIGTERM into a clean
cancellation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
from rich.table import Table

from dvmkit import dvms
from dvmkit.customer import Customer, CustomerTimeouts
from dvmkit.demo.corpus import corpus, demo_keys
from dvmkit.demo.mint import DEFAULT_MINT_BIN, DemoMint, mint_binary
from dvmkit.demo.providers import (
    LIMITS,
    PRICE_MSAT,
    CashuDVM,
    Contender,
    cashu_dvm,
    dead_dvm_events,
    digest_dvm,
    lightning_dvm,
)
from dvmkit.demo.steps import (
    SEARCH_WORD,
    Demo,
    console,
    run_step,
    step_cashu,
    step_chain,
    step_discover,
    step_failover,
    step_legacy,
    step_offers,
    step_paid,
    step_private,
    step_seed,
)
from dvmkit.errors import DVMError, RelayError
from dvmkit.payments.devwallet import DevWallet
from dvmkit.provider import DVM
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

DEFAULT_PORT = 10547
TIMEOUTS = CustomerTimeouts(connect=5.0, discover=2.0, offer_window=0.5, silence=4.0)


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


async def _serve(dvm: DVM, stop: asyncio.Event, ready: asyncio.Future[None]) -> None:
    try:
        async with dvm.running():
            ready.set_result(None)
            await stop.wait()
    except DVMError as exc:
        if ready.done():
            raise
        ready.set_exception(exc)  # it never started: whoever waits for it is told why


async def run(
    *,
    once: bool,
    port: int = DEFAULT_PORT,
    without: Sequence[str] = (),
    mint_bin: Path = DEFAULT_MINT_BIN,
) -> int:
    """The whole demo; returns the exit code (0 when every step succeeded).

    Args:
        once: run the session and return, instead of serving until cancelled.
        port: the relay's port (10547 by default; a random one when busy, or with 0).
        without: built-in DVMs not to start (to see a step fail).
        mint_bin: nutshell's ``mint``, started for the Cashu step (which fails, naming it,
            when it is missing).
    """
    base = int(time.time()) - 3600
    # The mint boots (1-2 s) while the relay, the wallet and the DVMs start.
    async with (
        DemoMint(mint_bin) as mint,
        open_relay(port) as relay,
        DevWallet(relays=[relay.url]) as bank,
        asyncio.TaskGroup() as tg,
    ):
        url = relay.url
        console.print(f"[bold]dvmkit relay[/] on {url} (events in memory)")
        console.print(f"[bold]dev wallet[/] (NIP-47, in memory) {bank.pubkey[:12]} on {url}")
        events = [*corpus(base), *dead_dvm_events(url, int(time.time()))]
        async with RelayPool(relays=[url], fetch_info=False) as pool:
            accepted = [(await pool.publish(event)).ok for event in events]
        swift = digest_dvm("Swift Digest", url, eta=1, work=0.05)
        steady = digest_dvm("Steady Digest", url, eta=3, work=0.4)
        lightning = lightning_dvm(url, bank)
        waiting: list[tuple[DVM, asyncio.Event]] = [
            (swift.dvm, swift.stop),
            (steady.dvm, steady.stop),
            (lightning.dvm, asyncio.Event()),
        ]
        for name in dvms.BUILTINS:
            if name not in without:
                waiting.append((dvms.build(name, relays=[url], limits=LIMITS), asyncio.Event()))
        running: list[tuple[DVM, asyncio.Event]] = []
        serving: dict[DVM, asyncio.Task[None]] = {}

        async def start(dvm: DVM, stop: asyncio.Event) -> None:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            serving[dvm] = tg.create_task(_serve(dvm, stop, ready), name=dvm.name)
            await ready
            running.append((dvm, stop))

        for dvm, stop in waiting:
            await start(dvm, stop)
        ecash: CashuDVM | str
        try:
            ecash = cashu_dvm(url, await mint.url())
            await start(ecash.dvm, asyncio.Event())
        except DVMError as exc:
            ecash = str(exc)
            console.print(f"[yellow]Cashu mint[/]: {exc}")
        else:
            console.print(
                f"[bold]Cashu mint[/] (nutshell, FakeWallet) on {ecash.payments.mint_url}"
            )

        async def kill(contender: Contender) -> None:
            contender.stop.set()
            await serving[contender.dvm]

        names = {dvm.public_key: dvm.name for dvm, _ in running}
        started = [dvm.name for dvm, _ in running]
        async with Customer(relays=[url], timeouts=TIMEOUTS) as customer:
            demo = Demo(
                relay=url,
                base=base,
                names=names,
                swift=swift,
                steady=steady,
                started=started,
                customer=customer,
                lightning=lightning,
                ecash=ecash,
            )
            await run_step(demo, "seed", "the relay and its corpus", step_seed(demo, accepted))
            await run_step(demo, "discover", "who is out there", step_discover(demo))
            await run_step(demo, "offers", "an open request: offers, a winner", step_offers(demo))
            await run_step(demo, "legacy", "a legacy NIP-90 search (kind 5302)", step_legacy(demo))
            await run_step(
                demo, "chain", "a chained job: trending, then its digest", step_chain(demo)
            )
            await run_step(
                demo, "private", "a private job: only gift wraps on the relay", step_private(demo)
            )
            await run_step(demo, "failover", "a provider dies mid-job", step_failover(demo, kill))
            sats = PRICE_MSAT // 1000
            await run_step(
                demo, "paid", f"a paid job: {sats} sat by bolt11, over NWC", step_paid(demo)
            )
            await run_step(
                demo, "cashu", f"a paid job: {sats} sat in Cashu ecash", step_cashu(demo)
            )
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
    argv: Sequence[str] | None = None,
    *,
    once: bool | None = None,
    port: int | None = None,
    mint_bin: str | None = None,
) -> int:
    """Run the demo from the command line
    (``python -m dvmkit.demo [--once] [--port N] [--mint-bin PATH]``).

    The mint is ``mint_bin`` (``--mint-bin``), else ``$DVMKIT_MINT_BIN``, else
    ``.venv-mint/bin/mint`` in the current directory (what ``make mint`` makes).
    """
    if once is None or port is None:
        parser = argparse.ArgumentParser(prog="dvm demo")
        parser.add_argument("--once", action="store_true")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        parser.add_argument("--mint-bin", help="nutshell's mint (default .venv-mint/bin/mint)")
        args = parser.parse_args(argv)
        once, port, mint_bin = args.once, args.port, args.mint_bin
    binary = mint_binary(mint_bin)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await run(once=bool(once), port=int(port), mint_bin=binary)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        console.print("stopped")
        return 0
