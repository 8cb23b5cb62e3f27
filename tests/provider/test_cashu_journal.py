"""The DVM's ecash survives a crash between the mint's answer and the proof file's write.

A real nutshell mint. The crash is the state it leaves on disk: the wallet swaps a customer's
token (the journal wrote the outputs first), and the process stops before the proof file is
written again, which is what ``wallet.receive`` without ``CashuPayments.confirm``'s save
leaves. A new ``CashuPayments`` on the same file must get the money back from the mint.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dvmkit.nostr.keys import Keys
from dvmkit.payments.cashu import Blinded, CashuWallet, decode_token
from dvmkit.payments.cashu_errors import CashuError, TokenAlreadySpent
from dvmkit.provider.payments import CashuPayments
from dvmkit.relay.pool import RelayPool
from payments.mint import funded


async def started(mint: str, path: Path) -> CashuPayments:
    """A DVM's Cashu payments on ``path``, through its start-up (which restores)."""
    payments = CashuPayments(mint_url=mint, proofs_path=path)
    async with payments.serving(RelayPool(), Keys.generate()):
        pass
    return payments


def saved(path: Path) -> tuple[int, int]:
    """How many proofs and journaled outputs the file holds."""
    data = orjson.loads(path.read_bytes())
    return len(data["proofs"]), len(data["pending"])


async def test_ecash_a_crash_left_unsaved_is_restored_from_the_mint(
    cashu_mint: str, tmp_path: Path
) -> None:
    path = tmp_path / "dvm-proofs.json"
    purse = await funded(cashu_mint, 21)
    crashed = await started(cashu_mint, path)
    assert await crashed.wallet.receive(await purse.send(21)) == 21
    assert saved(path) == (0, 3)  # 21 = 16 + 4 + 1: the outputs, and no proof yet
    restarted = await started(cashu_mint, path)
    assert restarted.wallet.balance == 21
    assert saved(path) == (3, 0)
    # Real money: it pays someone else.
    payee = CashuWallet(mint_url=cashu_mint)
    assert await payee.receive(await restarted.wallet.send(21)) == 21


async def test_restoring_twice_or_after_the_save_adds_nothing(
    cashu_mint: str, tmp_path: Path
) -> None:
    path = tmp_path / "dvm-proofs.json"
    purse = await funded(cashu_mint, 5)
    crashed = await started(cashu_mint, path)
    await crashed.wallet.receive(await purse.send(5))
    left = [Blinded.from_json(b) for b in orjson.loads(path.read_bytes())["pending"]]
    restarted = await started(cashu_mint, path)
    assert await restarted.wallet.restore(left) == 0  # held already
    assert await crashed.wallet.restore(left) == 0  # held, and by the other: spent by neither
    assert restarted.wallet.balance == 5


async def test_outputs_the_mint_refused_restore_nothing(cashu_mint: str, tmp_path: Path) -> None:
    path = tmp_path / "dvm-proofs.json"
    purse = await funded(cashu_mint, 4)
    token = await purse.send(4)
    await CashuWallet(mint_url=cashu_mint).receive(token)  # spent elsewhere first
    payments = await started(cashu_mint, path)
    with pytest.raises(TokenAlreadySpent):
        await payments.wallet.receive(token)
    restarted = await started(cashu_mint, path)
    assert restarted.wallet.balance == 0
    assert saved(path) == (0, 0)


async def test_a_journal_that_cannot_be_written_fails_before_the_swap(
    cashu_mint: str, tmp_path: Path
) -> None:
    purse = await funded(cashu_mint, 8)
    token = await purse.send(8)
    payments = await started(cashu_mint, tmp_path / "no such folder" / "proofs.json")
    with pytest.raises(CashuError, match="cannot record the swap"):
        await payments.wallet.receive(token)
    states = await purse.check_state(decode_token(token).proofs)
    assert {s.state for s in states} == {"UNSPENT"}  # the customer keeps its money
    assert await purse.receive(token) == 8


def test_a_proof_file_from_before_the_journal_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_bytes(orjson.dumps([{"amount": 2, "id": "00ab", "secret": "s", "C": "02" * 33}]))
    assert CashuPayments(mint_url="http://127.0.0.1:1", proofs_path=path).wallet.balance == 2


@pytest.mark.parametrize(
    "pending",
    [
        [{"amount": 1, "id": "00", "B_": "02", "secret": "s"}],  # no blinding factor
        [{"amount": 1, "id": "00", "B_": "02", "secret": "s", "r": "zz" * 32}],
        [{"amount": -1, "id": "00", "B_": "02", "secret": "s", "r": "11" * 32}],
        [{"amount": 1, "id": 7, "B_": "02", "secret": "s", "r": "11" * 32}],
        "not a list",
    ],
)
def test_a_damaged_journal_is_refused_at_start_without_showing_it(
    tmp_path: Path, pending: object
) -> None:
    path = tmp_path / "proofs.json"
    path.write_bytes(orjson.dumps({"proofs": [], "pending": pending}))
    with pytest.raises(CashuError, match="is not a proof file") as caught:
        CashuPayments(mint_url="http://127.0.0.1:1", proofs_path=path)
    assert "11" * 32 not in str(caught.value)
    assert '"secret"' not in str(caught.value)
