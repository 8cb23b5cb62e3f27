"""The README's example is real code: it runs, and its DVM answers as the README says."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from dvmkit import DVM, RelayPool, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.relay.server import Relay

README = Path(__file__).parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Write a DVM", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:600]
    assert "make demo" in head
    assert "make test" in head


async def test_readme_example_dvm_answers_in_both_dialects() -> None:
    async with Relay(port=0) as relay:
        code = _example().replace("ws://127.0.0.1:10547", relay.url)
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        exec(compile(code, "README.md", "exec"), namespace)
        dvm = namespace["dvm"]
        assert isinstance(dvm, DVM)
        customer = Keys.generate()
        async with (
            dvm.running(),
            RelayPool(relays=[relay.url]) as pool,
            pool.subscribe({"#p": [customer.public_key]}) as sub,
        ):
            await sub.wait_stored()
            legacy = sign_event(
                customer, kind=5050, tags=[["i", "hi", "text"], ["param", "times", "2"]]
            )
            modern = sign_event(customer, kind=25000, content="yo", tags=[["t", "text"]])
            await pool.publish(legacy)
            await pool.publish(modern)
            answers: dict[str, str] = {}
            async with asyncio.timeout(10):
                async for event in sub:
                    done = event.kind == 6050 or event.tag_value("status") == "success"
                    if done:
                        answers[event.tag_value("e") or ""] = event.content
                    if len(answers) == 2:
                        break
    assert answers == {legacy.id: "HI HI", modern.id: "YO"}
