"""`make demo` runs a real private job over our relay; these check what it claims."""

from __future__ import annotations

import json
import subprocess
import sys

from dvmkit import demo


async def test_demo_job_is_answered_by_the_provider_and_never_leaks() -> None:
    summary = await demo.run_demo()
    assert summary["result"] == json.loads(json.dumps(demo.text_stats(demo.TEXT)))
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
    assert json.loads(line)["result"] == json.loads(json.dumps(demo.text_stats(demo.TEXT)))
    assert "none contained the job's text" in result.stderr
