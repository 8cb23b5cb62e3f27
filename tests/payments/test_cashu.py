"""The Cashu wallet against a real nutshell mint (FakeWallet): mint, send, receive, double
spend, NUT-07 states, keyset ids, DLEQ, and refusals that must not reach the mint."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable

import orjson
import pytest
from coincurve import PublicKey

from dvmkit.errors import PaymentError
from dvmkit.payments import cashu_crypto as crypto
from dvmkit.payments.cashu import (
    CashuWallet,
    InsufficientFunds,
    InvalidToken,
    MintError,
    Proof,
    Token,
    TokenAlreadySpent,
    UntrustedMint,
    decode_token,
    encode_token,
)
from dvmkit.payments.cashu_mint import BlindedMessage, MintClient, MintQuote

from .mint import funded


async def test_mint_quote_is_paid_by_fakewallet_and_minted_into_proofs(cashu_mint: str) -> None:
    wallet = CashuWallet(mint_url=cashu_mint)
    quote = await wallet.request_mint(100)
    assert quote.amount == 100
    assert quote.request.startswith("ln")
    assert await wallet.mint(quote) == 100
    assert wallet.balance == 100
    assert sorted(p.amount for p in wallet.proofs) == [4, 32, 64]
    with pytest.raises(MintError) as caught:  # a quote mints once
        await wallet.mint(quote)
    assert quote.quote not in str(caught.value)
    assert wallet.balance == 100


async def test_active_keyset_id_derives_from_the_mints_keys(cashu_mint: str) -> None:
    client = MintClient(cashu_mint)
    (active,) = [k for k in await client.keysets() if k.active and k.unit == "sat"]
    keys = await client.keys(active.id)
    assert len(keys) == 64
    assert active.id.startswith("01")  # nutshell 0.20 makes v2 keysets
    derived = crypto.derive_keyset_id_v2(
        keys, unit="sat", input_fee_ppk=active.input_fee_ppk, final_expiry=active.final_expiry
    )
    assert derived == active.id
    assert crypto.keyset_id_matches(active.id, keys, unit="sat")
    keys[1], keys[2] = keys[2], keys[1]
    assert not crypto.keyset_id_matches(active.id, keys, unit="sat")


@pytest.mark.parametrize("version", [3, 4])
async def test_send_then_receive_moves_exactly_the_amount(cashu_mint: str, version: int) -> None:
    alice = await funded(cashu_mint, 100)
    bob = CashuWallet(mint_url=cashu_mint)
    token = await alice.send(37, memo="for job 1", version=version)  # type: ignore[arg-type]
    assert token.startswith("cashuA" if version == 3 else "cashuB")
    decoded = decode_token(token)
    assert (decoded.amount, decoded.memo, decoded.mint) == (37, "for job 1", cashu_mint)
    assert alice.balance == 63
    assert await bob.receive(token) == 37
    assert (alice.balance, bob.balance) == (63, 37)
    # Bob's proofs are his own now: he can pay them on.
    assert await alice.receive(await bob.send(37)) == 37
    assert (alice.balance, bob.balance) == (100, 0)


async def test_send_of_an_exact_subset_needs_no_swap_and_keeps_the_rest(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 100)  # proofs 4 + 32 + 64
    token = await alice.send(36)
    assert sorted(p.amount for p in decode_token(token).proofs) == [4, 32]
    assert [p.amount for p in alice.proofs] == [64]
    assert await CashuWallet(mint_url=cashu_mint).receive(token) == 36


async def test_send_more_than_the_balance_raises_insufficient_funds(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 10)
    with pytest.raises(InsufficientFunds) as caught:
        await alice.send(11)
    assert (caught.value.balance, caught.value.wanted) == (10, 11)
    assert alice.balance == 10
    with pytest.raises(ValueError, match="positive"):
        await alice.send(0)


async def test_the_same_token_received_twice_raises_already_spent(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 21)
    token = await alice.send(21)
    provider = CashuWallet(mint_url=cashu_mint)
    assert await provider.receive(token) == 21
    with pytest.raises(TokenAlreadySpent, match="token already spent") as caught:
        await provider.receive(token)
    assert caught.value.code == 11001
    assert isinstance(caught.value, PaymentError)
    assert token not in str(caught.value)
    with pytest.raises(TokenAlreadySpent):  # and for anybody else
        await CashuWallet(mint_url=cashu_mint).receive(token)
    assert provider.balance == 21


async def test_a_token_raced_into_two_receives_pays_once(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 8)
    token = await alice.send(8)
    one, two = CashuWallet(mint_url=cashu_mint), CashuWallet(mint_url=cashu_mint)
    results = await asyncio.gather(one.receive(token), two.receive(token), return_exceptions=True)
    paid = [r for r in results if r == 8]
    refused = [r for r in results if isinstance(r, MintError)]  # spent, or pending (11002+)
    assert (len(paid), len(refused)) == (1, 1)
    assert one.balance + two.balance == 8


async def test_check_state_before_and_after_spending(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 12)  # 4 + 8
    token = await alice.send(12)
    proofs = decode_token(token).proofs
    bob = CashuWallet(mint_url=cashu_mint)
    before = await bob.check_state(proofs)
    assert [s.state for s in before] == ["UNSPENT", "UNSPENT"]
    ys = [crypto.hash_to_curve(p.secret.encode()).format().hex() for p in proofs]
    assert [s.Y for s in before] == ys
    await bob.receive(token)
    assert [s.state for s in await bob.check_state(proofs)] == ["SPENT", "SPENT"]
    assert [s.state for s in await bob.check_state()] == ["UNSPENT"] * len(bob.proofs)
    assert await bob.check_state([]) == []


async def test_token_from_another_mint_is_refused_without_contacting_it(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 5)
    real = decode_token(await alice.send(5))
    # Port 9 (discard) on a TEST-NET address: any attempt to contact it would hang or fail.
    foreign = Token(mint="http://192.0.2.1:9", proofs=real.proofs)
    provider = CashuWallet(mint_url=cashu_mint, timeout=1.0)
    with pytest.raises(UntrustedMint) as caught:
        await provider.receive(encode_token(foreign))
    assert caught.value.mint == "http://192.0.2.1:9"
    assert await provider.receive(encode_token(real)) == 5  # the real one is still good


async def test_token_of_another_unit_or_unknown_keyset_is_refused(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 6)
    real = decode_token(await alice.send(6))
    provider = CashuWallet(mint_url=cashu_mint)
    with pytest.raises(InvalidToken, match="unit"):
        await provider.receive(Token(mint=real.mint, proofs=real.proofs, unit="usd"))
    unknown = tuple(Proof(p.amount, "00" + "ee" * 7, p.secret, p.C) for p in real.proofs)
    with pytest.raises(InvalidToken, match="keyset"):
        await provider.receive(Token(mint=real.mint, proofs=unknown))
    assert await provider.receive(real) == 6


async def test_forged_proofs_are_refused_by_the_mint(cashu_mint: str) -> None:
    alice = await funded(cashu_mint, 4)
    real = decode_token(await alice.send(4))
    (proof,) = real.proofs
    forged = Token(
        mint=real.mint, proofs=(Proof(proof.amount, proof.keyset_id, "f" * 64, proof.C),)
    )
    with pytest.raises(MintError) as caught:
        await CashuWallet(mint_url=cashu_mint).receive(forged)
    assert not isinstance(caught.value, TokenAlreadySpent)
    assert caught.value.code is not None


async def test_mint_offers_dleq_proofs_and_they_verify(cashu_mint: str) -> None:
    wallet = await funded(cashu_mint, 3)
    keyset = wallet._active
    assert keyset is not None
    outputs = wallet._outputs(keyset, [1, 2])
    signatures = await wallet.client.swap(wallet.proofs, [o.output for o in outputs])
    for output, signature in zip(outputs, signatures, strict=True):
        assert signature.dleq is not None
        args = {
            "mint_key": keyset.keys[output.amount],
            "blinded": PublicKey(bytes.fromhex(output.B_)),
            "blind_signature": PublicKey(bytes.fromhex(signature.C_)),
        }
        e, s = (bytes.fromhex(x) for x in signature.dleq)
        assert crypto.verify_dleq(**args, e=e, s=s)
        assert not crypto.verify_dleq(**args, e=e, s=bytes(31) + b"\x01")
    fresh = wallet._unblind(keyset, outputs, signatures)
    assert await CashuWallet(mint_url=cashu_mint).receive(Token(cashu_mint, tuple(fresh))) == 3


async def test_a_signature_with_a_bad_dleq_is_refused(cashu_mint: str) -> None:
    wallet = await funded(cashu_mint, 2)
    keyset = wallet._active
    assert keyset is not None
    outputs = wallet._outputs(keyset, [2])
    (signature,) = await wallet.client.swap(wallet.proofs, [o.output for o in outputs])
    assert signature.dleq is not None
    forged = dataclasses.replace(signature, dleq=(signature.dleq[0], "00" * 31 + "01"))
    with pytest.raises(MintError, match="DLEQ"):
        wallet._unblind(keyset, outputs, [forged])


async def test_secrets_never_appear_in_reprs_errors_or_logs(
    cashu_mint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = await funded(cashu_mint, 16)
    token = await alice.send(16)
    provider = CashuWallet(mint_url=cashu_mint)
    await provider.receive(token)
    with pytest.raises(TokenAlreadySpent) as caught:
        await provider.receive(token)
    secrets_ = [p.secret for p in decode_token(token).proofs + provider.proofs]
    texts = [repr(provider), str(provider), repr(provider.proofs), str(caught.value), caplog.text]
    for text in texts:
        assert token not in text
        for secret in secrets_:
            assert secret not in text
    assert "balance=16" in repr(provider)


async def test_persistence_hook_sees_every_change(cashu_mint: str) -> None:
    saved: list[tuple[Proof, ...]] = []
    wallet = CashuWallet(mint_url=cashu_mint, on_change=saved.append)
    await wallet.mint(await wallet.request_mint(9))
    token = await wallet.send(3)
    assert saved[-1] == wallet.proofs
    assert sum(p.amount for p in saved[-1]) == 6
    restored = CashuWallet(mint_url=cashu_mint, proofs=saved[-1])
    assert restored.balance == 6
    assert await restored.receive(token) == 3
    assert await CashuWallet(mint_url=cashu_mint).receive(await restored.send(9)) == 9


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers: a mint that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_a_mint_that_never_answers_times_out_cleanly(silent_server: str) -> None:
    wallet = CashuWallet(mint_url=silent_server, timeout=0.3)
    with pytest.raises(MintError, match="timed out") as caught:
        await wallet.load_keysets()
    assert caught.value.code is None


async def test_mint_gives_up_on_time_while_a_poll_of_the_quote_hangs(silent_server: str) -> None:
    wallet = CashuWallet(mint_url=silent_server, timeout=30.0)
    quote = MintQuote(quote="q1", request="lnbc10n1fake", amount=1, state="UNPAID")
    async with asyncio.timeout(10):  # a failure bound: the answer is due after 0.3 s
        with pytest.raises(MintError, match=r"not paid after 0\.3 s"):
            await wallet.mint(quote, timeout=0.3)


@contextlib.asynccontextmanager
async def scripted_mint(answers: Iterable[bytes]) -> AsyncIterator[MintClient]:
    """A client of a loopback "mint" that answers each request with the next of ``answers``
    (raw HTTP, whatever was asked)."""
    script = iter(answers)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(next(script))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield MintClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=2.0)


def ok_json(body: object) -> bytes:
    data = orjson.dumps(body)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


async def test_garbage_and_oversized_answers_become_mint_errors() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"garbage\r\n\r\n",
        ok_json({"keysets": 1}),
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ]
    async with scripted_mint(answers) as client:
        for expected in ("not JSON", "failed", "failed", "malformed keysets", "HTTP 500"):
            with pytest.raises(MintError, match=expected):
                await client.keysets()


async def test_hostile_restore_answers_become_mint_errors() -> None:
    asked = BlindedMessage(amount=1, keyset_id="00ab", B_="02" + "11" * 32)
    sig = {"amount": 1, "id": "00ab", "C_": "02" + "22" * 32}
    bodies: list[tuple[object, str]] = [
        ({"outputs": [{"B_": "02" + "33" * 32}], "signatures": [sig]}, "other outputs"),
        ({"outputs": [], "signatures": [sig]}, "other outputs"),
        ({"outputs": [{"B_": asked.B_}], "signatures": 1}, "malformed signatures"),
        ({"outputs": 5, "signatures": []}, "malformed restore"),
        ({"outputs": [{"B_": asked.B_}] * 2, "signatures": [sig] * 2}, "other outputs"),
        ([], "not a JSON object"),
    ]
    async with scripted_mint(ok_json(body) for body, _ in bodies) as client:
        for _, expected in bodies:
            with pytest.raises(MintError, match=expected):
                await client.restore([asked])


async def test_a_mint_quote_id_stays_out_of_reprs_and_errors() -> None:
    # NUT-04: whoever knows a quote's id can mint what was paid for it.
    quote = MintQuote(quote="q" + "5e" * 20, request="lnbc10n1fake", amount=1, state="UNPAID")
    assert quote.quote not in repr(quote)
    answers = [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",
    ]
    async with scripted_mint(answers) as client:
        for expected in ("HTTP 404", "not JSON"):
            with pytest.raises(MintError, match=expected) as caught:
                await client.mint_quote_state(quote.quote, quote.amount)
            assert quote.quote not in str(caught.value)
    unpaid = CashuWallet(mint_url="http://192.0.2.1:9")  # never contacted: no time to poll
    with pytest.raises(MintError, match="not paid") as caught:
        await unpaid.mint(quote, timeout=0)
    assert quote.quote not in str(caught.value)


def test_a_mint_url_must_be_http() -> None:
    with pytest.raises(MintError, match="http"):
        CashuWallet(mint_url="ftp://mint.example")
