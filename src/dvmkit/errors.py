"""The one exception tree of dvmkit.

Every error dvmkit raises on purpose is a :class:`DVMError`; foreign exceptions (from
coincurve, cryptography, orjson, websockets, sqlite) are translated once, where they enter,
so callers never need to catch anything else::

    DVMError
    ├── ProtocolError            bad bytes or values on the wire (pure layers)
    │   ├── InvalidKey           a secret or public key that is malformed or out of range
    │   ├── InvalidEvent         an event that is malformed, or whose id or signature is wrong
    │   ├── InvalidFilter        a NIP-01 filter that is malformed
    │   ├── Bech32Error          NIP-19 text that does not decode
    │   ├── EncryptionError      a plaintext that cannot be encrypted (NIP-04/44)
    │   ├── DecryptionError      a payload that is malformed, truncated or forged (NIP-04/44/59)
    │   └── GiftWrapError        a NIP-59 wrap whose seal or inner event does not check out
    ├── RelayError               a relay connection failed or refused (carries the url)
    ├── PaymentError             a payment could not be made or confirmed
    │   ├── PaymentRequired      a DVM asked for a payment the customer will not or cannot make
    │   ├── PaymentFailed        the customer's wallet, mint or LNURL service failed to pay
    │   │                        (customer.paying)
    │   ├── InvalidInvoice       a BOLT-11 invoice that does not decode or check out
    │   │                        (payments.bolt11)
    │   ├── WalletError          a NIP-47 wallet answered with an error; ``code`` is NIP-47's
    │   ├── InvalidURI           a ``nostr+walletconnect://`` URI that does not parse
    │   │                        (both payments.nip47)
    │   ├── InvalidZap           a zap request or receipt that fails a NIP-57 check;
    │   │                        ``reason`` names which (payments.zaps)
    │   ├── LnurlError           an LNURL-pay service unreachable, refusing, or answering
    │   │                        badly (payments.lnurl)
    │   └── CashuError           anything Cashu; its own tree is in payments.cashu_errors
    │                            (InvalidToken, UntrustedMint, InsufficientFunds, MintError
    │                            and TokenAlreadySpent)
    ├── StoreError               the job store could not read or write (sqlite/postgres)
    ├── JobError                 a job failed; carries a NIP-90/#1941 error code
    │   ├── JobFailed            the DVM answered ``error`` (customer side; carries the DVM)
    │   │   └── JobRefunded      ... of a paid job, and gave money back (customer.budget)
    │   └── JobCancelled         the job was cancelled before it produced a result
    └── NoAnswer                 no live DVM answered in time (customer side)

Payment errors live beside the code that raises them (a module per wallet or protocol, as
the map says), all under :class:`PaymentError`, so ``except PaymentError`` catches every one.
Messages say what was wrong and, where it helps, what to do; they never contain secrets.
"""

from __future__ import annotations


class DVMError(Exception):
    """Base of every error dvmkit raises on purpose."""


class ProtocolError(DVMError):
    """Input bytes or values that do not follow the protocol."""


class InvalidKey(ProtocolError):
    """A secret or public key that is malformed or out of range."""


class InvalidEvent(ProtocolError):
    """An event that is malformed, or whose id or signature does not verify."""

    def __init__(self, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message if event_id is None else f"{message} (event {event_id})")
        self.event_id = event_id


class InvalidFilter(ProtocolError):
    """A NIP-01 filter that is malformed."""


class Bech32Error(ProtocolError):
    """NIP-19 bech32 text that does not decode."""


class EncryptionError(ProtocolError):
    """A plaintext or key that cannot be encrypted."""


class DecryptionError(ProtocolError):
    """A ciphertext payload that is malformed, truncated, or fails its MAC."""


class GiftWrapError(ProtocolError):
    """A NIP-59 wrap whose seal or inner event does not check out."""


class RelayError(DVMError):
    """A relay connection failed, or a relay refused what we sent."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message if url is None else f"{url}: {message}")
        self.url = url


class PaymentError(DVMError):
    """A payment could not be made or confirmed."""


class StoreError(DVMError):
    """The job store could not read or write; carries the job id when there is one."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message if job_id is None else f"{message} (job {job_id})")
        self.job_id = job_id


class JobError(DVMError):
    """A job failed; ``code`` is one of the NIP-90 / #1941 error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PaymentRequired(PaymentError):
    """A DVM asked to be paid and the customer did not pay (above its cap, or unpayable).

    Attributes:
        dvm: the DVM's pubkey.
        amount_msat: what it asked for.
        cap_msat: the customer's cap, or None when there was none.
        bolt11: the invoice it sent, if any (public: an invoice is not a secret).
    """

    def __init__(
        self,
        message: str,
        *,
        dvm: str,
        amount_msat: int,
        cap_msat: int | None = None,
        bolt11: str | None = None,
    ) -> None:
        super().__init__(message)
        self.dvm = dvm
        self.amount_msat = amount_msat
        self.cap_msat = cap_msat
        self.bolt11 = bolt11


class JobFailed(JobError):
    """The DVM answered ``error``; ``code`` and ``message`` are its own, ``dvm`` its pubkey."""

    def __init__(self, code: str, message: str, *, dvm: str) -> None:
        super().__init__(code, message)
        self.dvm = dvm


class JobCancelled(JobError):
    """The job was cancelled (by the customer, or the DVM said ``cancelled``)."""

    def __init__(self, message: str, *, dvm: str | None = None) -> None:
        super().__init__("CANCELLED", message)
        self.dvm = dvm


class NoAnswer(DVMError):
    """No DVM answered in time, or none was alive to ask."""
