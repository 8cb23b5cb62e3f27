"""A small HTTP/1.1 client over asyncio streams: NIP-11 documents, ``url`` job inputs, and
the JSON APIs payments talk to (a Cashu mint).

dvmkit needs only bounded GETs and JSON POSTs, so it carries no HTTP client dependency. Every
response is capped in size and time; GET follows redirects a few times; anything unexpected
becomes an :class:`HttpError` with the URL (never the request body, which may carry secrets
such as Cashu proofs), never a foreign exception.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from dvmkit.errors import DVMError

MAX_HEADER_BYTES = 64 * 1024
MAX_REDIRECTS = 3


class HttpError(DVMError):
    """An HTTP request failed: unreachable, timed out, a bad status, too large, malformed."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(
    url: str,
    *,
    accept: str = "*/*",
    max_bytes: int = 1 << 20,
    timeout: float = 10.0,  # noqa: ASYNC109 - a timeout becomes an HttpError, not a cancel
    redirects: int = MAX_REDIRECTS,
) -> Response:
    """GET ``url`` (http or https) and return a 200 response.

    Raises:
        HttpError: an unsupported scheme, a connection failure, a timeout, a status other
            than 200 after at most ``redirects`` redirects, or a body over ``max_bytes``.
    """
    try:
        async with asyncio.timeout(timeout):
            for _ in range(redirects + 1):
                response = await _once("GET", url, accept, None, max_bytes)
                location = response.headers.get("location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise HttpError(f"answered HTTP {response.status}", url=url)
                return response
            raise HttpError(f"more than {redirects} redirects", url=url)
    except TimeoutError:
        raise HttpError(f"timed out after {timeout} s", url=url) from None
    except _FAILURES as exc:
        raise HttpError(f"request failed: {exc!r}"[:300], url=url) from None


async def post_json(
    url: str,
    body: bytes,
    *,
    max_bytes: int = 1 << 20,
    timeout: float = 10.0,  # noqa: ASYNC109 - a timeout becomes an HttpError, not a cancel
) -> Response:
    """POST the JSON ``body`` to ``url`` and return the response, whatever its status (a JSON
    API says what went wrong in the body of a 400). No redirects are followed.

    Raises:
        HttpError: an unsupported scheme, a connection failure, a timeout, or a body over
            ``max_bytes``. The message never quotes ``body``.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _once("POST", url, "application/json", body, max_bytes)
    except TimeoutError:
        raise HttpError(f"timed out after {timeout} s", url=url) from None
    except _FAILURES as exc:
        raise HttpError(f"request failed: {type(exc).__name__}", url=url) from None


_FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def _once(
    method: str, url: str, accept: str, payload: bytes | None, max_bytes: int
) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("only http and https URLs can be fetched", url=url)
    host = parts.hostname
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if tls else None, limit=MAX_HEADER_BYTES
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        name = f"[{host}]" if ":" in host else host
        host_header = name if parts.port is None else f"{name}:{port}"
        head_lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host_header}",
            f"Accept: {accept}",
            "User-Agent: dvmkit",
            "Connection: close",
        ]
        if payload is not None:
            head_lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        request_head = ("\r\n".join(head_lines) + "\r\n\r\n").encode("ascii", "replace")
        writer.write(request_head + (payload or b""))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(head, url)
        if method == "GET" and status != 200:
            return Response(status, headers, b"")  # a redirect or a failure: no body needed
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader, max_bytes, url)
        else:
            body = await _read_body(reader, headers.get("content-length"), max_bytes, url)
        return Response(status, headers, body)
    finally:
        writer.close()


async def _read_body(
    reader: asyncio.StreamReader, length: str | None, max_bytes: int, url: str
) -> bytes:
    if length is not None:
        if not length.isdigit() or int(length) > max_bytes:
            raise HttpError(f"body too large or bad length {length[:20]!r}", url=url)
        return await reader.readexactly(int(length))
    body = b""
    while len(body) <= max_bytes:
        more = await reader.read(max_bytes + 1 - len(body))
        if not more:
            return body
        body += more
    raise HttpError(f"body larger than {max_bytes} bytes", url=url)


def _parse_head(head: bytes, url: str) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise HttpError("malformed HTTP status line", url=url)
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
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("malformed chunk size", url=url) from None
        if size < 0 or len(body) + size > max_bytes:
            raise HttpError(f"body larger than {max_bytes} bytes", url=url)
        if size == 0:
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk
