"""NIP-11: the relay information document, served over HTTP on the websocket port.

A client asks with ``GET /`` and ``Accept: application/nostr+json``; websockets' handshake
hook answers that request before any upgrade. The document states the relay's real limits
and the NIPs it implements, so clients can adapt instead of discovering limits by failure.
"""

from __future__ import annotations

import http
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from dvmkit.relay.limits import RelayLimits

NIP11_MIME = "application/nostr+json"
#: NIPs the relay implements; 59 (serving gift wraps only to their recipient) needs ``auth``.
SUPPORTED_NIPS = (1, 9, 11, 40, 42, 45, 70)


def _software_version() -> str:
    try:
        return version("dvmkit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def information_document(
    *, name: str, description: str, limits: RelayLimits, auth: bool
) -> dict[str, Any]:
    """The NIP-11 document of a relay with these settings."""
    nips = sorted({*SUPPORTED_NIPS, 59} if auth else SUPPORTED_NIPS)
    return {
        "name": name,
        "description": description,
        "supported_nips": nips,
        "software": "dvmkit",
        "version": _software_version(),
        "limitation": limits.nip11_limitation(auth_required=False),
    }


def wants_information(request: Request) -> bool:
    return NIP11_MIME in request.headers.get("Accept", "")


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def information_response(connection: ServerConnection, document: bytes) -> Response:
    """An HTTP 200 carrying the NIP-11 document, readable from browsers (CORS)."""
    response = connection.respond(http.HTTPStatus.OK, "")
    return Response(
        response.status_code,
        response.reason_phrase,
        Headers(
            [
                ("Content-Type", NIP11_MIME),
                ("Content-Length", str(len(document))),
                # NIP-11: relays MUST accept CORS requests.
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "*"),
                ("Access-Control-Allow-Methods", "GET"),
            ]
        ),
        document,
    )


def encode_document(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)
