"""A Cashu mint's HTTP API, as a wallet calls it: NUT-01/02 keys and keysets, NUT-03 swap,
NUT-04 bolt11 mint quotes and minting, NUT-07 proof states, NUT-09 restore.

The wire values (NUT-00 ``BlindedMessage`` and ``BlindSignature``, keysets, quotes, states) are
frozen dataclasses; :class:`MintClient` turns each endpoint into one awaitable call.

HTTP is :mod:`dvmkit.http`: one connection per call, every call bounded in time and response
size. Mint errors (NUT-00: HTTP 400 with ``{"detail", "code"}``) become
:class:`~dvmkit.payments.cashu_errors.MintError` (``TokenAlreadySpent`` for code 11001);
transport failures become ``MintError`` with ``code=None``. Nothing we send — proofs carry
secrets — is ever quoted in an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from coincurve import PublicKey

from dvmkit import http
from dvmkit.payments.cashu_errors import (
    CODE_TOKEN_ALREADY_SPENT,
    MintError,
    TokenAlreadySpent,
)
from dvmkit.payments.cashu_token import Proof, normalize_mint_url

DEFAULT_MAX_RESPONSE = 4 * 1024 * 1024  # a 1,000-signature swap answer is ~250 KiB


@dataclass(frozen=True, slots=True)
class BlindedMessage:
    """NUT-00 output: ask keyset ``keyset_id`` to sign ``B_`` for ``amount``."""

    amount: int
    keyset_id: str
    B_: str

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "id": self.keyset_id, "B_": self.B_}


@dataclass(frozen=True, slots=True)
class BlindSignature:
    """NUT-00 promise: ``C_`` on an output; ``dleq`` is the NUT-12 ``(e, s)`` when offered."""

    amount: int
    keyset_id: str
    C_: str
    dleq: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class KeysetInfo:
    """One entry of ``GET /v1/keysets`` (NUT-02)."""

    id: str
    unit: str
    active: bool
    input_fee_ppk: int = 0
    final_expiry: int | None = None


@dataclass(frozen=True, slots=True)
class MintQuote:
    """A NUT-04 bolt11 mint quote: pay ``request`` and ``quote`` can be minted.

    Whoever knows ``quote`` can mint what was paid for it (NUT-04: it "MUST remain a secret
    between user and mint"), so it is kept out of the repr, as it is out of error messages.
    """

    quote: str = field(repr=False)
    request: str
    amount: int
    state: str  # UNPAID, PAID or ISSUED


@dataclass(frozen=True, slots=True)
class ProofState:
    """NUT-07: ``state`` is UNSPENT, PENDING or SPENT for the proof whose ``Y`` this is."""

    Y: str
    state: str


class MintClient:
    """The endpoints of one mint.

    Args:
        url: the mint's base URL (http or https).
        timeout: seconds each call may take in all (connect, send, answer).
        max_response_bytes: larger answers are refused.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MintError("a mint URL must be http(s)://host[:port][/path]", mint=url)
        self.url = normalize_mint_url(url)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes

    def __repr__(self) -> str:
        return f"MintClient({self.url!r})"

    async def keysets(self) -> list[KeysetInfo]:
        """``GET /v1/keysets``: every keyset, active or not (NUT-02)."""
        body = _object(await self._call("GET", "/v1/keysets"), self.url)
        try:
            return [
                KeysetInfo(
                    id=_str(k["id"]),
                    unit=_str(k["unit"]),
                    active=bool(k["active"]),
                    input_fee_ppk=_int(k.get("input_fee_ppk") or 0),
                    final_expiry=None if k.get("final_expiry") is None else _int(k["final_expiry"]),
                )
                for k in body["keysets"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed keysets answer: {exc!r}"[:200], mint=self.url) from None

    async def keys(self, keyset_id: str) -> dict[int, PublicKey]:
        """``GET /v1/keys/{id}``: the public key for each amount (NUT-01)."""
        body = _object(await self._call("GET", f"/v1/keys/{quote(keyset_id)}"), self.url)
        try:
            (keyset,) = [k for k in body["keysets"] if k["id"] == keyset_id]
            return {_int(int(a)): PublicKey(bytes.fromhex(k)) for a, k in keyset["keys"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed keys answer: {exc!r}"[:200], mint=self.url) from None

    async def swap(
        self, inputs: Sequence[Proof], outputs: Sequence[BlindedMessage]
    ) -> list[BlindSignature]:
        """``POST /v1/swap`` (NUT-03): spend ``inputs``, get ``outputs`` signed."""
        body = {"inputs": [p.to_json() for p in inputs], "outputs": [o.to_json() for o in outputs]}
        return self._signatures(await self._call("POST", "/v1/swap", body), len(outputs))

    async def mint_quote(self, amount: int, *, unit: str = "sat") -> MintQuote:
        """``POST /v1/mint/quote/bolt11`` (NUT-04)."""
        body = await self._call("POST", "/v1/mint/quote/bolt11", {"amount": amount, "unit": unit})
        return self._quote(body, amount)

    async def mint_quote_state(self, quote_id: str, amount: int) -> MintQuote:
        """``GET /v1/mint/quote/bolt11/{quote}`` (NUT-04)."""
        path = f"/v1/mint/quote/bolt11/{quote(quote_id, safe='')}"
        body = await self._call("GET", path, shown="/v1/mint/quote/bolt11/…")
        return self._quote(body, amount)

    async def mint(self, quote_id: str, outputs: Sequence[BlindedMessage]) -> list[BlindSignature]:
        """``POST /v1/mint/bolt11`` (NUT-04): sign ``outputs`` for a paid quote."""
        body = {"quote": quote_id, "outputs": [o.to_json() for o in outputs]}
        return self._signatures(await self._call("POST", "/v1/mint/bolt11", body), len(outputs))

    async def restore(
        self, outputs: Sequence[BlindedMessage]
    ) -> list[tuple[BlindedMessage, BlindSignature]]:
        """``POST /v1/restore`` (NUT-09): the signatures the mint ever made on ``outputs``.

        Returns:
            ``(output, signature)`` for each of ``outputs`` the mint signed (others are left
            out); an answer about an output we did not ask for, or about one twice, is
            refused.
        """
        body = _object(
            await self._call("POST", "/v1/restore", {"outputs": [o.to_json() for o in outputs]}),
            self.url,
        )
        # NUT-09 names the list "signatures"; mints before it named it "promises".
        raw = body.get("signatures", body.get("promises"))
        signed = self._signatures({"signatures": raw}, len(raw) if isinstance(raw, list) else -1)
        try:
            echoed = [_str(o["B_"]) for o in body["outputs"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed restore answer: {exc!r}"[:200], mint=self.url) from None
        asked = {o.B_: o for o in outputs}
        if (
            len(echoed) != len(signed)
            or len(set(echoed)) != len(echoed)
            or not set(echoed) <= asked.keys()
        ):
            # Twice the same output would count its proof twice.
            raise MintError("restore answered for other outputs than asked", mint=self.url)
        return [(asked[b], sig) for b, sig in zip(echoed, signed, strict=True)]

    async def check_state(self, ys: Sequence[str]) -> list[ProofState]:
        """``POST /v1/checkstate`` (NUT-07) for proofs given by ``Y = hash_to_curve(secret)``."""
        body = _object(await self._call("POST", "/v1/checkstate", {"Ys": list(ys)}), self.url)
        try:
            states = [ProofState(Y=_str(s["Y"]), state=_str(s["state"])) for s in body["states"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed checkstate answer: {exc!r}"[:200], mint=self.url) from None
        if [s.Y for s in states] != list(ys):
            raise MintError("checkstate answered for other proofs than asked", mint=self.url)
        return states

    def _quote(self, answer: object, amount: int) -> MintQuote:
        body = _object(answer, self.url)
        try:
            return MintQuote(
                quote=_str(body["quote"]),
                request=_str(body["request"]),
                amount=_int(body.get("amount", amount)),
                state=_str(body["state"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed quote answer: {exc!r}"[:200], mint=self.url) from None

    def _signatures(self, answer: object, expected: int) -> list[BlindSignature]:
        body = _object(answer, self.url)
        try:
            signatures = [
                BlindSignature(
                    amount=_int(s["amount"]),
                    keyset_id=_str(s["id"]),
                    C_=_str(s["C_"]),
                    dleq=(_str(s["dleq"]["e"]), _str(s["dleq"]["s"])) if s.get("dleq") else None,
                )
                for s in body["signatures"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise MintError(f"malformed signatures: {exc!r}"[:200], mint=self.url) from None
        if len(signatures) != expected:
            raise MintError(f"{len(signatures)} signatures for {expected} outputs", mint=self.url)
        return signatures

    async def _call(
        self, method: str, path: str, body: object = None, *, shown: str | None = None
    ) -> object:
        """``shown`` stands for ``path`` in error messages when the path holds a secret."""
        url = self.url + path
        shown = path if shown is None else shown
        size, timeout = self.max_response_bytes, self.timeout
        try:
            if body is None:
                response = await http.get(
                    url, accept="application/json", max_bytes=size, timeout=timeout, redirects=0
                )
            else:
                payload = orjson.dumps(body)
                response = await http.post_json(url, payload, max_bytes=size, timeout=timeout)
        except http.HttpError as exc:
            # Its message names the URL and the failure, never what we sent (proofs).
            failure = str(exc).replace(url, self.url + shown)
            raise MintError(f"{method} {shown} failed: {failure}"[:300], mint=self.url) from None
        status, answer = response.status, response.body
        try:
            decoded = orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise MintError(f"{method} {shown}: HTTP {status}, not JSON", mint=self.url) from None
        if status == 200:
            return decoded
        detail, code = "", None
        if isinstance(decoded, Mapping):
            detail = str(decoded.get("detail", ""))[:200]
            raw_code = decoded.get("code")
            code = (
                raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
            )
        if code == CODE_TOKEN_ALREADY_SPENT:
            raise TokenAlreadySpent("token already spent", mint=self.url, code=code)
        raise MintError(
            f"{method} {shown}: HTTP {status} {detail}".rstrip(), mint=self.url, code=code
        )


def _object(answer: object, mint: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise MintError("answer is not a JSON object", mint=mint)
    return answer


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value
