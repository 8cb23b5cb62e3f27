"""``dvm job request|wait|cancel``: build, send, follow and cancel job requests by hand.

Shares the customer commands' habits and helpers (customer.py): relays as trailing
arguments, JSON lines on stdout, the exit codes of common.py.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dvmkit.cli.common import (
    EXIT_BAD_INPUT,
    SECRET_ENV,
    emit,
    error,
)
from dvmkit.cli.customer import (
    Sec,
    customer_keys,
    is_relay,
    parse_params,
    public_key,
    relays_from,
    run_async,
    split_args,
)
from dvmkit.errors import NoAnswer, ProtocolError

if TYPE_CHECKING:
    from dvmkit.relay.values import PublishResult

job_app = typer.Typer(help="Build, send and follow job requests.", no_args_is_help=True)


@job_app.command("request")
def job_request_command(
    relays: Annotated[list[str] | None, typer.Argument(help="relays to publish to")] = None,
    kind: Annotated[int | None, typer.Option("-k", "--kind", help="5000-5999")] = None,
    category: Annotated[str | None, typer.Option("--category", help="modern category")] = None,
    input: Annotated[str | None, typer.Option("-i", "--input", help="input data")] = None,
    input_type: Annotated[str, typer.Option("--input-type", help="text|url|event|job")] = "text",
    param: Annotated[list[str] | None, typer.Option("--param", help="name=value")] = None,
    to: Annotated[str | None, typer.Option("-p", "--to", help="the DVM (npub or hex)")] = None,
    ts: Annotated[int | None, typer.Option("--ts", help="created_at (unix seconds)")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="publish it")] = False,
    sec: Sec = None,
) -> None:
    """Print a signed job request as one JSON line; publish it with --publish or relays.

    A JSON event template on stdin (kind, content, tags, created_at) is the starting point;
    flags override its kind and add tags, as in nak.
    """
    try:
        event = _build_from_template(kind, category, input, input_type, param, to, ts, sec)
    except (ValueError, ProtocolError) as exc:
        error(f"{exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    sys.stdout.write(event.to_json() + "\n")
    sys.stdout.flush()
    if not (publish or relays):
        return

    async def send() -> None:
        from dvmkit.relay.pool import RelayPool

        urls = relays_from(relays or [])
        async with RelayPool(relays=urls, fetch_info=False) as pool:
            result = await pool.publish(event)
        _report(result)
        if not result.ok:
            raise NoAnswer("no relay accepted the request: start `dvm relay` or check the URLs")

    run_async(send)


def _report(result: PublishResult) -> None:
    """What each relay said to a publish, one line each on stderr (as nak prints it)."""
    for url, outcome in result.outcomes.items():
        word = "success" if outcome.ok else f"failed: {outcome.status} {outcome.message}"
        print(f"publishing to {url}... {word}.", file=sys.stderr)


def _build_from_template(
    kind: int | None,
    category: str | None,
    input: str | None,
    input_type: str,
    param: list[str] | None,
    to: str | None,
    ts: int | None,
    sec: str | None,
) -> Any:
    import orjson

    from dvmkit.customer.request import request_tags
    from dvmkit.nostr.event import normalize_tags, sign_event

    template: dict[str, Any] = {}
    if not sys.stdin.isatty():
        raw = sys.stdin.read().strip()
        if raw:
            try:
                template = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"stdin is not a JSON event template: {exc}") from None
            if not isinstance(template, dict):
                raise ValueError("the stdin template must be a JSON object")
    if kind is not None and category is not None:
        raise ValueError("give either --kind (legacy) or --category (modern), not both")
    target: str | int | None = category if category is not None else kind
    base_kind = template.get("kind")
    if target is None:
        if not isinstance(base_kind, int):
            raise ValueError("say what to ask: --kind 5000-5999, --category NAME, or a template")
        target = base_kind if base_kind != 25000 else None
    tags = list(normalize_tags(template.get("tags", [])))
    if target is not None:
        tags += request_tags(
            target,
            input=input,
            input_type=input_type,
            params=parse_params(param),
            to=public_key(to) if to else None,
        )
    final_kind = 25000 if isinstance(target, str) or target is None else target
    created = ts if ts is not None else template.get("created_at")
    content = template.get("content", "")
    if not isinstance(content, str):
        raise ValueError("the template's content must be a string")
    return sign_event(
        customer_keys(sec),
        kind=final_kind,
        content=content,
        tags=tags,
        created_at=created if isinstance(created, int) else None,
    )


@job_app.command("wait")
def job_wait_command(
    args: Annotated[list[str], typer.Argument(help="ID|NEVENT [RELAY...]")],
    dvm: Annotated[str | None, typer.Option("--from", help="only this DVM's answers")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds of silence")] = 60.0,
    sec: Sec = None,
) -> None:
    """Stream a job's updates as JSON lines until its result, an error or a timeout."""

    async def main() -> None:
        from dvmkit.customer import Customer

        ident, urls = request_pointer(args, "wait for")
        async with Customer(relays=urls, keys=customer_keys(sec)) as customer:
            job = customer.watch(
                ident, dvm=public_key(dvm) if dvm else None, silence_timeout=timeout
            )
            async for update in job.updates():
                emit(update.to_dict())
            await job.result()

    run_async(main)


def request_pointer(args: list[str] | None, verb: str) -> tuple[str, list[str]]:
    """The request id (hex, note or nevent) and relays: the arguments, else the nevent's."""
    from dvmkit.nostr import nip19
    from dvmkit.nostr.keys import is_hex64

    ident, relays = split_args(args)
    if ident is None:
        raise ValueError(f"give the request id (hex or nevent) to {verb}")
    hints: list[str] = []
    if ident.startswith(("nevent1", "note1")):
        decoded = nip19.decode(ident).value
        if isinstance(decoded, nip19.EventPointer):
            ident, hints = decoded.id, [url for url in decoded.relays if is_relay(url)]
        elif isinstance(decoded, str):
            ident = decoded
    ident = ident.lower()
    if not is_hex64(ident):
        raise ValueError(f"{ident[:80]!r} is not a request id: give 64 hex characters or an nevent")
    urls = relays_from(relays) if relays or not hints else hints
    return ident, urls


@job_app.command("cancel")
def job_cancel_command(
    args: Annotated[list[str], typer.Argument(help="ID|NEVENT [RELAY...]")],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="the DVM working on it (npub or hex)")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds to wait for the DVM to confirm")
    ] = 10.0,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait for the DVM's confirmation")
    ] = True,
    sec: Sec = None,
) -> None:
    """Cancel your job request: a modern cancel, or a NIP-09 deletion for a legacy one.

    Prints the signed cancellation as one JSON line, then waits until a DVM confirms
    (exit 0) or --timeout passes (exit 4: the job may have ended already, see dvm job wait).
    """

    async def main() -> None:
        import time

        from dvmkit.customer import Customer, UpdateType
        from dvmkit.customer.request import cancellation

        if not sec:
            raise ValueError(
                f"only the request's author can cancel it: pass its key with --sec (or "
                f"${SECRET_ENV})"
            )
        ident, urls = request_pointer(args, "cancel")
        providers = [public_key(item) for item in to or []]
        keys = customer_keys(sec)
        async with Customer(relays=urls, keys=keys) as customer:
            # Legacy requests are stored; a modern one is ephemeral and known only by id.
            stored = [
                e
                for e in await customer.pool.fetch(
                    {"ids": [ident]}, timeout=customer.timeouts.discover
                )
                if e.id == ident
            ]
            request = stored[0] if stored else ident
            event = cancellation(keys, request, providers=providers, created_at=int(time.time()))
            job = customer.watch(request, silence_timeout=timeout) if wait else None
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()
            result = await customer.pool.publish(event, wait="first")
            _report(result)
            if not result.ok:
                raise NoAnswer("no relay accepted the cancellation: check the relay URLs")
            if job is None:
                return
            async for update in job.updates():
                if update.type is UpdateType.CANCELLED:
                    print(f"cancelled by {update.dvm}", file=sys.stderr)
                    return
                if update.type in (UpdateType.SUCCESS, UpdateType.ERROR):
                    raise NoAnswer(
                        f"job {ident} had already ended ({update.type.value}): nothing "
                        "to cancel (dvm job wait shows its answer)"
                    )
            raise NoAnswer(
                f"no DVM confirmed the cancellation within {timeout:g} s: the job may have "
                "ended, or its DVM does not confirm cancellations (dvm job wait shows answers)"
            )

    run_async(main)
