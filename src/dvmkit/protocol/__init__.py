"""The DVM protocol layer: pure codecs for job requests, statuses, results, announcements.

dvmkit speaks two dialects (DESIGN.md §4): legacy NIP-90 (requests 5000-5999, feedback 7000,
results kind + 1000, NIP-89 31990 announcements) and the modern one (everything about a job on
ephemeral kind 25000, announcements on 11999, heartbeats on 11998). Like :mod:`dvmkit.nostr`
this package does no I/O and imports no asyncio, websockets or sqlite (a test proves it);
builders take the provider's pubkey and ``created_at`` explicitly and return
:class:`~dvmkit.nostr.event.UnsignedEvent` for the caller to sign.

Errors follow one rule the provider relies on: :class:`~dvmkit.errors.ProtocolError` means
"not a job for us, ignore it", :class:`~dvmkit.errors.JobError` means "a job for us that is
wrong: answer with this code and message".
"""

from __future__ import annotations

from dvmkit.protocol.announce import (
    DVMAnnouncement,
    announcement_event,
    nip89_event,
    parse_announcement,
)
from dvmkit.protocol.heartbeat import Heartbeat, heartbeat_event, parse_heartbeat
from dvmkit.protocol.job import (
    Dialect,
    ErrorCode,
    JobInput,
    JobRequest,
    StatusKind,
    encryption_scheme,
    parse_request,
)
from dvmkit.protocol.legacy import decrypt_legacy_params
from dvmkit.protocol.modern import cancel_event, is_cancel
from dvmkit.protocol.response import result_event, status_event

__all__ = [
    "DVMAnnouncement",
    "Dialect",
    "ErrorCode",
    "Heartbeat",
    "JobInput",
    "JobRequest",
    "StatusKind",
    "announcement_event",
    "cancel_event",
    "decrypt_legacy_params",
    "encryption_scheme",
    "heartbeat_event",
    "is_cancel",
    "nip89_event",
    "parse_announcement",
    "parse_heartbeat",
    "parse_request",
    "result_event",
    "status_event",
]
