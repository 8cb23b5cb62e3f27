"""The dev wallet's ledger: accounts, invoices and settlements in one SQLite file.

Every settlement is one ``BEGIN IMMEDIATE`` transaction: the invoice is checked (known, unpaid,
unexpired, another account's), the payer debited and the payee credited, or nothing changes.
A ``CHECK`` keeps balances non-negative even if a caller forgot to look. An invoice is reported
settled only when this transaction committed for it.

The wallet's own secrets (its Nostr key and its Lightning node key) live in the same file, so
``dvm wallet new`` and ``dvm wallet serve`` agree on who the wallet is; the file is created
0600. Client secrets are never stored (NIP-47: the service must not rely on knowing them),
only their public keys.

Calls are synchronous and take well under a millisecond on a local file; the dev wallet calls
them from its event loop.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dvmkit.errors import StoreError
from dvmkit.nostr.keys import Keys
from dvmkit.payments.nip47 import Transaction, WalletError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    pubkey TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    balance_msat INTEGER NOT NULL DEFAULT 0 CHECK (balance_msat >= 0),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS invoices (
    payment_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (pubkey),
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
    description TEXT,
    description_hash TEXT,
    preimage TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER,
    payer TEXT REFERENCES accounts (pubkey)
);
CREATE INDEX IF NOT EXISTS invoices_payer ON invoices (payer);
CREATE TABLE IF NOT EXISTS responses (request_id TEXT PRIMARY KEY, event TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class LedgerInvoice:
    """An invoice as the ledger holds it."""

    payment_hash: str
    account: str
    bolt11: str
    amount_msat: int
    description: str | None
    description_hash: str | None
    # Until the invoice is paid the preimage is a secret: whoever shows it "proves" payment.
    preimage: str = field(repr=False)
    created_at: int
    expires_at: int
    settled_at: int | None
    payer: str | None

    def transaction(self, *, viewer: str, now: float) -> Transaction:
        """What ``viewer`` may see of it: the preimage only once it is paid."""
        if self.settled_at is not None:
            state = "settled"
        elif now >= self.expires_at:
            state = "expired"
        else:
            state = "pending"
        return Transaction(
            type="outgoing" if viewer == self.payer and viewer != self.account else "incoming",
            payment_hash=self.payment_hash,
            amount_msat=self.amount_msat,
            invoice=self.bolt11,
            state=state,
            description=self.description,
            description_hash=self.description_hash,
            preimage=self.preimage if self.settled_at is not None else None,
            created_at=self.created_at,
            expires_at=self.expires_at,
            settled_at=self.settled_at,
        )


class Ledger:
    """The dev wallet's SQLite ledger (a file in WAL mode, or ``":memory:"``)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:" and not os.path.exists(self.path):
            # Create it private: it holds the wallet's keys.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the wallet ledger {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"wallet ledger: {exc}") from None

    # -- the wallet's own keys ----------------------------------------------------------------

    def secret(self, name: str) -> bytes:
        """A 32-byte secret kept in the ledger, created on first use (``wallet``, ``node``)."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            if row is not None:
                return bytes.fromhex(row[0])
            secret = Keys.generate().secret_bytes()
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (name, secret.hex()))
            return secret

    # -- accounts ----------------------------------------------------------------------------

    def add_account(self, pubkey: str, *, name: str = "", now: float | None = None) -> None:
        created = int(time.time() if now is None else now)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accounts (pubkey, name, created_at) VALUES (?, ?, ?)",
                (pubkey, name, created),
            )

    def has_account(self, pubkey: str) -> bool:
        row = self._db.execute("SELECT 1 FROM accounts WHERE pubkey = ?", (pubkey,)).fetchone()
        return row is not None

    def accounts(self) -> list[tuple[str, str, int]]:
        """``(pubkey, name, balance_msat)`` of every account, oldest first."""
        rows = self._db.execute(
            "SELECT pubkey, name, balance_msat FROM accounts ORDER BY created_at, pubkey"
        )
        return [(str(p), str(n), int(b)) for p, n, b in rows]

    def balance(self, pubkey: str) -> int:
        """The account's balance in msat.

        Raises:
            WalletError: ``UNAUTHORIZED`` for an unknown account.
        """
        row = self._db.execute(
            "SELECT balance_msat FROM accounts WHERE pubkey = ?", (pubkey,)
        ).fetchone()
        if row is None:
            raise WalletError("UNAUTHORIZED", "no wallet is connected to this key")
        return int(row[0])

    def deposit(self, pubkey: str, amount_msat: int) -> int:
        """Credit an account out of thin air (dev and tests only); the new balance.

        Raises:
            WalletError: ``UNAUTHORIZED`` for an unknown account.
            ValueError: a non-positive amount.
        """
        if type(amount_msat) is not int or amount_msat <= 0:
            raise ValueError("a deposit is a positive number of msat")
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET balance_msat = balance_msat + ? WHERE pubkey = ?",
                (amount_msat, pubkey),
            )
            if cursor.rowcount != 1:
                raise WalletError("UNAUTHORIZED", "no wallet is connected to this key")
            row = db.execute(
                "SELECT balance_msat FROM accounts WHERE pubkey = ?", (pubkey,)
            ).fetchone()
        return int(row[0])

    # -- invoices ----------------------------------------------------------------------------

    def add_invoice(self, invoice: LedgerInvoice) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    invoice.payment_hash,
                    invoice.account,
                    invoice.bolt11,
                    invoice.amount_msat,
                    invoice.description,
                    invoice.description_hash,
                    invoice.preimage,
                    invoice.created_at,
                    invoice.expires_at,
                    invoice.settled_at,
                    invoice.payer,
                ),
            )

    def invoice(self, payment_hash: str) -> LedgerInvoice | None:
        row = self._db.execute(
            "SELECT * FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
        return None if row is None else LedgerInvoice(*row)

    def settle(
        self, payer: str, payment_hash: str, *, now: float, amount_msat: int | None = None
    ) -> LedgerInvoice:
        """Pay an invoice of one account from another, atomically.

        Args:
            payer: the paying account.
            payment_hash: the invoice's payment hash.
            now: the time, to refuse expired invoices.
            amount_msat: if given, it must equal the invoice's amount.

        Returns:
            The invoice as settled (with its preimage).

        Raises:
            WalletError: ``NOT_FOUND`` (no such invoice), ``PAYMENT_FAILED`` (already paid,
                expired, own invoice, wrong amount), ``INSUFFICIENT_BALANCE``,
                ``UNAUTHORIZED`` (unknown payer).
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM invoices WHERE payment_hash = ?", (payment_hash,)
            ).fetchone()
            if row is None:
                raise WalletError("NOT_FOUND", "this wallet has no such invoice")
            invoice = LedgerInvoice(*row)
            if invoice.settled_at is not None:
                raise WalletError("PAYMENT_FAILED", "the invoice is already paid")
            if now >= invoice.expires_at:
                raise WalletError("PAYMENT_FAILED", "the invoice has expired")
            if invoice.account == payer:
                raise WalletError("PAYMENT_FAILED", "an account cannot pay its own invoice")
            if amount_msat is not None and amount_msat != invoice.amount_msat:
                raise WalletError(
                    "PAYMENT_FAILED",
                    f"amount {amount_msat} msat differs from the invoice's "
                    f"{invoice.amount_msat} msat",
                )
            balance = db.execute(
                "SELECT balance_msat FROM accounts WHERE pubkey = ?", (payer,)
            ).fetchone()
            if balance is None:
                raise WalletError("UNAUTHORIZED", "no wallet is connected to this key")
            if balance[0] < invoice.amount_msat:
                raise WalletError(
                    "INSUFFICIENT_BALANCE",
                    f"balance {balance[0]} msat is below the invoice's {invoice.amount_msat} msat",
                )
            settled_at = int(now)
            db.execute(
                "UPDATE accounts SET balance_msat = balance_msat - ? WHERE pubkey = ?",
                (invoice.amount_msat, payer),
            )
            db.execute(
                "UPDATE accounts SET balance_msat = balance_msat + ? WHERE pubkey = ?",
                (invoice.amount_msat, invoice.account),
            )
            db.execute(
                "UPDATE invoices SET settled_at = ?, payer = ? WHERE payment_hash = ?",
                (settled_at, payer, payment_hash),
            )
        return LedgerInvoice(*(*row[:9], settled_at, payer))

    # -- answered requests (a re-sent request gets the same answer) --------------------------

    def response(self, request_id: str) -> str | None:
        row = self._db.execute(
            "SELECT event FROM responses WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def save_response(self, request_id: str, event_json: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO responses (request_id, event) VALUES (?, ?)",
                (request_id, event_json),
            )
