"""The customer's commands: ``dvm discover`` and ``dvm ask`` (``dvm job`` is in jobs.py).

nak's habits (research/ecosystem.md §1): relays are trailing arguments, results are JSON lines
(or the bare result) on stdout, progress goes to stderr, and exit codes say what happened
(common.py). Relays default to ``$DVMKIT_RELAYS`` (comma-separated), else the local
``dvm relay`` at ws://127.0.0.1:10547. The customer's key is ``--sec``/``$NOSTR_SECRET_KEY``,
else a fresh key per run that is never printed. Heavy modules (the relay pool, Rich) are
imported inside the commands so that ``dvm ask`` starts fast.

``dvm ask --max-price MSAT --nwc URI`` pays a priced DVM up to MSAT from that NWC wallet
(``$DVMKIT_NWC``), printing ``paid N msat ...`` on stderr; the URI holds a secret and is never
printed. A payment refused (over the cap, a bad invoice, nothing the DVM takes) or failed (the
wallet said no) exits 5; a wallet that did not answer, or could not be reached, exits 4 as in
``dvm wallet`` (after a ``TIMEOUT`` the payment may still go out: check ``dvm wallet
balance``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dvmkit.cli.common import (
    DEFAULT_RELAY,
    EXIT_BAD_INPUT,
    EXIT_JOB_ERROR,
    EXIT_NO_ANSWER,
    NWC_ENV,
    SECRET_ENV,
    emit,
    env_relays,
    error,
    parse_nwc,
    wallet_exit,
)
from dvmkit.errors import (
    DVMError,
    JobError,
    NoAnswer,
    PaymentError,
    ProtocolError,
    RelayError,
)

if TYPE_CHECKING:
    from dvmkit.customer.job import Job
    from dvmkit.nostr.keys import Keys

T = TypeVar("T")

Sec = Annotated[
    str | None,
    typer.Option(
        "--sec",
        envvar=SECRET_ENV,
        show_envvar=True,
        show_default=False,
        help="the customer's secret key (hex or nsec); a fresh key per run when absent",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="JSON on stdout, even on a terminal")]


def is_relay(text: str) -> bool:
    return text.lower().startswith(("ws://", "wss://"))


def relays_from(args: list[str]) -> list[str]:
    """Trailing arguments, else ``$DVMKIT_RELAYS``, else the local ``dvm relay``."""
    if args:
        return args
    return env_relays() or [DEFAULT_RELAY]


def split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """The first non-relay argument (an input or target) and the relays after it."""
    first: str | None = None
    relays: list[str] = []
    for arg in args or []:
        if is_relay(arg):
            relays.append(arg)
        elif first is None and not relays:
            first = arg
        else:
            raise ValueError(f"{arg!r} is not a relay URL: write relays as ws://... or wss://...")
    return first, relays


def customer_keys(sec: str | None) -> Keys:
    from dvmkit.nostr.keys import Keys

    return Keys.parse(sec) if sec else Keys.generate()


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, mapping dvmkit's errors to the documented exit codes."""
    import asyncio  # here, not at the top: `dvm --help` and the offline tools never need it

    try:
        return asyncio.run(_await(make))
    except (ValueError, ProtocolError) as exc:
        error(f"{exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except JobError as exc:
        error(
            f"the DVM answered an error: {exc}. Check the input and params (dvm discover "
            "shows what the DVM accepts), or ask another DVM"
        )
        raise typer.Exit(EXIT_JOB_ERROR) from None
    except PaymentError as exc:
        error(str(exc))
        # A wallet's failure carries its NIP-47 code (PaymentFailed, WalletError); a refusal
        # (PaymentRequired) has none.
        raise typer.Exit(wallet_exit(getattr(exc, "code", None))) from None
    except (NoAnswer, RelayError) as exc:
        error(str(exc))
        raise typer.Exit(EXIT_NO_ANSWER) from None
    except DVMError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"param {item!r} is not name=value: write --param lang=es")
        params[name] = value
    return params


def parse_target(text: str) -> str | int:
    from dvmkit.customer.discovery import parse_target as parse

    target = parse(text)
    assert target is not None
    return target


def public_key(text: str) -> str:
    from dvmkit.nostr.keys import parse_public_key

    return parse_public_key(text)


# -- dvm discover ---------------------------------------------------------------------------


def discover_command(
    args: Annotated[list[str] | None, typer.Argument(help="[CATEGORY|KIND] [RELAY...]")] = None,
    as_json: Json = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait")] = 3.0,
) -> None:
    """List DVMs serving a category or kind, live ones first; dead ones are marked."""

    async def main() -> list[Any]:
        from dvmkit.customer import Customer

        target_text, relays = split_args(args)
        target = parse_target(target_text) if target_text is not None else None
        async with Customer(relays=relays_from(relays)) as customer:
            return await customer.discover(target, timeout=timeout)

    found = run_async(main)
    if as_json or not sys.stdout.isatty():
        for info in found:
            emit(info.to_dict())
        return
    _table(found)


def _table(found: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "name", "categories / kinds", "price", "private", "beat", "pubkey")
    for info in found:
        badge = "[green]live[/]" if info.alive else "[red]dead[/]"
        age = "never" if info.beat_age is None else f"{info.beat_age:.0f} s ago"
        price = "?" if info.price_msat is None else f"{info.price_msat} msat"
        serves = ", ".join([*info.categories, *map(str, info.kinds)])
        private = "yes" if info.encryption else "no"
        table.add_row(badge, info.name, serves, price, private, age, info.pubkey[:16] + "…")
    Console().print(table)
    if not found:
        error("no DVM found: start one (dvm serve) or try other relays")


# -- dvm ask --------------------------------------------------------------------------------


def ask_command(
    target: Annotated[str, typer.Argument(help="a category (text, pow, ...) or kind 5000-5999")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="[INPUT] [RELAY...]; INPUT '-' (or none, when piped) reads stdin"),
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="name=value")] = None,
    to: Annotated[str | None, typer.Option("--to", help="the DVM (npub or hex)")] = None,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="NIP-90 (a category: the kind its live DVMs serve)")
    ] = False,
    max_price: Annotated[
        int | None,
        typer.Option(
            "--max-price", help="the most this job may cost (msat); with --nwc, paid up to it"
        ),
    ] = None,
    nwc: Annotated[
        str | None,
        typer.Option(
            "--nwc",
            envvar=NWC_ENV,
            show_envvar=True,
            show_default=False,
            help="an NWC wallet (nostr+walletconnect://...) to pay with; a secret, never shown",
        ),
    ] = None,
    bid: Annotated[
        int | None,
        typer.Option("--bid", help="offer this much (msat); a DVM asking more gets it once"),
    ] = None,
    refund_to: Annotated[
        str | None,
        typer.Option(
            "--refund-to",
            help="a lightning address or invoice for a refund if a paid job fails "
            "(default: the --nwc wallet's lud16)",
        ),
    ] = None,
    choose: Annotated[str, typer.Option("--choose", help="cheapest|fastest|first")] = "cheapest",
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="private: wrap the job to the DVM (legacy: NIP-44 encrypted params); never "
            "sent in the clear",
        ),
    ] = False,
    nip04: Annotated[
        bool,
        typer.Option("--nip04", help="legacy encrypted params with NIP-04 (implies --encrypt)"),
    ] = False,
    wrap: Annotated[
        str, typer.Option("--wrap", help="simple (ContextVM) or nip59 (rumor, seal, wrap)")
    ] = "simple",
    wrap_kind: Annotated[
        int, typer.Option("--wrap-kind", help="21059 (ephemeral) or 1059 (stored)")
    ] = 21059,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait")] = 60.0,
    as_json: Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress on stderr")] = False,
    sec: Sec = None,
) -> None:
    """Ask a DVM for a job; the result on stdout, progress on stderr."""
    wallet_uri = parse_nwc(nwc) if nwc else None

    async def main() -> Any:
        import asyncio

        from dvmkit.customer import Customer, CustomerTimeouts
        from dvmkit.customer.discovery import legacy_kind
        from dvmkit.payments.nwc import NWCClient
        from dvmkit.protocol.envelope import Envelope

        private = encrypt or nip04
        custom_wrap = wrap != "simple" or wrap_kind != 21059
        envelope = Envelope(wrap, wrap_kind) if custom_wrap else None  # type: ignore[arg-type]
        input_arg, relays = split_args(args)
        input_text = read_input(input_arg)
        kind = parse_target(target)
        dvm = public_key(to) if to else None
        keys = customer_keys(sec)
        timeouts = CustomerTimeouts(silence=min(15.0, timeout))
        # Each wallet call may take up to 30 s, never longer than the whole ask.
        client = NWCClient(wallet_uri, timeout=min(30.0, timeout)) if wallet_uri else None
        async with (
            asyncio.timeout(timeout),
            client if client is not None else contextlib.nullcontext() as wallet,
            Customer(
                relays=relays_from(relays), keys=keys, timeouts=timeouts, wallet=wallet
            ) as customer,
        ):
            if legacy and isinstance(kind, str):
                # NIP-90 has kinds, not categories: ask in the kind the category's DVMs serve.
                kind = legacy_kind(await customer.discover(kind), kind, to=dvm)
                if not quiet:
                    print(f"category {target.strip()}: legacy kind {kind}", file=sys.stderr)
            if nip04 and not isinstance(kind, int):
                raise ValueError("--nip04 is for NIP-90 (legacy) requests: add --legacy")
            job = await customer.request(
                kind,
                input=input_text,
                params=parse_params(param),
                to=dvm,
                max_price_msat=max_price,
                bid_msat=bid,
                refund_to=refund_to,
                choose=choose,  # type: ignore[arg-type]
                encrypt="nip04" if nip04 else private,
                envelope=envelope,
            )
            if not quiet:
                await _show_progress(job)
            return await job.result()

    try:
        result = run_async(main)
    except TimeoutError:
        error(f"no result within {timeout:g} s: raise --timeout, or check with dvm discover")
        raise typer.Exit(EXIT_NO_ANSWER) from None
    if as_json:
        emit(result.to_dict())
    else:
        sys.stdout.write(result.content + "\n")


#: The most ``dvm ask`` reads from stdin: relays refuse far smaller events anyway.
MAX_STDIN_INPUT = 512 * 1024


def read_input(arg: str | None) -> str | None:
    """The job's input: the argument, else stdin when it is ``-`` or absent and piped.

    nak's habit: ``echo hello | dvm ask text``. One trailing line break is dropped (what
    ``echo`` adds); empty stdin is no input.

    Raises:
        ValueError: stdin over :data:`MAX_STDIN_INPUT` bytes, or not UTF-8.
    """
    stdin = sys.stdin
    if arg is not None and arg != "-":
        return arg
    if stdin is None or (arg is None and stdin.isatty()):
        return None
    raw = stdin.buffer.read(MAX_STDIN_INPUT + 1)
    if len(raw) > MAX_STDIN_INPUT:
        raise ValueError(
            f"the input on stdin is over {MAX_STDIN_INPUT} bytes: relays refuse such events; "
            "put it somewhere and pass its URL (--param or an input URL)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the input on stdin is not UTF-8 text ({exc.reason})") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text and arg is None:
        return None
    return text


async def _show_progress(job: Job) -> None:
    """Updates on stderr until the job ends: a live status on a terminal, else one line each.

    The final update is left out: the result goes to stdout, an error is reported once.
    """
    if not sys.stderr.isatty():
        async for update in job.updates():
            if not update.final:
                print(update.describe(), file=sys.stderr, flush=True)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True)
    with console.status(Text(f"sent {job.id[:12]}…")) as status:
        async for update in job.updates():
            if update.final:
                continue
            line = Text(update.describe())
            if update.type.value in ("partial", "chosen", "failover", "paid"):
                console.print(line, highlight=False)
            status.update(line)
