"""What every ``dvm`` command shares: exit codes, error reporting, key options, output.

Exit codes (documented in the README and tested):
    0   success
    1   an unexpected failure (a bug: please report it)
    2   bad input: a malformed key, event, argument or payload
    3   ``dvm ask`` / ``dvm job wait``: the DVM answered with an error (or cancelled)
    4   ``dvm ask`` / ``dvm job wait`` / ``dvm job cancel``: timeout, no live DVM, no relay
        answered, or (cancel) the job had already ended; ``dvm ask`` / ``dvm wallet``: the
        NWC wallet did not answer (``TIMEOUT``: the payment may still go out) or no relay
        took the request to it (``NOT_SENT``)
    5   ``dvm ask`` / ``dvm job wait`` / ``dvm wallet``: payment refused or failed, or asked
        above ``--max-price``
    123 ``dvm verify`` read at least one invalid event (as nak does)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import orjson
import typer

from dvmkit.errors import DVMError
from dvmkit.nostr.keys import Keys

if TYPE_CHECKING:
    from dvmkit.payments.nip47 import ConnectionURI

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_JOB_ERROR = 3
EXIT_NO_ANSWER = 4
EXIT_PAYMENT = 5
EXIT_INVALID_EVENTS = 123

SECRET_ENV = "NOSTR_SECRET_KEY"
#: Relays for the commands given none, comma-separated (``dvm serve`` and the customer's).
RELAYS_ENV = "DVMKIT_RELAYS"
#: Where ``dvm relay`` listens by default: the relay of last resort of every command.
DEFAULT_RELAY = "ws://127.0.0.1:10547"
#: The NWC wallet ``dvm ask`` pays with (``dvm wallet`` reads it too: what is left in it).
NWC_ENV = "DVMKIT_NWC"

P = ParamSpec("P")
R = TypeVar("R")


def error(message: str) -> None:
    """One line on stderr, never stdout (stdout carries only results)."""
    print(f"dvm: {message}", file=sys.stderr)


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our own errors into a one-line message and exit code 2, never a traceback.

    Messages of DVMError never contain secrets (errors.py), so they are safe to print.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except DVMError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def secret_option(help_text: str = "secret key as hex or nsec") -> Any:
    return typer.Option(
        ...,
        "--sec",
        envvar=SECRET_ENV,
        help=f"{help_text} (or ${SECRET_ENV})",
        show_default=False,
        show_envvar=True,
    )


def load_keys(text: str) -> Keys:
    return Keys.parse(text)


def env_relays() -> list[str]:
    """The relay URLs in ``$DVMKIT_RELAYS``, or none."""
    return [url.strip() for url in os.environ.get(RELAYS_ENV, "").split(",") if url.strip()]


def emit(value: object) -> None:
    """Write one JSON value as one line on stdout."""
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def parse_nwc(text: str) -> ConnectionURI:
    """``--nwc`` parsed; a malformed URI exits 2 (the message never quotes it)."""
    from dvmkit.payments.nip47 import ConnectionURI

    try:
        return ConnectionURI.parse(text)
    except DVMError as exc:
        error(f"--nwc: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def wallet_exit(code: str | None) -> int:
    """The exit code of an NWC wallet's failure with NIP-47 ``code``: 4 when the wallet
    never answered (``TIMEOUT``) or was never reached (``NOT_SENT``), else 5."""
    from dvmkit.payments.nip47 import NOT_SENT, TIMEOUT

    return EXIT_NO_ANSWER if code in (TIMEOUT, NOT_SENT) else EXIT_PAYMENT
