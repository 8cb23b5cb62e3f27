"""`make demo` runs real DVM jobs over our relay; these check what it claims."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from dvmkit import demo


def _expected(top: int) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(json.dumps(demo.text_stats(demo.TEXT)))
    stats["top_words"] = stats["top_words"][:top]
    return stats


async def test_demo_answers_both_dialects_and_never_leaks_the_private_job() -> None:
    summary = await demo.run_demo()
    framework = summary["framework"]
    assert isinstance(framework, dict)
    assert framework["legacy"]["kind"] == demo.LEGACY_KIND + 1000
    assert json.loads(framework["legacy"]["content"]) == _expected(2)
    assert framework["modern"]["status"] == ["status", "success"]
    assert json.loads(framework["modern"]["content"]) == _expected(3)
    assert framework["bad param"]["status"][:3] == ["status", "error", "INVALID_PARAMETER"]
    assert summary["result"] == _expected(3)
    assert summary["observer_events"] == 3
    assert summary["observer_saw_plaintext"] is False


def test_demo_entry_point_prints_one_json_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvmkit.demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["result"] == _expected(3)
    assert "none contained the job's text" in result.stderr
