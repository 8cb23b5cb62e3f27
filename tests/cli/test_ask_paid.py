"""`dvm ask --max-price --nwc`: a real `dvm` process pays a real priced DVM from a dev-wallet
account over NWC, and never shows the wallet's URI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from customer.conftest import PRICE, assert_no_secret, priced
from dvmkit.nostr.keys import Keys
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.provider import DVM
from dvmkit.provider.payments import NWCPayments
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.server import Relay

DVM_BIN = str(Path(sys.executable).parent / "dvm")
#: Environment a test must not inherit: keys, relays and wallets are passed explicitly.
_PRIVATE_ENV = ("NOSTR_SECRET_KEY", "DVMKIT_RELAYS", "DVMKIT_NWC", "NWC_URI")


async def dvm_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    proc = await asyncio.create_subprocess_exec(
        DVM_BIN,
        *args,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def priced_dvm(
    relay: str, *, fail: bool = False
) -> AsyncIterator[tuple[DevWallet, DVM, ConnectionURI]]:
    """A dev wallet on the relay, a DVM charging PRICE into it (whose jobs all fail, with
    ``fail``), and its account."""
    async with DevWallet(relays=[relay]) as wallet:
        seller = wallet.create_account(name="dvm")
        dvm = priced(relay, NWCPayments(seller, poll_interval=0.5), fail=fail)
        async with dvm.running():
            yield wallet, dvm, seller


async def test_ask_pays_the_dvm_and_prints_what_it_paid(relay: str) -> None:
    async with priced_dvm(relay) as (wallet, dvm, seller):
        buyer = wallet.create_account(name="alice", deposit_msat=100_000)
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.keys.npub, "--max-price", str(PRICE),
            "--nwc", buyer.reveal(), relay,
        )  # fmt: skip
        assert (code, out) == (0, "HI\n"), err
        assert f"paid {PRICE} msat to" in err
        assert "by bolt11" in err
        assert_no_secret(buyer, out, err)
        assert wallet.balance(buyer.client) == 100_000 - PRICE
        assert wallet.balance(seller.client) == PRICE
        # The same wallet from the environment: what is left in it.
        code, out, err = await dvm_cli("wallet", "balance", env={"DVMKIT_NWC": buyer.reveal()})
        assert code == 0, err
        assert json.loads(out) == {"balance_msat": 100_000 - PRICE}


async def test_ask_exits_5_above_the_cap_and_pays_nothing(relay: str) -> None:
    async with priced_dvm(relay) as (wallet, dvm, seller):
        buyer = wallet.create_account(name="alice", deposit_msat=100_000)
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.public_key, "--max-price", str(PRICE - 1), relay,
            env={"DVMKIT_NWC": buyer.reveal()},
        )  # fmt: skip
        assert (code, out) == (5, ""), err
        assert "--max-price" in err
        assert_no_secret(buyer, err)
        assert wallet.balance(buyer.client) == 100_000
        assert wallet.balance(seller.client) == 0


async def test_ask_exits_5_when_the_wallet_cannot_pay(relay: str) -> None:
    async with priced_dvm(relay) as (wallet, dvm, seller):
        poor = wallet.create_account(name="poor", deposit_msat=PRICE - 1)
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.public_key, "--max-price", str(PRICE),
            "--nwc", poor.reveal(), "--json", relay,
        )  # fmt: skip
        assert (code, out) == (5, ""), err
        assert "INSUFFICIENT_BALANCE" in err
        assert_no_secret(poor, err)
        assert wallet.balance(poor.client) == PRICE - 1
        assert wallet.balance(seller.client) == 0


async def test_ask_exits_4_like_dvm_wallet_when_the_wallet_cannot_be_reached(relay: str) -> None:
    """The wallet's relay refuses every request to it (NOT_SENT: the NWC request is longer
    than the relay takes), as `dvm wallet` exits 4 on a wallet it cannot reach or that does
    not answer (TIMEOUT, where the payment may still go out). A TIMEOUT itself does not show
    here cheaply: `dvm ask` gives each wallet call as long as the whole ask (up to 30 s), so
    its own deadline comes first, and exits 4 too; tests/customer/test_paid.py checks the
    TIMEOUT code on the failure."""
    refusing = Relay(limits=RelayLimits(max_content_length=64))
    async with priced_dvm(relay) as (wallet, dvm, seller), refusing:
        unreachable = ConnectionURI(
            wallet=Keys.generate().public_key, relays=(refusing.url,), keys=Keys.generate()
        )
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.public_key, "--max-price", str(PRICE),
            "--nwc", unreachable.reveal(), relay,
        )  # fmt: skip
        assert (code, out) == (4, ""), err
        assert "NOT_SENT" in err
        assert_no_secret(unreachable, err)
        assert wallet.balance(seller.client) == 0
        code, _, err = await dvm_cli("wallet", "balance", "--nwc", unreachable.reveal())
        assert code == 4, err
        assert "NOT_SENT" in err


async def test_a_malformed_nwc_uri_exits_2_without_echoing_it(relay: str) -> None:
    secret = "ab" * 32
    bad = f"nostr+walletconnect://nothex?relay={relay}&secret={secret}"
    code, out, err = await dvm_cli("ask", "text", "hi", "--max-price", "1", "--nwc", bad, relay)
    assert (code, out) == (2, "")
    assert "--nwc" in err
    assert secret not in err
    assert bad not in err


async def test_ask_names_a_refund_invoice_and_a_failed_paid_job_pays_it(relay: str) -> None:
    async with priced_dvm(relay, fail=True) as (wallet, dvm, seller):
        buyer = wallet.create_account(name="alice", deposit_msat=100_000)
        async with NWCClient(buyer, timeout=10) as own:
            back = await own.make_invoice(PRICE, description="refund")
        assert back.invoice is not None
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.public_key, "--max-price", str(PRICE),
            "--refund-to", back.invoice, "--nwc", buyer.reveal(), relay,
        )  # fmt: skip
        assert (code, out) == (3, ""), err
        assert f"refunded {PRICE} msat by bolt11" in err
        assert_no_secret(buyer, err)
        assert wallet.balance(buyer.client) == 100_000
        assert wallet.balance(seller.client) == 0


async def test_ask_refuses_a_refund_address_that_is_not_one_before_paying(relay: str) -> None:
    async with priced_dvm(relay) as (wallet, dvm, seller):
        buyer = wallet.create_account(name="alice", deposit_msat=100_000)
        code, out, err = await dvm_cli(
            "ask", "text", "hi", "--to", dvm.public_key, "--max-price", str(PRICE),
            "--refund-to", "https://example.com/pay", "--nwc", buyer.reveal(), relay,
        )  # fmt: skip
        assert (code, out) == (2, ""), err
        assert "lightning address" in err
        assert wallet.balance(buyer.client) == 100_000
        assert wallet.balance(seller.client) == 0
