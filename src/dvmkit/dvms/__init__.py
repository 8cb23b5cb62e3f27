"""Built-in DVMs that do real work offline: ``dvm serve --builtin NAME``.

Each module exposes ``build(*, relays, keys=None, **options) -> DVM``:

- ``echo`` (category ``echo``, kind 5050): returns its input.
- ``pow`` (``pow``, 5970): mines NIP-13 proof of work on an event.
- ``search`` (``search``, 5302): full-text search over the notes on its relays.
- ``count`` (``count``, 5400): counts events matching a filter (NIP-45).
- ``trending`` (``discovery``, 5300): recent notes ranked by reactions, reposts and zaps.
"""

from __future__ import annotations

import importlib
from typing import Any

from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM

BUILTINS = ("count", "echo", "pow", "search", "trending")


def build(
    name: str, *, relays: list[str] | tuple[str, ...], keys: Keys | None = None, **options: Any
) -> DVM:
    """Build the built-in DVM called ``name``.

    Raises:
        ValueError: no built-in DVM has that name (the message lists them).
    """
    if name not in BUILTINS:
        raise ValueError(f"no built-in DVM {name[:40]!r}; the built-ins are {', '.join(BUILTINS)}")
    # Imported on demand: `dvm serve --builtin echo` need not load SQLite or the miner.
    module = importlib.import_module(f"dvmkit.dvms.{name}")
    dvm: DVM = module.build(relays=relays, keys=keys, **options)
    return dvm
