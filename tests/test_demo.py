"""``dvm demo --once`` runs a whole DVM economy; these check every step against the corpus, and
the paid ones against the wallets' balances."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dvmkit import demo
from dvmkit.demo.mint import mint_binary
from dvmkit.errors import DVMError
from dvmkit.nostr.event import Event
from dvmkit.relay.server import Relay

DVM_SCRIPT = Path(sys.executable).parent / "dvm"
# The mint `make mint` installs (`make test` depends on it), named absolutely so the demo
# finds it whatever directory pytest runs from.
MINT_BIN = Path(__file__).resolve().parents[1] / ".venv-mint" / "bin" / "mint"


def run_demo(mint_bin: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DVM_SCRIPT), "demo", "--once", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DVMKIT_MINT_BIN": str(mint_bin)},
    )


def expected_search(events: list[Event], word: str) -> set[str]:
    return {e.id for e in events if e.kind == 1 and word in re.findall(r"\w+", e.content.lower())}


def expected_trending(events: list[Event], limit: int) -> list[str]:
    """The trending DVM's ranking, recomputed: reactions weigh 1 and reposts 2."""
    notes = {e.id: e for e in events if e.kind == 1}
    score: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.kind in (6, 7):
            score[e.tag_values("e")[-1]] += 2 if e.kind == 6 else 1
    ranked = sorted(score, key=lambda i: (-score[i], -notes[i].created_at, i))
    return ranked[:limit]


def test_dvm_demo_once_succeeds_at_every_step() -> None:
    run = run_demo(MINT_BIN)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    steps = {line["step"]: line for line in lines}
    assert [line["step"] for line in lines] == [
        "seed",
        "discover",
        "offers",
        "legacy",
        "chain",
        "private",
        "failover",
        "paid",
        "cashu",
    ]
    assert all(line["ok"] for line in lines), lines
    got: dict[str, Any] = {name: line["result"] for name, line in steps.items()}

    events = demo.corpus(got["seed"]["corpus_base"])
    assert got["seed"]["events"] == len(events) + 2  # and the dead DVM's two events

    assert got["discover"]["dead"] == ["Old Translator"]
    builtins = [f"dvmkit {name}" for name in demo.BUILTINS]
    priced = ["Lightning Digest", "Ecash Digest"]
    assert got["discover"]["live"] == sorted(["Swift Digest", "Steady Digest", *priced, *builtins])

    offers = got["offers"]["offers"]
    assert sorted(o["dvm"] for o in offers) == ["Steady Digest", "Swift Digest"]
    assert all(o["amount_msat"] == 0 for o in offers)
    fastest = min(offers, key=lambda o: o["eta"])["dvm"]
    assert got["offers"]["chosen"] == got["offers"]["by"] == fastest
    assert got["offers"]["result"] == demo.text_stats(demo.TEXT)

    assert got["legacy"]["kind"] == 5302 + 1000
    assert set(got["legacy"]["ids"]) == expected_search(events, demo.SEARCH_WORD)
    assert len(got["legacy"]["ids"]) == len(set(got["legacy"]["ids"]))

    trending = expected_trending(events, demo.TRENDING_COUNT)
    assert got["chain"]["trending"] == trending
    contents = {e.id: e.content for e in events}
    digest = {"notes": len(trending), **demo.text_stats("\n".join(contents[i] for i in trending))}
    assert got["chain"]["result"] == digest

    private = got["private"]
    assert private["by"] == fastest  # ranked by the latency observed in earlier steps
    assert private["leaked"] == 0
    assert private["wraps_seen"] >= 2  # the request and the result, at least
    assert private["result"] == demo.text_stats(demo.PRIVATE_TEXT)

    failover = got["failover"]
    assert failover["chosen"] == failover["killed"] == fastest
    (other,) = {"Swift Digest", "Steady Digest"} - {fastest}
    assert failover["failover"] == [other]
    assert failover["by"] == other
    assert failover["result"] == demo.text_stats(demo.FAILOVER_TEXT)
    assert "killing" in run.stderr

    paid = got["paid"]
    assert (paid["by"], paid["method"]) == ("Lightning Digest", "bolt11")
    assert paid["price_msat"] == paid["paid_msat"] == demo.PRICE_MSAT == 21_000
    start = demo.CUSTOMER_DEPOSIT_MSAT
    assert paid["customer_msat"] == {"before": start, "after": start - demo.PRICE_MSAT}
    assert paid["dvm_msat"] == {"before": 0, "after": demo.PRICE_MSAT}
    assert paid["result"] == demo.text_stats(demo.PAID_TEXT)

    cashu = got["cashu"]
    assert (cashu["by"], cashu["method"]) == ("Ecash Digest", "cashu")
    assert cashu["mint"].startswith("http://127.0.0.1:")
    assert cashu["paid_sat"] == 21
    assert cashu["customer_sat"] == {"before": demo.CUSTOMER_SATS, "after": demo.CUSTOMER_SATS - 21}
    assert cashu["dvm_sat"] == {"before": 0, "after": 21}
    assert cashu["result"] == demo.text_stats(demo.CASHU_TEXT)


def test_without_a_mint_the_cashu_step_fails_naming_what_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-venv" / "bin" / "mint"
    run = run_demo(missing)
    assert run.returncode == 1
    lines = {json.loads(line)["step"]: json.loads(line) for line in run.stdout.splitlines()}
    assert [name for name, line in lines.items() if not line["ok"]] == ["cashu"]
    error = lines["cashu"]["error"]
    assert f"the Cashu mint is not installed ({missing} is missing)" in error
    assert "make mint" in error
    assert lines["paid"]["ok"]  # the dev wallet needs no mint
    assert "demo failed at step(s): cashu" in run.stderr


async def test_a_mint_that_exits_is_reported_with_its_last_words(tmp_path: Path) -> None:
    broken = tmp_path / "mint"
    broken.write_text("#!/bin/sh\necho 'no database here' >&2\nexit 3\n")
    broken.chmod(0o755)
    async with demo.DemoMint(broken) as mint:
        with pytest.raises(DVMError, match="the Cashu mint exited with 3: no database here"):
            await mint.url()


def test_the_mint_is_the_option_then_the_environment_then_make_mints() -> None:
    env = {"DVMKIT_MINT_BIN": "/opt/nutshell/mint"}
    assert mint_binary("/usr/local/bin/mint", env) == Path("/usr/local/bin/mint")
    assert mint_binary(None, env) == Path("/opt/nutshell/mint")
    assert mint_binary(None, {}) == demo.DEFAULT_MINT_BIN == Path(".venv-mint/bin/mint")


async def test_a_missing_dvm_fails_its_step_and_the_demo_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await demo.run(once=True, port=0, without=("search",), mint_bin=MINT_BIN)
    out, err = capsys.readouterr()
    lines = {json.loads(line)["step"]: json.loads(line) for line in out.splitlines()}
    assert code != 0
    assert lines["legacy"]["ok"] is False
    assert "no DVM answered" in lines["legacy"]["error"]
    assert [name for name, line in lines.items() if not line["ok"]] == ["legacy"]
    assert "demo failed at step(s): legacy" in err


async def test_a_busy_port_moves_the_relay_to_a_random_one() -> None:
    async with Relay(port=0) as taken:
        port = int(taken.url.rsplit(":", 1)[1])
        async with demo.open_relay(port) as relay:
            assert relay.url != taken.url
            assert relay.url.startswith("ws://127.0.0.1:")


def test_the_corpus_is_the_same_for_the_same_base() -> None:
    first, second = demo.corpus(1_700_000_000), demo.corpus(1_700_000_000)
    assert [e.id for e in first] == [e.id for e in second]
    assert {e.kind for e in first} == {1, 6, 7}
    assert expected_search(first, demo.SEARCH_WORD)  # the demo's search finds something
