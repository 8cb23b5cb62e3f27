"""The ``dvm`` entry point: one Typer app that registers every command."""

from __future__ import annotations

import typer

from dvmkit.cli import customer, jobs, store, tools, wallet
from dvmkit.cli.relay import relay_command
from dvmkit.cli.serve import serve_command

# Rich's pretty tracebacks print local variables, which may hold secret keys: off.
app = typer.Typer(
    name="dvm",
    help="dvmkit: build, run, use and watch Nostr Data Vending Machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(tools.keys_app, name="keys")
app.add_typer(tools.encode_app, name="encode")
app.command("event")(tools.event_command)
app.command("verify")(tools.verify_command)
app.command("decode")(tools.decode_command)
app.command("encrypt")(tools.encrypt_command)
app.command("decrypt")(tools.decrypt_command)
app.command("relay")(relay_command)
app.command("serve")(serve_command)
app.command("discover")(customer.discover_command)
app.command("ask")(customer.ask_command)
app.add_typer(jobs.job_app, name="job")
app.command("jobs")(store.jobs_command)
app.add_typer(wallet.wallet_app, name="wallet")


@app.command("demo")
def demo_command(
    once: bool = typer.Option(False, "--once", help="Run the session, then exit (0: all ok)."),
    port: int = typer.Option(10547, help="The relay's port; a random one when busy, or 0."),
    mint_bin: str | None = typer.Option(
        None,
        "--mint-bin",
        help="nutshell's `mint`, for the Cashu step [default: $DVMKIT_MINT_BIN, "
        "else .venv-mint/bin/mint]",
    ),
) -> None:
    """Run a small DVM economy on this machine and a customer session against it."""
    from dvmkit.demo import main as demo_main  # the demo loads everything: only when asked

    raise typer.Exit(demo_main(once=once, port=port, mint_bin=mint_bin))


def main() -> None:
    app()
