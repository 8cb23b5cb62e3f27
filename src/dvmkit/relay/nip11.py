"""NIP-11: the relay information document.

A relay serves a JSON document at its websocket URL over plain HTTP(S) when asked with
``Accept: application/nostr+json``. Its ``limitation`` object tells a client how large a
message may be, how many subscriptions and filters it may open and whether it must AUTH; the
pool respects those limits. Relays in the wild fill the document sloppily, so a field of the
wrong type is treated as absent rather than failing the whole document.

The request is a small HTTP/1.1 GET over an asyncio stream (one request, ``Connection:
close``), bounded in size and time; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from dvmkit.errors import ProtocolError, RelayError

MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Limitation:
    """NIP-11 ``limitation``; ``None`` means the relay did not say."""

    max_message_length: int | None = None
    max_subscriptions: int | None = None
    max_filters: int | None = None  # dropped from the current NIP text; strfry-era relays send it
    max_limit: int | None = None
    max_subid_length: int | None = None
    max_event_tags: int | None = None
    max_content_length: int | None = None
    min_pow_difficulty: int | None = None
    auth_required: bool | None = None
    payment_required: bool | None = None
    restricted_writes: bool | None = None
    created_at_lower_limit: int | None = None
    created_at_upper_limit: int | None = None
    default_limit: int | None = None


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """A parsed NIP-11 document. ``extra`` holds the decoded JSON object as sent."""

    name: str | None = None
    description: str | None = None
    pubkey: str | None = None
    contact: str | None = None
    software: str | None = None
    version: str | None = None
    supported_nips: tuple[int, ...] = ()
    limitation: Limitation = field(default_factory=Limitation)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def supports(self, nip: int) -> bool:
        return nip in self.supported_nips


_INT_LIMITS = (
    "max_message_length",
    "max_subscriptions",
    "max_filters",
    "max_limit",
    "max_subid_length",
    "max_event_tags",
    "max_content_length",
    "min_pow_difficulty",
    "created_at_lower_limit",
    "created_at_upper_limit",
    "default_limit",
)
_BOOL_LIMITS = ("auth_required", "payment_required", "restricted_writes")


def parse_relay_info(raw: str | bytes) -> RelayInfo:
    """Parse a NIP-11 document.

    Raises:
        ProtocolError: the text is not JSON or not a JSON object.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"NIP-11 document is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("NIP-11 document must be a JSON object")
    raw_limits = data.get("limitation")
    limits: dict[str, Any] = {}
    if isinstance(raw_limits, dict):
        for key in _INT_LIMITS:
            value = raw_limits.get(key)
            if type(value) is int and value >= 0:
                limits[key] = value
        for key in _BOOL_LIMITS:
            value = raw_limits.get(key)
            if isinstance(value, bool):
                limits[key] = value
    nips = data.get("supported_nips")
    return RelayInfo(
        name=_str(data, "name"),
        description=_str(data, "description"),
        pubkey=_str(data, "pubkey"),
        contact=_str(data, "contact"),
        software=_str(data, "software"),
        version=_str(data, "version"),
        supported_nips=tuple(n for n in nips if type(n) is int) if isinstance(nips, list) else (),
        limitation=Limitation(**limits),
        extra=data,
    )


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def http_url(relay_url: str) -> str:
    """The HTTP(S) URL of a relay's NIP-11 document: ``ws://`` -> ``http://``, ``wss://`` ->
    ``https://``.

    Raises:
        RelayError: the URL has another scheme or no host.
    """
    parts = urlsplit(relay_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(
        parts.scheme.lower()
    )
    if scheme is None or not parts.hostname:
        raise RelayError("not a ws://, wss:// or http(s):// URL", url=relay_url)
    return parts._replace(scheme=scheme, fragment="").geturl()


async def fetch_relay_info(
    relay_url: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a timeout becomes a RelayError, not a cancel
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> RelayInfo:
    """Fetch and parse a relay's NIP-11 document.

    Args:
        relay_url: the relay's websocket (or http) URL.
        timeout: seconds for the whole exchange.
        max_bytes: the largest document accepted.

    Returns:
        The parsed document.

    Raises:
        RelayError: the relay cannot be reached, times out, answers with a status other than
            200, or sends a body larger than ``max_bytes``.
        ProtocolError: the body is not a JSON object.
    """
    url = http_url(relay_url)
    try:
        async with asyncio.timeout(timeout):
            body = await _get(url, max_bytes)
    except TimeoutError:
        raise RelayError(f"NIP-11 request timed out after {timeout} s", url=relay_url) from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise RelayError(f"NIP-11 request failed: {exc!r}", url=relay_url) from None
    return parse_relay_info(body)


async def _get(url: str, max_bytes: int) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if tls else None, limit=_MAX_HEADER_BYTES
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host if parts.port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"
            "Accept: application/nostr+json\r\nUser-Agent: dvmkit\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(head, url)
        if status != 200:
            raise RelayError(f"NIP-11 request answered HTTP {status}", url=url)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader, max_bytes, url)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > max_bytes:
                raise RelayError(
                    f"NIP-11 document too large or bad length {length[:20]!r}", url=url
                )
            return await reader.readexactly(int(length))
        body = await reader.read(max_bytes + 1)
        while len(body) <= max_bytes:
            more = await reader.read(max_bytes + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > max_bytes:
            raise RelayError(f"NIP-11 document larger than {max_bytes} bytes", url=url)
        return body
    finally:
        writer.close()


def _parse_head(head: bytes, url: str) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise RelayError("NIP-11 request got a malformed HTTP status line", url=url)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int, url: str) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise RelayError("NIP-11 response has a malformed chunk size", url=url) from None
        if size < 0 or len(body) + size > max_bytes:
            raise RelayError(f"NIP-11 document larger than {max_bytes} bytes", url=url)
        if size == 0:
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk
