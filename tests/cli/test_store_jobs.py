"""`dvm jobs`: a DVM's job store read from the command line, and `--owed`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dvmkit.cli.main import app
from dvmkit.protocol.job import Dialect
from dvmkit.store import OWED, REFUNDED, JobRecord, JobState, SQLiteJobStore

runner = CliRunner()


def _record(n: int, state: JobState, **fields: object) -> JobRecord:
    options: dict[str, object] = {
        "id": f"{n:064x}",
        "dialect": Dialect.MODERN,
        "customer": "c" * 64,
        "kind": 25000,
        "request": '{"secret input": "never printed"}',
        "state": state,
        "created_at": 1_760_000_000.0 + n,
        "updated_at": 1_760_000_000.0 + n,
    }
    options.update(fields)
    return JobRecord(**options)  # type: ignore[arg-type]


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "dvm.jobs.sqlite3"

    async def fill() -> None:
        async with SQLiteJobStore(path) as store:
            await store.insert(_record(1, JobState.SUCCESS, result_event_id="e" * 64))
            paid = {"price_msat": 21_000, "paid_msat": 21_000, "payment_method": "zap"}
            await store.insert(
                _record(2, JobState.ERROR, refund=OWED, error_code="TIMEOUT", **paid)
            )
            await store.insert(_record(3, JobState.ERROR, refund=REFUNDED, **paid))

    asyncio.run(fill())
    return path


def _lines(output: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in output.splitlines()]


def test_jobs_lists_newest_first_without_the_request(store_file: Path) -> None:
    result = runner.invoke(app, ["jobs", "--db", str(store_file)])
    assert result.exit_code == 0, result.output
    jobs = _lines(result.stdout)
    assert [j["id"] for j in jobs] == [f"{n:064x}" for n in (3, 2, 1)]
    assert "never printed" not in result.stdout
    assert jobs[2]["result"] == "e" * 64


def test_owed_lists_only_paid_jobs_not_refunded(store_file: Path) -> None:
    result = runner.invoke(app, ["jobs", "--db", str(store_file), "--owed"])
    assert result.exit_code == 0, result.output
    assert _lines(result.stdout) == [
        {
            "id": f"{2:064x}",
            "state": "error",
            "dialect": "modern",
            "kind": 25000,
            "customer": "c" * 64,
            "created_at": 1_760_000_002,
            "price_msat": 21_000,
            "paid_msat": 21_000,
            "payment_method": "zap",
            "refund": "owed",
            "error_code": "TIMEOUT",
        }
    ]
    by_state = runner.invoke(app, ["jobs", "--db", str(store_file), "--state", "success"])
    assert [j["id"] for j in _lines(by_state.stdout)] == [f"{1:064x}"]


def test_jobs_finds_the_one_store_in_dot_dvmkit(
    store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVMKIT_DB", raising=False)
    (tmp_path / ".dvmkit").mkdir()
    store_file.rename(tmp_path / ".dvmkit" / "abc.jobs.sqlite3")
    result = runner.invoke(app, ["jobs", "--owed"])
    assert result.exit_code == 0, result.output
    assert len(_lines(result.stdout)) == 1


def test_jobs_refuses_what_it_cannot_read(
    tmp_path: Path, store_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVMKIT_DB", raising=False)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    cases = {
        ("jobs",): "name the job store with --db",
        ("jobs", "--db", str(tmp_path / "missing")): "no job store at",
        ("jobs", "--db", str(store_file), "--state", "nope"): "unknown state 'nope'",
        ("jobs", "--db", str(garbage)): "dvm: ",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == ""
