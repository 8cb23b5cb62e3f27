"""dvmkit: the Python toolkit for Nostr Data Vending Machines.

The names a user needs are exported here; everything else lives in its layer
(``dvmkit.nostr``, ``dvmkit.relay``, ...).
"""

from dvmkit.errors import DVMError, InvalidEvent, InvalidKey, ProtocolError, RelayError
from dvmkit.nostr.event import Event, parse_event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys

__version__ = "0.1.0"

__all__ = [
    "DVMError",
    "Event",
    "Filter",
    "InvalidEvent",
    "InvalidKey",
    "Keys",
    "ProtocolError",
    "RelayError",
    "__version__",
    "parse_event",
    "sign_event",
]
