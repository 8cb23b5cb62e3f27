"""A Cashu ecash wallet bound to one mint: mint, receive, send, check (NUT-00/01/02/03/04/07).

What a DVM needs from Cashu (DESIGN.md §6):

- the **provider** calls :meth:`CashuWallet.receive` on a token a customer sent: its proofs
  are swapped at the mint for fresh ones only this wallet knows. The swap is the proof of
  payment, and it is what stops a double spend: a token that paid before raises
  :class:`~dvmkit.payments.cashu_errors.TokenAlreadySpent`;
- the **customer** calls :meth:`CashuWallet.send` to cut a token of an exact amount from its
  proofs (swapping at the mint for change when no subset adds up);
- tests and the demo fund a wallet with :meth:`CashuWallet.request_mint` +
  :meth:`CashuWallet.mint` (a bolt11 quote; nutshell's FakeWallet pays its own invoices).

Proofs live in memory. ``on_change`` is the persistence hook: it gets the whole proof set
after every change, so a caller can write it somewhere durable. A crash *between* the mint's
answer and that write would lose the fresh proofs (the inputs are spent by then), so a
``journal`` (:class:`OutputJournal`) records each request's blinded outputs, with their
secrets and blinding factors, durably *before* they go to the mint; after a crash
:meth:`CashuWallet.restore` asks the mint for the signatures it made on them (NUT-09) and
rebuilds the proofs.

Amounts are in the keyset's unit (``sat`` by default), not msat.

The sibling modules hold the parts: :mod:`~dvmkit.payments.cashu_crypto` (BDHKE, keyset ids,
DLEQ), :mod:`~dvmkit.payments.cashu_token` (proofs, V3/V4 tokens),
:mod:`~dvmkit.payments.cashu_mint` (the mint's HTTP API) and
:mod:`~dvmkit.payments.cashu_errors` (the error tree).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from coincurve import PrivateKey, PublicKey

from dvmkit.payments import cashu_crypto as crypto
from dvmkit.payments.cashu_errors import (
    CashuError,
    InsufficientFunds,
    InvalidToken,
    MintError,
    TokenAlreadySpent,
    UntrustedMint,
)
from dvmkit.payments.cashu_mint import (
    BlindedMessage,
    BlindSignature,
    KeysetInfo,
    MintClient,
    MintQuote,
    ProofState,
)
from dvmkit.payments.cashu_token import (
    Proof,
    Token,
    decode_token,
    encode_token,
    normalize_mint_url,
)

__all__ = [
    "Blinded",
    "CashuError",
    "CashuWallet",
    "InsufficientFunds",
    "InvalidToken",
    "MintError",
    "MintQuote",
    "OutputJournal",
    "Proof",
    "ProofState",
    "Token",
    "TokenAlreadySpent",
    "UntrustedMint",
    "decode_token",
    "encode_token",
]

SHORT_ID_LENGTH = 16  # hex chars: a v2 keyset's short id is its first 8 bytes (NUT-02)


@dataclass(frozen=True, slots=True)
class Blinded:
    """An output sent to the mint, with what unblinds its signature. Money once signed: the
    secret and blinding factor are never shown."""

    amount: int
    keyset_id: str
    B_: str
    secret: str = field(repr=False)
    r: str = field(repr=False)  # the blinding factor, 32 bytes hex

    @property
    def output(self) -> BlindedMessage:
        return BlindedMessage(amount=self.amount, keyset_id=self.keyset_id, B_=self.B_)

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "id": self.keyset_id,
            "B_": self.B_,
            "secret": self.secret,
            "r": self.r,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Blinded:
        """Raises: KeyError, TypeError or ValueError for a malformed row."""
        amount, keyset_id, b_, secret, r = (data[k] for k in ("amount", "id", "B_", "secret", "r"))
        if type(amount) is not int or amount <= 0:
            raise ValueError("amount must be a positive integer")
        if not all(isinstance(v, str) for v in (keyset_id, b_, secret, r)) or len(r) != 64:
            raise ValueError("id, B_, secret and r must be strings, r 32 bytes hex")
        bytes.fromhex(r)
        return cls(amount, keyset_id, b_, secret, r)


class OutputJournal(Protocol):
    """Where a wallet records outputs while the mint may be signing them."""

    async def record(self, outputs: tuple[Blinded, ...]) -> None:
        """Keep ``outputs`` durably; they go to the mint only once this returns."""

    def forget(self, outputs: tuple[Blinded, ...]) -> None:
        """Their proofs are in the wallet now (``on_change`` has them), or the mint refused
        them and signed nothing: they need no restoring."""


@dataclass(frozen=True, slots=True)
class _Keyset:
    info: KeysetInfo
    keys: dict[int, PublicKey]


class CashuWallet:
    """Ecash of one unit at one mint, held in memory.

    Args:
        mint_url: the mint this wallet trusts; tokens from any other mint are refused
            without contacting it.
        unit: the keyset unit (``sat``).
        proofs: proofs to start with (what ``on_change`` saved last time).
        on_change: called with every proof after each change (the persistence hook).
        journal: records outputs before they go to the mint (see :class:`OutputJournal`).
        timeout: seconds each call to the mint may take.
        verify_dleq: check the mint's NUT-12 DLEQ proofs when it offers them.
        randbytes: the randomness for secrets and blinding factors.
    """

    def __init__(
        self,
        *,
        mint_url: str,
        unit: str = "sat",
        proofs: Iterable[Proof] = (),
        on_change: Callable[[tuple[Proof, ...]], None] | None = None,
        journal: OutputJournal | None = None,
        timeout: float = 10.0,
        verify_dleq: bool = True,
        randbytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.client = MintClient(mint_url, timeout=timeout)
        self.mint_url = self.client.url
        self.unit = unit
        self.verify_dleq = verify_dleq
        self._proofs: list[Proof] = list(proofs)
        self._on_change = on_change
        self._journal = journal
        self._randbytes = randbytes
        self._keysets: dict[str, KeysetInfo] = {}
        self._active: _Keyset | None = None
        self._lock = asyncio.Lock()  # send() picks proofs; two at once must not pick the same

    def __repr__(self) -> str:
        return (
            f"CashuWallet(mint={self.mint_url!r}, unit={self.unit!r}, "
            f"balance={self.balance}, proofs={len(self._proofs)})"
        )

    @property
    def proofs(self) -> tuple[Proof, ...]:
        return tuple(self._proofs)

    @property
    def balance(self) -> int:
        return sum(p.amount for p in self._proofs)

    async def load_keysets(self) -> None:
        """Fetch the mint's keysets and the active keyset's keys, and check its id (NUT-02).

        Called on first use; call again after the mint rotates keys.

        Raises:
            MintError: unreachable, no active keyset for the unit, or keys whose derived id
                is not the id the mint gave them.
        """
        infos = await self.client.keysets()
        self._keysets = {k.id: k for k in infos}
        active = [k for k in infos if k.active and k.unit == self.unit]
        if not active:
            raise MintError(f"no active keyset for unit {self.unit!r}", mint=self.mint_url)
        info = active[0]
        keys = await self.client.keys(info.id)
        if not crypto.keyset_id_matches(
            info.id,
            keys,
            unit=info.unit,
            input_fee_ppk=info.input_fee_ppk,
            final_expiry=info.final_expiry,
        ):
            raise MintError(f"keyset {info.id} does not derive from its keys", mint=self.mint_url)
        self._active = _Keyset(info, keys)

    async def request_mint(self, amount: int) -> MintQuote:
        """Ask for a bolt11 invoice that, once paid, lets :meth:`mint` issue ``amount``."""
        _check_amount(amount)
        return await self.client.mint_quote(amount, unit=self.unit)

    async def mint(
        self,
        quote: MintQuote,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - an unpaid quote is a MintError, not a cancel
    ) -> int:
        """Wait (at most ``timeout`` s) until the quote's invoice is paid, then mint its amount.

        Returns:
            The amount added to the wallet.

        Raises:
            MintError: the quote was not paid in time, or the mint refused.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._paid(quote)
        except TimeoutError:
            raise MintError(
                f"the quote was not paid after {timeout} s", mint=self.mint_url
            ) from None
        keyset = await self._active_keyset()
        blinded = self._outputs(keyset, crypto.split_amount(quote.amount))
        async with self._journaled(blinded):
            signatures = await self.client.mint(quote.quote, [b.output for b in blinded])
            self._add(self._unblind(keyset, blinded, signatures))
        return quote.amount

    async def receive(self, token: str | Token) -> int:
        """Take a payment: swap the token's proofs at the mint for fresh ones of our own.

        Returns:
            The amount received (the token's amount less the mint's input fee).

        Raises:
            InvalidToken: the token does not decode, is of another unit, or names keysets
                the mint does not have.
            UntrustedMint: the token is from another mint (which is never contacted).
            TokenAlreadySpent: the token was already spent (it paid someone before).
            MintError: the mint refused or could not be reached.
        """
        if isinstance(token, str):
            token = decode_token(token)
        if normalize_mint_url(token.mint) != self.mint_url:
            raise UntrustedMint("token is from a mint this wallet does not use", mint=token.mint)
        if token.unit != self.unit:
            raise InvalidToken(
                f"token unit {token.unit!r} is not {self.unit!r}", mint=self.mint_url
            )
        keyset = await self._active_keyset()
        inputs = [await self._expanded(p) for p in token.proofs]
        amount = sum(p.amount for p in inputs) - self._fee(inputs)
        if amount <= 0:
            raise InvalidToken("token is worth nothing after the mint's fee", mint=self.mint_url)
        blinded = self._outputs(keyset, crypto.split_amount(amount))
        async with self._journaled(blinded):
            signatures = await self.client.swap(inputs, [b.output for b in blinded])
            self._add(self._unblind(keyset, blinded, signatures))
        return amount

    async def send(
        self, amount: int, *, memo: str | None = None, version: Literal[3, 4] = 4
    ) -> str:
        """Cut a token worth exactly ``amount`` from the wallet's proofs.

        Proofs that add up exactly are sent as they are; otherwise enough are swapped at the
        mint for the amount plus change, and the change stays in the wallet.

        Returns:
            The token (``cashuB…``, or ``cashuA…`` for ``version=3``). It is money: hand it
            only to the payee.

        Raises:
            InsufficientFunds: the wallet holds less than ``amount`` (plus the mint's fee).
            MintError: the swap for change failed (the proofs stay in the wallet).
        """
        _check_amount(amount)
        async with self._lock:
            chosen = _exact_subset(self._proofs, amount)
            if chosen is None:
                keyset = await self._active_keyset()
                chosen = self._cover(amount)
                change = sum(p.amount for p in chosen) - amount - self._fee(chosen)
                blinded = self._outputs(
                    keyset, crypto.split_amount(amount) + crypto.split_amount(change)
                )
                self._remove(chosen)
                try:
                    async with self._journaled(blinded):
                        signatures = await self.client.swap(chosen, [b.output for b in blinded])
                        chosen, keep = _take(self._unblind(keyset, blinded, signatures), amount)
                        self._add(keep)
                except BaseException:
                    self._add(chosen)  # their state at the mint is unknown: check_state tells
                    raise
            else:
                self._remove(chosen)
        outgoing = tuple(_short(p) for p in chosen)
        return encode_token(
            Token(mint=self.mint_url, proofs=outgoing, unit=self.unit, memo=memo), version=version
        )

    async def restore(self, blinded: Sequence[Blinded]) -> int:
        """Rebuild the proofs of outputs the mint signed but whose answer was lost (NUT-09):
        the ones a journal recorded before a crash.

        Proofs the wallet holds already, and ones spent since (NUT-07), are not added again.

        Returns:
            The amount added.

        Raises:
            MintError: the mint could not be reached or refused; the outputs stay recorded.
        """
        if not blinded:
            return 0
        await self._active_keyset()
        by_b = {b.B_: b for b in blinded}
        held = {p.secret for p in self._proofs}
        found: list[Proof] = []
        for output, signature in await self.client.restore([b.output for b in blinded]):
            keyset = await self._keyset(output.keyset_id)
            (proof,) = self._unblind(keyset, [by_b[output.B_]], [signature])
            if proof.secret not in held:
                found.append(proof)
        states = await self.check_state(found)
        fresh = [p for p, s in zip(found, states, strict=True) if s.state == "UNSPENT"]
        self._add(fresh)
        return sum(p.amount for p in fresh)

    async def check_state(self, proofs: Sequence[Proof] | None = None) -> list[ProofState]:
        """NUT-07: whether each proof (default: the wallet's) is UNSPENT, PENDING or SPENT."""
        chosen = self._proofs if proofs is None else proofs
        ys = [crypto.hash_to_curve(p.secret.encode()).format().hex() for p in chosen]
        return await self.client.check_state(ys) if ys else []

    # -- internals -----------------------------------------------------------------------------

    async def _active_keyset(self) -> _Keyset:
        if self._active is None:
            await self.load_keysets()
        assert self._active is not None
        return self._active

    async def _keyset(self, keyset_id: str) -> _Keyset:
        """A keyset with its keys: the active one, or an older one the mint still has."""
        active = await self._active_keyset()
        if keyset_id == active.info.id:
            return active
        info = self._keysets.get(keyset_id)
        if info is None:
            raise MintError(f"the mint has no keyset {keyset_id}", mint=self.mint_url)
        return _Keyset(info, await self.client.keys(keyset_id))

    async def _paid(self, quote: MintQuote) -> None:
        """Return once the quote is paid. The mint is polled: NUT-17 websockets are not needed."""
        pause, state = 0.01, quote
        while state.state != "PAID":
            if state.state == "ISSUED":
                # The quote's id is not in the message: it is what mints the ecash (NUT-04).
                raise MintError("the quote was already minted", mint=self.mint_url)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
            state = await self.client.mint_quote_state(quote.quote, quote.amount)

    @contextlib.asynccontextmanager
    async def _journaled(self, blinded: tuple[Blinded, ...]) -> AsyncIterator[None]:
        """Record ``blinded`` before the body sends them; forget them once their proofs are
        added, or once the mint refused them (an answered error: it signed nothing). A
        failure without an answer (a timeout, a dropped connection) keeps them recorded:
        the mint may have signed, and :meth:`restore` will tell."""
        if self._journal is None:
            yield
            return
        await self._journal.record(blinded)
        try:
            yield
        except MintError as exc:
            if exc.code is not None:
                self._journal.forget(blinded)
            raise
        self._journal.forget(blinded)

    async def _expanded(self, proof: Proof) -> Proof:
        """The proof with its full keyset id: tokens carry 8-byte short ids for v2 keysets."""
        for attempt in range(2):
            if proof.keyset_id in self._keysets:
                return proof
            matches = [k for k in self._keysets if k.startswith(proof.keyset_id)]
            if len(proof.keyset_id) == SHORT_ID_LENGTH and len(matches) == 1:
                return Proof(proof.amount, matches[0], proof.secret, proof.C)
            if attempt == 0:
                await self.load_keysets()  # the mint may have a keyset we have not seen yet
        raise InvalidToken(f"token names keyset {proof.keyset_id} the mint does not have")

    def _fee(self, inputs: Sequence[Proof]) -> int:
        ppk = sum(
            self._keysets[p.keyset_id].input_fee_ppk for p in inputs if p.keyset_id in self._keysets
        )
        return (ppk + 999) // 1000  # NUT-02: the sum over inputs, rounded up

    def _cover(self, amount: int) -> list[Proof]:
        chosen: list[Proof] = []
        for proof in sorted(self._proofs, key=lambda p: p.amount, reverse=True):
            if sum(p.amount for p in chosen) >= amount + self._fee(chosen):
                break
            chosen.append(proof)
        total = sum(p.amount for p in chosen)
        if total < amount + self._fee(chosen):
            raise InsufficientFunds(
                f"asked for {amount} {self.unit}, the wallet holds {self.balance}",
                mint=self.mint_url,
                balance=self.balance,
                wanted=amount,
            )
        return chosen

    def _outputs(self, keyset: _Keyset, amounts: Sequence[int]) -> tuple[Blinded, ...]:
        outputs = []
        for amount in sorted(amounts):  # NUT-03: outputs in ascending order leak less
            if amount not in keyset.keys:
                raise CashuError(f"the mint's keyset has no key for {amount}", mint=self.mint_url)
            secret = self._randbytes(32).hex()
            r = crypto.random_scalar(self._randbytes)
            b_ = crypto.blind(secret, r).format().hex()
            outputs.append(Blinded(amount, keyset.info.id, b_, secret, r.secret.hex()))
        return tuple(outputs)

    def _unblind(
        self,
        keyset: _Keyset,
        outputs: Sequence[Blinded],
        signatures: Sequence[BlindSignature],
    ) -> list[Proof]:
        proofs = []
        for output, signature in zip(outputs, signatures, strict=True):
            secret, r = output.secret, PrivateKey(bytes.fromhex(output.r))
            if (signature.amount, signature.keyset_id) != (output.amount, output.keyset_id):
                raise MintError(
                    "the mint signed another amount or keyset than asked", mint=self.mint_url
                )
            mint_key = keyset.keys[output.amount]
            try:
                c_blind = PublicKey(bytes.fromhex(signature.C_))
                dleq_ok = (
                    signature.dleq is None
                    or not self.verify_dleq
                    or crypto.verify_dleq(
                        mint_key=mint_key,
                        blinded=PublicKey(bytes.fromhex(output.B_)),
                        blind_signature=c_blind,
                        e=bytes.fromhex(signature.dleq[0]),
                        s=bytes.fromhex(signature.dleq[1]),
                    )
                )
            except ValueError:
                raise MintError(
                    "the mint's signature is not a valid point", mint=self.mint_url
                ) from None
            if not dleq_ok:
                raise MintError("the mint's DLEQ proof does not verify", mint=self.mint_url)
            c = crypto.unblind(c_blind, r, mint_key).format().hex()
            proofs.append(
                Proof(amount=output.amount, keyset_id=output.keyset_id, secret=secret, C=c)
            )
        return proofs

    def _add(self, proofs: Iterable[Proof]) -> None:
        self._proofs.extend(proofs)
        self._changed()

    def _remove(self, proofs: Iterable[Proof]) -> None:
        gone = {id(p) for p in proofs}
        self._proofs = [p for p in self._proofs if id(p) not in gone]
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(tuple(self._proofs))


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("an amount must be a positive integer")


def _exact_subset(proofs: Sequence[Proof], amount: int) -> list[Proof] | None:
    """Proofs that add up to exactly ``amount``, picked largest first; None when greed fails."""
    chosen, remaining = [], amount
    for proof in sorted(proofs, key=lambda p: p.amount, reverse=True):
        if proof.amount <= remaining:
            chosen.append(proof)
            remaining -= proof.amount
    return chosen if remaining == 0 else None


def _take(proofs: Sequence[Proof], amount: int) -> tuple[list[Proof], list[Proof]]:
    """Split fresh proofs into ``amount`` exactly (largest first) and the rest."""
    chosen = _exact_subset(proofs, amount)
    assert chosen is not None  # the outputs were made as split(amount) + split(change)
    taken = {id(p) for p in chosen}
    return chosen, [p for p in proofs if id(p) not in taken]


def _short(proof: Proof) -> Proof:
    # Wallets write v2 keysets' 8-byte short id in tokens (NUT-02); the receiver expands it.
    if proof.keyset_id.startswith("01") and len(proof.keyset_id) > SHORT_ID_LENGTH:
        return Proof(proof.amount, proof.keyset_id[:SHORT_ID_LENGTH], proof.secret, proof.C)
    return proof
