"""`dvm ask --encrypt`: private jobs from the command line, real processes and relays."""

from __future__ import annotations

import json

import pytest

from customer.conftest import echo_dvm
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import RelayPool

from .test_ask import dvm_cli


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--wrap", "nip59"],
        ["--wrap", "nip59", "--wrap-kind", "1059"],
        ["--wrap-kind", "1059"],
    ],
)
async def test_ask_encrypt_returns_the_result_of_a_wrapped_job(
    relay: str, extra: list[str]
) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli(
            "ask", "text", "hidden", "--encrypt", "--param", "prefix=: ", *extra, "--json", relay
        )
    assert code == 0, err
    data = json.loads(out)
    assert (data["content"], data["dvm"]) == (": hidden", dvm.public_key)


@pytest.mark.parametrize(("flag", "scheme"), [("--encrypt", "nip44"), ("--nip04", "nip04")])
async def test_ask_legacy_encrypt_sends_encrypted_params(
    relay: str, flag: str, scheme: str
) -> None:
    dvm = echo_dvm(relay)
    async with dvm.running():
        code, out, err = await dvm_cli(
            "ask", "5050", "hidden", flag, "--to", dvm.keys.npub, "--json", relay
        )
    assert code == 0, err
    data = json.loads(out)
    assert data["content"] == "hidden"
    # The result the relay keeps holds ciphertext, tagged with the request's scheme.
    async with RelayPool(relays=[relay]) as pool:
        (event,) = await pool.fetch({"ids": [data["event"]]})
    assert event.kind == 6050
    assert event.tag("encrypted") == ("encrypted", scheme)
    assert "hidden" not in event.to_json()


async def test_ask_encrypt_exits_4_rather_than_send_in_the_clear(relay: str) -> None:
    dvm = echo_dvm(relay, encryption="off")
    async with dvm.running():
        code, out, err = await dvm_cli("ask", "text", "hidden", "--encrypt", relay)
    assert (code, out) == (4, ""), err
    assert "announces encryption" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encrypt", "--wrap", "sealed"], "unknown wrap form"),
        (["--encrypt", "--wrap-kind", "1"], "not a gift wrap kind"),
        (["--nip04"], "--legacy"),
    ],
)
async def test_ask_exits_2_on_bad_encryption_options(
    relay: str, args: list[str], message: str
) -> None:
    ghost = Keys.generate()
    code, out, err = await dvm_cli("ask", "text", "x", "--to", ghost.npub, *args, relay)
    assert (code, out) == (2, ""), err
    assert message in err
