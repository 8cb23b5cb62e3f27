"""Damaged gift wraps (Hypothesis): a running DVM drops each unanswered and serves on.

One DVM on our relay lives for the whole test. Each example takes a good wrap of a request the
DVM must never run and damages one field of it: a bit flipped (in the bytes of a hex field, in
the text of the content or the recipient), or the content, recipient, created_at or kind cut
short. It delivers the result both ways a wrap can reach the engine: published to the relay
(which refuses what does not verify), and, when it still verifies (what a relay pool could
deliver), handed to ``Engine.on_event``, whose own checks must refuse it. Content and tag
damage is also tried signed again by the wrap's one-time key, so that it gets past the
signature checks into decryption and addressing. Then a good private request follows on the
same connection; once it is answered, the DVM had read the damaged one. No exception may
escape, the handler runs for the good requests only, and nothing ever answers the request
inside the damaged wraps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvmkit.errors import InvalidEvent
from dvmkit.nostr import giftwrap
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import WRAP_KINDS
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.provider import DVM

from .conftest import WAIT
from .private import PrivateCustomer, private_customer, recording_dvm

Field = Literal["id", "pubkey", "created_at", "kind", "tags", "content", "sig"]
#: Damage to these is also tried re-signed: it then reaches decryption and addressing.
RESIGNABLE: tuple[Field, ...] = ("content", "tags")
FIELDS: tuple[Field, ...] = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


@dataclass(frozen=True)
class Damage:
    """One field of one base wrap: a bit flipped at ``at``, or the field cut at ``at``."""

    base: int
    field: Field
    how: Literal["flip", "truncate"]
    at: int
    bit: int
    resign: bool


damages = st.builds(
    Damage,
    base=st.integers(0, 3),
    field=st.sampled_from(FIELDS),
    how=st.sampled_from(["flip", "truncate"]),
    at=st.integers(0, 10_000),
    bit=st.integers(0, 15),
    resign=st.booleans(),
).map(lambda d: d if d.field in RESIGNABLE else dataclasses.replace(d, resign=False))


def _text(value: str, damage: Damage) -> str:
    at = damage.at % len(value)
    if damage.how == "truncate":
        return value[:at]
    # Flip within 7 bits: the text stays ASCII (a wrap's fields are), but maybe not hex.
    return value[:at] + chr(ord(value[at]) ^ (1 << (damage.bit % 7))) + value[at + 1 :]


def _hex(value: str, damage: Damage) -> str:
    # A bit of the bytes, so the field keeps its shape and reaches the id and signature
    # checks; a hex field cut short is refused before anything reads it (not worth a trip).
    raw = bytearray.fromhex(value)
    raw[damage.at % len(raw)] ^= 1 << (damage.bit % 8)
    return raw.hex()


def _number(value: int, damage: Damage) -> int:
    if damage.how == "truncate":
        digits = str(value)
        return int(digits[: max(1, damage.at % len(digits))]) if len(digits) > 1 else 0
    return value ^ (1 << damage.bit)


def damaged(wrap: Event, wrapper: Keys, damage: Damage) -> Event:
    """``wrap`` with ``damage`` done, signed again by ``wrapper`` when it says so."""
    fields = wrap.to_dict()
    if damage.field in ("created_at", "kind"):
        fields[damage.field] = _number(fields[damage.field], damage)
    elif damage.field == "tags":
        (name, recipient), *_ = fields["tags"]
        cut = damage.how == "truncate" and damage.at % 2 == 0
        fields["tags"] = [] if cut else [[name, _text(recipient, damage)]]
    elif damage.field == "content":
        fields["content"] = _text(fields["content"], damage)
    else:
        fields[damage.field] = _hex(fields[damage.field], damage)
    if damage.resign:
        return sign_event(
            wrapper,
            kind=fields["kind"],
            content=fields["content"],
            tags=fields["tags"],
            created_at=fields["created_at"],
        )
    tags = tuple(tuple(tag) for tag in fields["tags"])
    return Event(
        fields["id"],
        fields["pubkey"],
        fields["created_at"],
        fields["kind"],
        tags,
        fields["content"],
        fields["sig"],
    )


def _well_shaped(event: Event) -> bool:
    """An event whose fields parse: what a relay could name in its OK at all."""
    try:
        Event.from_dict(event.to_dict())
    except InvalidEvent:
        return False
    return True


@dataclass
class Served:
    dvm: DVM
    calls: list[str]
    customer: PrivateCustomer
    never: Event  # the request inside every base wrap
    bases: list[tuple[Event, Keys]]  # (wrap, its one-time key)
    pings: list[str]


@pytest.fixture
async def served(our_relay_url: str) -> AsyncIterator[Served]:
    dvm, calls = recording_dvm(our_relay_url)
    async with dvm.running(), private_customer(our_relay_url, dvm.public_key) as customer:
        never = customer.sign(content="never run", tags=[["p", dvm.public_key]])
        rumor = giftwrap.make_rumor(
            customer.pubkey, kind=MODERN_KIND, content=never.content, tags=never.tags
        )
        bases = []
        for kind in sorted(WRAP_KINDS):
            wrapper = Keys.generate()
            bases.append(
                (giftwrap.wrap_signed(never, dvm.public_key, kind=kind, wrapper=wrapper), wrapper)
            )
            wrapper = Keys.generate()
            sealed = giftwrap.gift_wrap(
                rumor, customer.keys, dvm.public_key, kind=kind, wrapper=wrapper
            )
            bases.append((sealed, wrapper))
        yield Served(dvm, calls, customer, never, bases, [])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(damage=damages)
async def test_damaged_wraps_are_dropped_and_the_dvm_serves_on(
    served: Served, damage: Damage
) -> None:
    wrap, wrapper = served.bases[damage.base]
    bad = damaged(wrap, wrapper, damage)
    assert bad.to_dict() != wrap.to_dict()
    customer, engine = served.customer, served.dvm._engine
    assert engine is not None

    assert _well_shaped(bad)
    await customer.pool.publish(bad, timeout=WAIT)  # accepted or refused: either is fine
    if bad.kind in WRAP_KINDS and bad.verify():
        # What a pool could pass on (it verifies every event it delivers, so the engine does
        # not check a wrap's own signature again) must fail the engine's own checks.
        refused = served.dvm.stats().refused_wraps
        engine.on_event(bad)
        assert served.dvm.stats().refused_wraps == refused + 1

    ping = await customer.ask(f"ping {len(served.pings)}")
    served.pings.append(ping.id)
    result = await customer.final(ping.id)
    assert result.event.content == f"PING {len(served.pings) - 1}"
    assert served.calls == served.pings
    assert customer.answers(served.never.id) == []
    assert customer.in_the_clear(about=[served.never.id]) == []
