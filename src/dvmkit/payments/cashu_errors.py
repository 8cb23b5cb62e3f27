"""The Cashu errors, all under :class:`~dvmkit.errors.PaymentError`::

    PaymentError
    └── CashuError               anything Cashu; ``mint`` is the mint's URL when one is known
        ├── InvalidToken         a token string or value that does not decode or check out
        ├── UntrustedMint        a token from a mint this wallet does not use (never contacted)
        ├── InsufficientFunds    the wallet holds less than it was asked to send
        └── MintError            the mint refused or could not be reached; ``code`` is its
            │                    NUT error code (None for transport failures)
            └── TokenAlreadySpent  the mint says the proofs were already spent (NUT code 11001)

Messages never contain a token, a proof's ``secret`` or a blinding factor: a token is a bearer
instrument, and an error message ends up in logs and in ``error`` statuses sent to customers.
"""

from __future__ import annotations

from dvmkit.errors import PaymentError

#: NUT-00 error code for "Token already spent" (nutshell ``TokenAlreadySpentError``).
CODE_TOKEN_ALREADY_SPENT = 11001


class CashuError(PaymentError):
    """A Cashu operation failed; ``mint`` is the mint's URL when one is involved."""

    def __init__(self, message: str, *, mint: str | None = None) -> None:
        super().__init__(message if mint is None else f"{mint}: {message}")
        self.mint = mint


class InvalidToken(CashuError):
    """A token that does not decode (prefix, base64, JSON/CBOR, types, amounts, sizes)."""


class UntrustedMint(CashuError):
    """A token issued by a mint other than the wallet's own: it is worth nothing to us."""


class InsufficientFunds(CashuError):
    """The wallet's proofs add up to less than the amount asked for."""

    def __init__(self, message: str, *, mint: str | None = None, balance: int, wanted: int):
        super().__init__(message, mint=mint)
        self.balance = balance
        self.wanted = wanted


class MintError(CashuError):
    """The mint answered with an error (``code`` is its NUT error code) or could not be reached
    (``code`` is None)."""

    def __init__(self, message: str, *, mint: str | None = None, code: int | None = None):
        super().__init__(message if code is None else f"{message} (code {code})", mint=mint)
        self.code = code


class TokenAlreadySpent(MintError):
    """The mint refused the proofs as already spent: this token paid someone before."""
