"""The NWC client against hostile wallets and relays: forged signers, bad bodies, leaked secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from dvmkit.nostr import nip44
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.payments import nip47
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import NIP44, ConnectionURI, InvalidURI, WalletError
from dvmkit.payments.nwc import NWCClient
from dvmkit.relay.pool import RelayPool

from .conftest import WAIT

Responder = Callable[[Event, str], list[Event]]


@contextlib.asynccontextmanager
async def scripted_wallet(relay: str, keys: Keys, respond: Responder) -> AsyncIterator[None]:
    """A wallet key under the test's control: ``respond(request, body)`` says what to publish."""
    async with (
        RelayPool(relays=[relay]) as pool,
        pool.subscribe(Filter.build(kinds=[nip47.REQUEST], tags={"p": [keys.public_key]})) as sub,
    ):
        await sub.wait_stored()

        async def serve() -> None:
            async for request in sub:
                body = nip44.decrypt_from(keys, request.pubkey, request.content)
                for event in respond(request, body):
                    await pool.publish(event, wait="first")

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(serve())
            try:
                yield
            finally:
                task.cancel()


def response(
    signer: Keys, request: Event, content: str, *, encrypt_with: Keys | None = None
) -> Event:
    sender = encrypt_with or signer
    return sign_event(
        signer,
        kind=nip47.RESPONSE,
        content=nip44.encrypt_to(sender, request.pubkey, content),
        tags=[("p", request.pubkey), ("e", request.id)],
    )


def balance_body(msat: int) -> str:
    return nip47.response_body("get_balance", result={"balance": msat})


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every payload the client decrypts, in order."""
    seen: list[str] = []
    real = nip47.decrypt

    def spy(keys: Keys, peer: str, payload: str, scheme: nip47.Encryption) -> str:
        seen.append(payload)
        return real(keys, peer, payload, scheme)

    monkeypatch.setattr(nip47, "decrypt", spy)
    return seen


async def test_response_from_a_third_key_is_dropped_before_decryption(
    relay_url: str, decrypted: list[str]
) -> None:
    wallet, third = Keys.generate(), Keys.generate()
    forged: list[Event] = []

    def respond(request: Event, body: str) -> list[Event]:
        # Correct e and p tags, valid NIP-44 to the client: only the signer is wrong.
        fake = response(third, request, balance_body(10**12))
        forged.append(fake)
        return [fake, response(wallet, request, balance_body(1_234))]

    uri = ConnectionURI(wallet=wallet.public_key, relays=(relay_url,), keys=Keys.generate())
    async with (
        scripted_wallet(relay_url, wallet, respond),
        NWCClient(uri, timeout=WAIT, encryption=NIP44) as client,
    ):
        balance = await client.get_balance()
        assert client.stats().rejected == 1
    assert balance.msat == 1_234
    assert forged
    assert forged[0].content not in decrypted
    assert len(decrypted) == 1


async def test_only_forged_answers_end_in_a_timeout_not_in_their_content(
    relay_url: str, decrypted: list[str]
) -> None:
    wallet, third = Keys.generate(), Keys.generate()
    uri = ConnectionURI(wallet=wallet.public_key, relays=(relay_url,), keys=Keys.generate())
    async with (
        scripted_wallet(
            relay_url, wallet, lambda request, _: [response(third, request, balance_body(1))]
        ),
        NWCClient(uri, timeout=1.0, encryption=NIP44) as client,
    ):
        with pytest.raises(WalletError) as caught:
            await client.get_balance()
    assert caught.value.code == "TIMEOUT"
    assert decrypted == []


def _raw(body: str) -> Callable[[Keys, Event], str]:
    return lambda keys, request: nip44.encrypt_to(keys, request.pubkey, body)


HOSTILE: dict[str, tuple[Callable[[Keys, Event], str], str, str]] = {
    "not json": (_raw("{not json"), "BAD_RESPONSE", "not valid JSON"),
    "json array": (_raw("[1, 2]"), "BAD_RESPONSE", "JSON object"),
    "balance is a string": (
        _raw(nip47.response_body("get_balance", result={"balance": "lots"})),
        "BAD_RESPONSE",
        "'balance' must be",
    ),
    "balance is a bool": (
        _raw(nip47.response_body("get_balance", result={"balance": True})),
        "BAD_RESPONSE",
        "'balance' must be",
    ),
    "negative balance": (
        _raw(nip47.response_body("get_balance", result={"balance": -5})),
        "BAD_RESPONSE",
        "non-negative",
    ),
    "answers another method": (
        _raw(nip47.response_body("pay_invoice", result={"preimage": "00"})),
        "BAD_RESPONSE",
        "result_type",
    ),
    "null result": (
        _raw(orjson.dumps({"result_type": "get_balance", "error": None}).decode()),
        "BAD_RESPONSE",
        "result",
    ),
    "error not an object": (
        _raw(orjson.dumps({"result_type": "get_balance", "error": "boom"}).decode()),
        "BAD_RESPONSE",
        "'error'",
    ),
    "bad ciphertext": (lambda keys, request: "AgAAAA" + "A" * 200, "BAD_RESPONSE", "decrypt"),
    "nip04 where nip44 was asked": (
        lambda keys, request: "c29tZQ==?iv=AAAAAAAAAAAAAAAAAAAAAA==",
        "BAD_RESPONSE",
        "decrypt",
    ),
    "oversized content": (
        lambda keys, request: "A" * (nip47.MAX_CONTENT + 1),
        "BAD_RESPONSE",
        "larger than",
    ),
    "wallet error": (
        _raw(nip47.response_body("get_balance", error=WalletError("RESTRICTED", "no balance"))),
        "RESTRICTED",
        "no balance",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
async def test_hostile_wallet_answers_raise_a_precise_wallet_error(
    relay_url: str, case: str
) -> None:
    build, code, words = HOSTILE[case]
    wallet = Keys.generate()

    def respond(request: Event, body: str) -> list[Event]:
        content = build(wallet, request)
        return [
            sign_event(
                wallet,
                kind=nip47.RESPONSE,
                content=content,
                tags=[("p", request.pubkey), ("e", request.id)],
            )
        ]

    uri = ConnectionURI(wallet=wallet.public_key, relays=(relay_url,), keys=Keys.generate())
    async with (
        scripted_wallet(relay_url, wallet, respond),
        NWCClient(uri, timeout=WAIT, encryption=NIP44) as client,
    ):
        with pytest.raises(WalletError) as caught:
            await client.get_balance()
    assert caught.value.code == code
    assert words in caught.value.message


SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
WALLET = "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"


def test_uri_parses_and_round_trips_without_showing_the_secret() -> None:
    text = (
        f"nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Frelay.damus.io"
        f"&relay=ws%3A%2F%2F127.0.0.1%3A7777&secret={SECRET}&lud16=alice%40example.com"
    )
    uri = ConnectionURI.parse(text)
    assert uri.wallet == WALLET
    assert uri.relays == ("wss://relay.damus.io", "ws://127.0.0.1:7777")
    assert uri.keys.secret_hex() == SECRET
    assert uri.lud16 == "alice@example.com"
    assert ConnectionURI.parse(uri.reveal()) == uri
    for shown in (repr(uri), str(uri), repr(NWCClient(uri)), f"{uri}"):
        assert SECRET not in shown
        assert WALLET in shown


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Fr.io&secret={SECRET[:-2]}", "secret"),
        (f"nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Fr.io&secret={SECRET}zz", "secret"),
        (f"nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Fr.io", "secret"),
        (f"nostr+walletconnect://{WALLET}?secret={SECRET}", "relay"),
        (f"nostr+walletconnect://{WALLET}?relay=https%3A%2F%2Fr.io&secret={SECRET}", "ws://"),
        (f"nostr+walletconnect://{WALLET[:10]}?relay=wss%3A%2F%2Fr.io&secret={SECRET}", "wallet"),
        (f"https://{WALLET}?relay=wss%3A%2F%2Fr.io&secret={SECRET}", "starts with"),
        (
            f"nostr+walletconnect://{WALLET}?relay=wss%3A%2F%2Fr.io&secret={SECRET}&secret={SECRET}",
            "exactly one",
        ),
    ],
)
def test_bad_uris_are_refused_without_quoting_the_secret(text: str, words: str) -> None:
    with pytest.raises(InvalidURI) as caught:
        ConnectionURI.parse(text)
    assert words in str(caught.value)
    assert SECRET[:32] not in str(caught.value)


async def test_secret_never_reaches_logs_or_errors(
    relay_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    secrets: list[str] = []
    async with DevWallet(relays=[relay_url]) as wallet:
        payee_uri = wallet.create_account()
        payer_uri = wallet.create_account(deposit_msat=1_000)
        secrets += [payee_uri.keys.secret_hex(), payer_uri.keys.secret_hex()]
        async with (
            NWCClient(payee_uri, timeout=WAIT) as payee,
            NWCClient(payer_uri, timeout=WAIT) as payer,
        ):
            made = await payee.make_invoice(5_000)
            for call in (payer.pay_invoice(made.invoice or ""), payer.pay_invoice("lnbc1x")):
                with pytest.raises(WalletError) as caught:
                    await call
                errors.append(str(caught.value))
                errors.append(repr(caught.value))
    silent = ConnectionURI(
        wallet=Keys.generate().public_key, relays=(relay_url,), keys=Keys.generate()
    )
    secrets.append(silent.keys.secret_hex())
    async with NWCClient(silent, timeout=0.5) as client:
        with pytest.raises(WalletError) as caught:
            await client.get_balance()
        errors.append(str(caught.value))
    assert caught.value.code == "TIMEOUT"
    text = caplog.text + "\n".join(errors)
    assert errors
    assert all(secret not in text for secret in secrets)


async def test_notifications_skip_forged_and_malformed_events(relay_url: str) -> None:
    wallet, third = Keys.generate(), Keys.generate()
    uri = ConnectionURI(wallet=wallet.public_key, relays=(relay_url,), keys=Keys.generate())
    good: dict[str, Any] = {"type": "incoming", "payment_hash": "ab" * 32, "amount": 7}
    async with (
        RelayPool(relays=[relay_url]) as pool,
        NWCClient(uri, timeout=WAIT, encryption=NIP44) as client,
    ):
        async with client.notifications() as notes:

            def note(signer: Keys, body: str) -> Event:
                return sign_event(
                    signer,
                    kind=nip47.NOTIFICATION,
                    content=nip44.encrypt_to(signer, uri.client, body),
                    tags=[("p", uri.client)],
                )

            body = orjson.dumps(
                {"notification_type": "payment_received", "notification": good}
            ).decode()
            for event in (
                note(third, body),
                note(wallet, "{broken"),
                note(wallet, orjson.dumps({"notification_type": 5}).decode()),
                note(wallet, body),
            ):
                assert (await pool.publish(event)).ok
            async with asyncio.timeout(WAIT):
                got = await anext(notes)
        assert client.stats().rejected == 1
    assert (got.type, got.transaction.amount_msat) == ("payment_received", 7)
