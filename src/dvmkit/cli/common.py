"""What every ``dvm`` command shares: exit codes, error reporting, key options, output.

Exit codes (documented in the README and tested):
    0   success
    1   an unexpected failure (a bug: please report it)
    2   bad input: a malformed key, event, argument or payload
    3   ``dvm ask`` / ``dvm job wait``: the DVM answered with an error (or cancelled)
    4   ``dvm ask`` / ``dvm job wait`` / ``dvm job cancel``: timeout, no live DVM, no relay
        answered, or (cancel) the job had already ended
    5   ``dvm ask`` / ``dvm job wait``: payment refused, or asked above ``--max-price``
    123 ``dvm verify`` read at least one invalid event (as nak does)
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import orjson
import typer

from dvmkit.errors import DVMError
from dvmkit.nostr.keys import Keys

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_JOB_ERROR = 3
EXIT_NO_ANSWER = 4
EXIT_PAYMENT = 5
EXIT_INVALID_EVENTS = 123

SECRET_ENV = "NOSTR_SECRET_KEY"

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


def emit(value: object) -> None:
    """Write one JSON value as one line on stdout."""
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()
