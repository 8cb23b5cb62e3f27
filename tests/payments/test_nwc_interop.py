"""Interop: nostr-sdk 0.45's NIP-47 client (independent) against our dev wallet."""

from __future__ import annotations

import asyncio
import hashlib

import nostr_sdk

from dvmkit.payments import bolt11
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI

from .conftest import WAIT


def sdk_client(uri: ConnectionURI) -> nostr_sdk.NostrWalletConnect:
    return nostr_sdk.NostrWalletConnect(nostr_sdk.NostrWalletConnectUri.parse(uri.reveal()))


async def test_nostr_sdk_client_makes_pays_and_looks_up_invoices(wallet: DevWallet) -> None:
    provider_uri = wallet.create_account(name="dvm")
    customer_uri = wallet.create_account(name="alice", deposit_msat=30_000)
    provider, customer = sdk_client(provider_uri), sdk_client(customer_uri)
    async with asyncio.timeout(WAIT * 3):
        made = await provider.make_invoice(
            nostr_sdk.MakeInvoiceRequest(
                amount=21_000, description="sdk job", description_hash=None, expiry=None
            )
        )
        invoice = bolt11.decode(made.invoice)
        assert (invoice.amount_msat, invoice.description) == (21_000, "sdk job")
        assert invoice.payee == wallet.node_id
        pending = await provider.lookup_invoice(
            nostr_sdk.LookupInvoiceRequest(payment_hash=invoice.payment_hash, invoice=None)
        )
        assert pending.state == nostr_sdk.TransactionState.PENDING
        paid = await customer.pay_invoice(
            nostr_sdk.PayInvoiceRequest(id=None, invoice=made.invoice, amount=None)
        )
        settled = await provider.lookup_invoice(
            nostr_sdk.LookupInvoiceRequest(payment_hash=None, invoice=made.invoice)
        )
        provider_balance = await provider.get_balance()
        customer_balance = await customer.get_balance()
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == invoice.payment_hash
    assert settled.state == nostr_sdk.TransactionState.SETTLED
    assert (settled.payment_hash, settled.amount, settled.preimage) == (
        invoice.payment_hash,
        21_000,
        paid.preimage,
    )
    assert (provider_balance.balance, customer_balance.balance) == (21_000, 9_000)
    assert wallet.balance(provider_uri.client) == 21_000


async def test_nostr_sdk_client_sees_wallet_errors(wallet: DevWallet) -> None:
    payer = sdk_client(wallet.create_account(deposit_msat=1_000))
    payee_uri = wallet.create_account()
    async with asyncio.timeout(WAIT * 2):
        made = await sdk_client(payee_uri).make_invoice(
            nostr_sdk.MakeInvoiceRequest(
                amount=5_000, description=None, description_hash=None, expiry=None
            )
        )
        try:
            await payer.pay_invoice(
                nostr_sdk.PayInvoiceRequest(id=None, invoice=made.invoice, amount=None)
            )
        except nostr_sdk.NostrSdkError as exc:
            message = str(exc)
        else:
            raise AssertionError("an unaffordable payment succeeded")
    # nostr-sdk maps the NIP-47 code to its own enum name and keeps our message.
    assert "[InsufficientBalance]" in message
    assert "below the invoice's 5000 msat" in message
    assert wallet.balance(payee_uri.client) == 0
