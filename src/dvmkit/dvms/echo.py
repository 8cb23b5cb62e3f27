"""``echo``: returns its input unchanged (category ``echo``, legacy kind 5050).

The DVM to point a new client at: it answers every dialect and encryption the framework
speaks, costs nothing, and its result is predictable.
"""

from __future__ import annotations

from typing import Any

from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM


def build(*, relays: list[str] | tuple[str, ...], keys: Keys | None = None, **options: Any) -> DVM:
    """The echo DVM.

    Args:
        relays: where it listens and publishes.
        keys: its identity (a fresh one when omitted).
        options: passed on to :class:`~dvmkit.provider.DVM` (``limits``, ``store_path``, ...).
    """
    dvm = DVM(
        name="dvmkit echo",
        about="Returns its input unchanged, for testing clients",
        categories=["echo"],
        legacy_kinds=[5050],
        relays=relays,
        keys=keys,
        examples=[{"input": "hello"}],
        **options,
    )

    @dvm.job
    async def echo(input: str) -> str:
        return input

    return dvm
