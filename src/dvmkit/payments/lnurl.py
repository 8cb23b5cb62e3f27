"""LNURL-pay (LUD-06, LUD-16) with NIP-57 zaps: the client side.

::

    info = await fetch_pay_info("dvm@127.0.0.1:8080")  # a lightning address, or a URL
    request = zap_request(keys, recipient=dvm, amount_msat=21_000, relays=[relay], event_id=job)
    bolt11 = await fetch_invoice(info, 21_000, zap_request=request)

The server side, with zap receipts, is :mod:`dvmkit.payments.lnurl_server`.

Every answer the client reads is hostile until checked: its size is capped, its fields typed,
and an invoice is used only if it is for the amount asked and commits (description hash) to
what we sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from dvmkit import http as dvm_http
from dvmkit.errors import PaymentError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import is_hex64
from dvmkit.payments import bolt11, zaps

log = logging.getLogger("dvmkit.payments.lnurl")

__all__ = ["USERNAME", "LnurlError", "PayInfo", "fetch_invoice", "fetch_pay_info"]

MAX_ANSWER = 64 * 1024  # a payRequest or invoice answer is well under 4 KiB
MAX_METADATA = 16 * 1024
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
USERNAME = r"[a-z0-9._+-]{1,64}"  # LUD-16: the username part of a lightning address
_ADDRESS = re.compile(rf"({USERNAME})@([^@/?#\s]+)")
_REASON_CHARS = 200


class LnurlError(PaymentError):
    """An LNURL service could not be used: unreachable, refused (its reason), or a bad answer."""


@dataclass(frozen=True, slots=True)
class PayInfo:
    """A checked LUD-06 payRequest.

    Attributes:
        callback: the URL to ask for invoices.
        min_sendable: the least it invoices, msat.
        max_sendable: the most it invoices, msat.
        metadata: the metadata JSON text exactly as served (its sha256 is the invoice's
            description hash for a payment that is not a zap).
        allows_nostr: NIP-57: it takes zap requests and publishes receipts.
        nostr_pubkey: the key that signs its receipts (hex), when ``allows_nostr``.
    """

    callback: str
    min_sendable: int
    max_sendable: int
    metadata: str
    allows_nostr: bool
    nostr_pubkey: str | None


async def fetch_pay_info(address: str, *, timeout: float = 10.0) -> PayInfo:  # noqa: ASYNC109
    """Fetch and check the payRequest of a lightning address or an LNURL-pay URL.

    Args:
        address: ``name@host[:port]`` (LUD-16: ``https://host/.well-known/lnurlp/name``, or
            ``http://`` for a loopback host) or an ``https://`` URL (``http://`` on loopback).
        timeout: seconds for the whole request.

    Returns:
        The pay info.

    Raises:
        LnurlError: a malformed address, an unreachable service, an ``ERROR`` answer (its
            reason, shortened), or an answer that is not a valid payRequest.
    """
    if "://" in address:
        url = _check_url(address, what="LNURL")
    else:
        match = _ADDRESS.fullmatch(address.strip())
        if match is None:
            raise LnurlError("a lightning address is name@host (name: a-z 0-9 - _ . +)")
        name, host = match.groups()
        try:
            parts = urlsplit(f"//{host}")
            hostname, _ = parts.hostname, parts.port  # .port raises ValueError for a bad one
        except ValueError:
            hostname = None
        if not hostname:
            raise LnurlError(f"bad host in lightning address: {host[:100]!r}")
        scheme = "http" if hostname in _LOOPBACK else "https"
        url = f"{scheme}://{host}/.well-known/lnurlp/{name}"
    data = await _get_json(url, timeout)
    if data.get("tag") != "payRequest":
        raise LnurlError(f"{url}: not an LNURL-pay answer (tag must be 'payRequest')")
    callback, metadata = data.get("callback"), data.get("metadata")
    low, high = data.get("minSendable"), data.get("maxSendable")
    if not isinstance(callback, str):
        raise LnurlError(f"{url}: 'callback' must be a URL")
    if type(low) is not int or type(high) is not int or not 0 < low <= high:
        raise LnurlError(f"{url}: minSendable/maxSendable must be integers, 0 < min <= max")
    if not isinstance(metadata, str) or not _valid_metadata(metadata):
        raise LnurlError(f"{url}: 'metadata' must be a JSON array holding a text/plain entry")
    allows_nostr = data.get("allowsNostr", False)
    if not isinstance(allows_nostr, bool):
        raise LnurlError(f"{url}: 'allowsNostr' must be a boolean")
    pubkey = data.get("nostrPubkey") if allows_nostr else None
    if allows_nostr and not is_hex64(pubkey):
        raise LnurlError(f"{url}: allowsNostr needs 'nostrPubkey' as 64 lowercase hex")
    return PayInfo(
        callback=_check_url(callback, what="callback"),
        min_sendable=low,
        max_sendable=high,
        metadata=metadata,
        allows_nostr=allows_nostr,
        nostr_pubkey=pubkey,
    )


async def fetch_invoice(
    info: PayInfo,
    amount_msat: int,
    *,
    zap_request: Event | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> str:
    """Ask the callback for an invoice (LUD-06 step 5; NIP-57 Appendix B with a zap request).

    Args:
        info: from :func:`fetch_pay_info`.
        amount_msat: the amount; it must be within ``info``'s min/max.
        zap_request: a signed 9734 for a zap (its ``amount`` must equal ``amount_msat``).
        timeout: seconds for the request.

    Returns:
        The bolt11 invoice, checked: it decodes, is for ``amount_msat`` and its description
        hash is sha256 of the zap request JSON sent (or of ``info.metadata``).

    Raises:
        LnurlError: amount out of range (before any request), a service without zaps for a
            zap, an unreachable service, an ``ERROR`` answer, or an invoice that fails a check.
        InvalidZap: ``zap_request`` fails the checks the server would make.
    """
    if not info.min_sendable <= amount_msat <= info.max_sendable:
        raise LnurlError(
            f"{amount_msat} msat is outside {info.min_sendable}..{info.max_sendable} msat"
        )
    params = [("amount", str(amount_msat))]
    committed = info.metadata
    if zap_request is not None:
        if not info.allows_nostr:
            raise LnurlError("this LNURL service does not take zaps (allowsNostr is not true)")
        zaps.check_zap_request(zap_request, amount_msat=amount_msat)
        committed = zap_request.to_json()
        params.append(("nostr", committed))
        lnurl = zap_request.tag_value("lnurl")
        if lnurl is not None:
            params.append(("lnurl", lnurl))
    joiner = "&" if "?" in info.callback else "?"
    url = info.callback + joiner + urlencode(params, quote_via=quote)
    data = await _get_json(url, timeout, shown=info.callback)
    text = data.get("pr")
    if not isinstance(text, str):
        raise LnurlError(f"{info.callback}: the answer has no 'pr' invoice")
    try:
        invoice = bolt11.decode(text)
    except bolt11.InvalidInvoice as exc:
        raise LnurlError(f"{info.callback}: the invoice does not decode: {exc}") from None
    if invoice.amount_msat != amount_msat:
        raise LnurlError(f"{info.callback}: the invoice is for {invoice.amount_msat} msat")
    # LUD-06 and NIP-57: the invoice must commit to what we sent, or the payee could later
    # claim the payment was for something else (and no valid zap receipt could exist).
    if invoice.description_hash != hashlib.sha256(committed.encode()).hexdigest():
        raise LnurlError(f"{info.callback}: the invoice's description hash is not ours")
    return invoice.bolt11


async def _get_json(url: str, timeout: float, *, shown: str | None = None) -> dict[str, Any]:  # noqa: ASYNC109
    shown = shown or url  # a zap request in a query string is noise in a message
    try:
        response = await dvm_http.get(
            url, accept="application/json", max_bytes=MAX_ANSWER, timeout=timeout
        )
    except dvm_http.HttpError as exc:
        message = str(exc).removeprefix(f"{url}: ")
        raise LnurlError(f"{shown}: {message}") from None
    try:
        data = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        raise LnurlError(f"{shown}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise LnurlError(f"{shown}: the answer is not a JSON object")
    if data.get("status") == "ERROR":
        reason = data.get("reason")
        shown_reason = _printable(reason) if isinstance(reason, str) else "no reason given"
        raise LnurlError(f"{shown}: refused: {shown_reason}")
    return data


def _check_url(url: str, *, what: str) -> str:
    # LUD-01: https only (http for onion services); we also allow loopback, for local runs.
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise LnurlError(f"the {what} URL does not parse") from None
    host = parts.hostname or ""
    local = host in _LOOPBACK or host.endswith(".onion")
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise LnurlError(f"the {what} URL must be https:// (http:// only on loopback or onion)")
    return url.strip()


def _valid_metadata(text: str) -> bool:
    if len(text) > MAX_METADATA:
        return False
    try:
        entries = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(entries, list)
        and all(isinstance(e, list) and len(e) >= 2 and isinstance(e[0], str) for e in entries)
        and any(e[0] == "text/plain" for e in entries)
    )


def _printable(text: str) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:_REASON_CHARS])
    return cleaned + ("…" if len(text) > _REASON_CHARS else "")
