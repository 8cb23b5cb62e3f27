"""``dvm relay``: run dvmkit's own Nostr relay until interrupted.

The first line on stdout is the relay's ``ws://`` URL (so scripts can read it and connect);
logs go to stderr. SIGINT and SIGTERM stop it cleanly, after the last acknowledged events are
committed.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import typer

from dvmkit.errors import RelayError

DEFAULT_DB = Path(".dvmkit") / "relay.sqlite3"


def relay_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(10547, help="TCP port; 0 picks a free one."),
    db: Path | None = typer.Option(  # noqa: B008 - typer reads the signature
        None, help=f"SQLite file for events [default: ./{DEFAULT_DB}]."
    ),
    memory: bool = typer.Option(False, "--memory", help="Keep events in memory only."),
    auth: bool = typer.Option(
        False,
        "--auth",
        help="Require NIP-42 AUTH to read gift wraps (1059/21059): only their p recipient.",
    ),
) -> None:
    """Run a Nostr relay (NIP-01/09/11/40/42/45) for DVMs, with SQLite storage."""
    if db is not None and memory:
        typer.echo("error: give either --db or --memory, not both", err=True)
        raise typer.Exit(2)
    db_path: Path | None = None
    if not memory:
        db_path = db if db is not None else DEFAULT_DB
        db_path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    import asyncio  # only a running relay needs the event loop, not `dvm --help`

    try:
        asyncio.run(_serve(host=host, port=port, db_path=db_path, auth=auth))
    except RelayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _serve(*, host: str, port: int, db_path: Path | None, auth: bool) -> None:
    import asyncio

    from dvmkit.relay.server import Relay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Relay(host=host, port=port, db_path=db_path, auth=auth) as relay:
        print(relay.url, flush=True)
        await stop.wait()
        logging.getLogger("dvmkit.relay").info("stopping")
