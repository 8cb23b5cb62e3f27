"""NIP-01 kind classes: how relays store an event of a given kind."""

from __future__ import annotations

import enum

MAX_KIND = 65535


class KindClass(enum.Enum):
    REGULAR = "regular"
    REPLACEABLE = "replaceable"
    EPHEMERAL = "ephemeral"
    ADDRESSABLE = "addressable"


def kind_class(kind: int) -> KindClass:
    """Return the NIP-01 storage class of ``kind``.

    NIP-01: replaceable are 0, 3 and 10000-19999; ephemeral 20000-29999; addressable
    30000-39999; everything else (1, 2, 4-44, 1000-9999, 40000+) is regular.
    """
    if kind in (0, 3) or 10000 <= kind < 20000:
        return KindClass.REPLACEABLE
    if 20000 <= kind < 30000:
        return KindClass.EPHEMERAL
    if 30000 <= kind < 40000:
        return KindClass.ADDRESSABLE
    return KindClass.REGULAR


def is_regular(kind: int) -> bool:
    return kind_class(kind) is KindClass.REGULAR


def is_replaceable(kind: int) -> bool:
    return kind_class(kind) is KindClass.REPLACEABLE


def is_ephemeral(kind: int) -> bool:
    return kind_class(kind) is KindClass.EPHEMERAL


def is_addressable(kind: int) -> bool:
    return kind_class(kind) is KindClass.ADDRESSABLE
