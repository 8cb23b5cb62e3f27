"""``dvm wallet``: run the dev wallet, open accounts, and use any NWC wallet from the shell.

::

    dvm wallet serve [--db FILE] [RELAY...]          run the dev wallet until SIGINT/SIGTERM
    dvm wallet new [--db FILE] [--deposit MSAT] [RELAY...]
                                                      open an account, print its NWC URI
    dvm wallet deposit [--db FILE] ACCOUNT MSAT       fund an account (dev wallet only)
    dvm wallet balance --nwc URI                      any NWC wallet ($NWC_URI, or
                                                      $DVMKIT_NWC: the one dvm ask pays with)
    dvm wallet invoice --nwc URI AMOUNT_MSAT [--description TEXT]
    dvm wallet pay --nwc URI BOLT11

Results are one JSON object per line on stdout. ``new`` prints the connection URI, which holds
the account's secret: like ``dvm keys generate`` it is the one place a secret is printed, and
the wallet itself does not keep it. Exit codes are those of :mod:`dvmkit.cli.common`; a wallet
that refuses a payment exits 5, one that does not answer exits 4.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dvmkit.cli.common import (
    DEFAULT_RELAY,
    EXIT_BAD_INPUT,
    NWC_ENV,
    emit,
    error,
    parse_nwc,
    wallet_exit,
)
from dvmkit.errors import DVMError

if TYPE_CHECKING:
    # The wallet client and service load websockets and sqlite: only the command that runs
    # pays for them, never `dvm --help`.
    from dvmkit.payments.nwc import NWCClient

DEFAULT_DB = Path(".dvmkit") / "wallet.sqlite3"
NWC_URI_ENV = "NWC_URI"
T = TypeVar("T")

wallet_app = typer.Typer(
    help="The dev wallet (serve, new, deposit) and any NWC wallet (balance, invoice, pay).",
    no_args_is_help=True,
)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="DVMKIT_WALLET_DB", help=f"the ledger [default: ./{DEFAULT_DB}]"),
]
RelaysArgument = Annotated[
    list[str] | None,
    typer.Argument(help=f"relay URLs [default: {DEFAULT_RELAY}]", show_default=False),
]
NwcOption = Annotated[
    str,
    typer.Option(
        "--nwc",
        envvar=[NWC_URI_ENV, NWC_ENV],
        help=f"the wallet's nostr+walletconnect:// URI (or ${NWC_URI_ENV}, ${NWC_ENV})",
        show_default=False,
        show_envvar=True,
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="seconds to wait for the wallet")]


def _db_path(db: Path | None) -> Path:
    path = db if db is not None else DEFAULT_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@wallet_app.command("serve")
def serve_command(db: DbOption = None, relays: RelaysArgument = None) -> None:
    """Run the dev wallet (a NIP-47 service) on the relays until SIGINT or SIGTERM."""
    import asyncio

    from dvmkit.payments.devwallet import DevWallet

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        wallet = DevWallet(relays=relays or [DEFAULT_RELAY], db=_db_path(db))
    except DVMError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with wallet:
            # The first stdout line: scripts read the wallet's key from it.
            emit({"wallet": wallet.pubkey, "node": wallet.node_id, "relays": list(wallet.relays)})
            await stop.wait()

    asyncio.run(serve())


@wallet_app.command("new")
def new_command(
    db: DbOption = None,
    deposit: Annotated[int, typer.Option("--deposit", help="fund it with MSAT", min=0)] = 0,
    name: Annotated[str, typer.Option("--name", help="a label for the account")] = "",
    relays: RelaysArgument = None,
) -> None:
    """Open a dev-wallet account; print its NWC URI (it holds a secret: keep it private)."""
    from dvmkit.payments.devwallet import DevWallet

    try:
        wallet = DevWallet(relays=relays or [DEFAULT_RELAY], db=_db_path(db))
        try:
            uri = wallet.create_account(name=name, deposit_msat=deposit)
            balance = wallet.balance(uri.client)
        finally:
            wallet.ledger.close()
    except (DVMError, ValueError) as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    emit(
        {"uri": uri.reveal(), "account": uri.client, "wallet": uri.wallet, "balance_msat": balance}
    )


@wallet_app.command("deposit")
def deposit_command(
    account: Annotated[str, typer.Argument(help="the account's client pubkey (hex)")],
    amount_msat: Annotated[int, typer.Argument(help="msat to credit", min=1)],
    db: DbOption = None,
) -> None:
    """Credit a dev-wallet account out of thin air (local runs and tests only)."""
    from dvmkit.payments.ledger import Ledger

    ledger = Ledger(_db_path(db))
    try:
        balance = ledger.deposit(account, amount_msat)
    except (DVMError, ValueError) as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        ledger.close()
    emit({"account": account, "balance_msat": balance})


@wallet_app.command("balance")
def balance_command(nwc: NwcOption, timeout: TimeoutOption = 30.0) -> None:
    """Print the wallet's balance."""

    async def call(wallet: NWCClient) -> dict[str, Any]:
        return {"balance_msat": (await wallet.get_balance()).msat}

    emit(_with_wallet(nwc, timeout, call))


@wallet_app.command("invoice")
def invoice_command(
    nwc: NwcOption,
    amount_msat: Annotated[int, typer.Argument(help="the amount in msat", min=1)],
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    expiry: Annotated[int | None, typer.Option("--expiry", help="seconds", min=1)] = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Ask the wallet for an invoice; print it with its payment hash."""

    async def call(wallet: NWCClient) -> dict[str, Any]:
        made = await wallet.make_invoice(amount_msat, description=description, expiry=expiry)
        return made.to_dict()

    emit(_with_wallet(nwc, timeout, call))


@wallet_app.command("pay")
def pay_command(
    nwc: NwcOption,
    bolt11: Annotated[str, typer.Argument(help="the invoice to pay")],
    timeout: TimeoutOption = 30.0,
) -> None:
    """Pay a bolt11 invoice; print the preimage."""

    async def call(wallet: NWCClient) -> dict[str, Any]:
        paid = await wallet.pay_invoice(bolt11)
        return {"preimage": paid.preimage, "fees_paid_msat": paid.fees_paid_msat}

    emit(_with_wallet(nwc, timeout, call))


def _with_wallet(nwc: str, timeout: float, call: Callable[[NWCClient], Awaitable[T]]) -> T:
    import asyncio

    from dvmkit.payments.nip47 import WalletError
    from dvmkit.payments.nwc import NWCClient

    uri = parse_nwc(nwc)

    async def run() -> T:
        async with NWCClient(uri, timeout=timeout) as wallet:
            return await call(wallet)

    try:
        return asyncio.run(run())
    except WalletError as exc:
        error(str(exc))
        raise typer.Exit(wallet_exit(exc.code)) from None
    except DVMError as exc:  # a relay URL: never the secret (errors.py)
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
