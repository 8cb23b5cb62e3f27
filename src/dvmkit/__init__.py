"""dvmkit: the Python toolkit for Nostr Data Vending Machines.

The names a user needs are exported here; everything else lives in its layer
(``dvmkit.nostr``, ``dvmkit.relay``, ...). The I/O layers (provider, relay pool) load on first
use, so that importing the pure ``dvmkit.nostr`` or ``dvmkit.protocol`` never drags in
asyncio, websockets or sqlite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dvmkit.errors import (
    DVMError,
    InvalidEvent,
    InvalidKey,
    JobError,
    ProtocolError,
    RelayError,
)
from dvmkit.nostr.event import Event, parse_event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys

if TYPE_CHECKING:
    from dvmkit.provider import DVM, Job, Limits
    from dvmkit.relay.pool import RelayPool

__version__ = "0.1.0"

_LAZY = {
    "DVM": "dvmkit.provider",
    "Job": "dvmkit.provider",
    "Limits": "dvmkit.provider",
    "RelayPool": "dvmkit.relay.pool",
}

__all__ = [
    "DVM",
    "DVMError",
    "Event",
    "Filter",
    "InvalidEvent",
    "InvalidKey",
    "Job",
    "JobError",
    "Keys",
    "Limits",
    "ProtocolError",
    "RelayError",
    "RelayPool",
    "__version__",
    "parse_event",
    "sign_event",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dvmkit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
