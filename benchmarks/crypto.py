"""Issue 2's benchmark: signing, verification and NIP-44 through dvmkit against raw ceilings.

Goals (DESIGN.md §8): full event verify (parse JSON + recompute id + check signature) at least
0.9x the raw coincurve parse+verify rate; signing at least 0.9x raw cached-keypair signing.
Every input is built before timing; only the operation itself is in the timed loop.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import reference
from benchmarks.report import Figure, Goal, Report, environment, ratio
from benchmarks.timing import Case, measure
from dvmkit.nostr.event import parse_event, sign_event
from dvmkit.nostr.keys import Keys

GOAL_RATIO = 0.9
KIND = 5100
CREATED_AT = 1_763_600_000
_PLAINTEXT_LEN = 300


@dataclass(frozen=True, slots=True)
class Sizes:
    sign: int
    verify: int
    nip44: int
    authors: int
    rounds: int


FULL = Sizes(sign=10_000, verify=6_000, nip44=6_000, authors=200, rounds=7)
QUICK = Sizes(sign=300, verify=300, nip44=200, authors=20, rounds=3)


def _sign_inputs(count: int) -> list[tuple[str, list[list[str]]]]:
    """Job-request-shaped contents and tags, all different (as a DVM customer would send)."""
    return [
        (
            f"summarize item {i}: " + os.urandom(24).hex(),
            [
                ["i", f"https://example.com/article/{i}", "url"],
                ["param", "lang", "en"],
                ["output", "text/plain"],
                ["relays", "ws://127.0.0.1:7777"],
            ],
        )
        for i in range(count)
    ]


def _sign_cases(sizes: Sizes) -> tuple[list[Case], str]:
    keys = Keys.generate()
    raw = reference.RawSigner(keys.secret_bytes())
    inputs = _sign_inputs(sizes.sign)
    messages = [hashlib.sha256(c.encode()).digest() for c, _ in inputs]

    def ours() -> int:
        for content, tags in inputs:
            sign_event(keys, kind=KIND, content=content, tags=tags, created_at=CREATED_AT)
        return len(inputs)

    def raw_sign() -> int:
        sign32 = raw.sign32
        for message in messages:
            sign32(message)
        return len(messages)

    def raw_id_sign() -> int:
        for content, tags in inputs:
            raw.sign_event(kind=KIND, content=content, tags=tags, created_at=CREATED_AT)
        return len(inputs)

    # The harness must measure real work: each path's output checks out before timing.
    event = sign_event(keys, kind=KIND, content=inputs[0][0], tags=inputs[0][1], created_at=1)
    if not event.verify() or not reference.verify_event_json(event.to_json_bytes()):
        raise RuntimeError("sign_event produced an event that does not verify")
    event_id, sig = raw.sign_event(kind=KIND, content="x", tags=[], created_at=1)
    if not reference.verify(
        bytes.fromhex(raw.public_key), bytes.fromhex(sig), bytes.fromhex(event_id)
    ):
        raise RuntimeError("the raw signer produced a bad signature")
    cases = [
        Case("sign: dvmkit sign_event", ours),
        Case("sign: raw sign32, cached keypair", raw_sign),
        Case("sign: raw orjson id + sign32", raw_id_sign),
    ]
    return cases, f"{len(inputs)} events/round, 4 tags, ~80-char content, list tags"


def _verify_cases(sizes: Sizes) -> tuple[list[Case], str]:
    authors = [Keys.generate() for _ in range(sizes.authors)]
    inputs = _sign_inputs(sizes.verify)
    events = [
        sign_event(authors[i % len(authors)], kind=KIND, content=c, tags=t, created_at=CREATED_AT)
        for i, (c, t) in enumerate(inputs)
    ]
    blobs = [e.to_json_bytes() for e in events]
    decoded = [(bytes.fromhex(e.pubkey), bytes.fromhex(e.sig), bytes.fromhex(e.id)) for e in events]
    # dvmkit keeps parsed public keys (a bounded cache), which helps when authors repeat, as
    # they do on a relay. Events that each have a new author measure the cold path honestly.
    cold = [
        sign_event(Keys.generate(), kind=KIND, content=c, tags=t, created_at=CREATED_AT)
        for c, t in inputs
    ]
    cold_blobs = [e.to_json_bytes() for e in cold]

    def ours() -> int:
        for blob in blobs:
            parse_event(blob)
        return len(blobs)

    def ours_cold() -> int:
        for blob in cold_blobs:
            parse_event(blob)
        return len(cold_blobs)

    def raw_parse_verify() -> int:
        verify = reference.verify
        for pub, sig, msg in decoded:
            verify(pub, sig, msg)
        return len(decoded)

    def raw_full() -> int:
        full = reference.verify_event_json
        for blob in blobs:
            full(blob)
        return len(blobs)

    if not all(reference.verify(*d) for d in decoded) or not all(
        reference.verify_event_json(b) for b in blobs
    ):
        raise RuntimeError("reference verification rejected a valid event")
    cases = [
        Case("verify: dvmkit parse_event", ours),
        Case("verify: dvmkit parse_event, every author new", ours_cold),
        Case("verify: raw PublicKeyXOnly parse+verify", raw_parse_verify),
        Case("verify: raw orjson + id + verify", raw_full),
    ]
    return cases, f"{len(blobs)} events/round from {len(authors)} authors"


def _nip44_module() -> Any | None:
    try:
        from dvmkit.nostr import nip44
    except ImportError:
        return None
    return nip44


def _nip44_cases(sizes: Sizes) -> tuple[list[Case], str]:
    alice, bob = Keys.generate(), Keys.generate()
    conv_ref = reference.nip44_conversation_key(alice.shared_x(bob.public_key))
    plaintexts = [
        (f"{i:06d} " + os.urandom(_PLAINTEXT_LEN).hex())[:_PLAINTEXT_LEN]
        for i in range(sizes.nip44)
    ]

    def ref_round() -> int:
        enc, dec = reference.nip44_encrypt, reference.nip44_decrypt
        for text in plaintexts:
            dec(enc(text, conv_ref), conv_ref)
        return len(plaintexts)

    cases = [Case("nip44: raw cryptography encrypt+decrypt", ref_round)]
    nip44 = _nip44_module()
    if nip44 is not None:
        conv: bytes = nip44.get_conversation_key(alice, bob.public_key)
        if conv != conv_ref:
            raise RuntimeError("dvmkit and the reference disagree on the conversation key")
        # Each side must read the other's payloads, so both do the same work.
        if reference.nip44_decrypt(nip44.encrypt(plaintexts[0], conv), conv) != plaintexts[0]:
            raise RuntimeError("the reference cannot decrypt dvmkit's NIP-44 payload")
        if nip44.decrypt(reference.nip44_encrypt(plaintexts[0], conv), conv) != plaintexts[0]:
            raise RuntimeError("dvmkit cannot decrypt the reference NIP-44 payload")
        encrypt: Callable[[str, bytes], str] = nip44.encrypt
        decrypt: Callable[[str, bytes], str] = nip44.decrypt

        def ours() -> int:
            for text in plaintexts:
                decrypt(encrypt(text, conv), conv)
            return len(plaintexts)

        cases.insert(0, Case("nip44: dvmkit encrypt+decrypt", ours))
    return cases, f"{len(plaintexts)} x {_PLAINTEXT_LEN}-byte messages/round, cached key"


def run(*, quick: bool = False) -> Report:
    """Measure everything and return the report (goals included)."""
    sizes = QUICK if quick else FULL
    report = Report(
        benchmark="crypto",
        quick=quick,
        environment=environment(("coincurve", "cryptography", "orjson", "dvmkit")),
        settings={"rounds": sizes.rounds, "warmup_rounds": 1, "aggregate": "best round"},
    )
    groups = {"sign": _sign_cases, "verify": _verify_cases, "nip44": _nip44_cases}
    for group, build in groups.items():
        cases, detail = build(sizes)
        rates = measure(cases, rounds=sizes.rounds)
        references = [c.name for c in cases if " dvmkit " not in f" {c.name.split(': ', 1)[1]}"]
        for case in cases:
            r = rates[case.name]
            ratios = {}
            if case.name not in references:
                for ref in references:
                    ratios[ref] = ratio(r.best, rates[ref].best, "higher")
            report.figures.append(
                Figure(
                    key=case.name,
                    group=group,
                    subject=case.name.split(": ", 1)[1],
                    value=r.best,
                    unit="ops/s",
                    rounds=r.rounds,
                    ratios=ratios,
                    note=detail,
                )
            )
    if _nip44_module() is None:
        report.notes.append("dvmkit.nostr.nip44 is not importable: only its reference was measured")
    # The goals, against both readings of "raw": the same operation done directly on
    # coincurve (id included), and the bare library call. Both are printed; neither is hidden.
    _add_goal(
        report,
        "verify: dvmkit parse_event",
        "verify: raw PublicKeyXOnly parse+verify",
        "full event verify >= 0.9x raw coincurve parse+verify",
    )
    _add_goal(
        report,
        "verify: dvmkit parse_event, every author new",
        "verify: raw PublicKeyXOnly parse+verify",
        "full event verify, every author new, >= 0.9x raw coincurve parse+verify",
    )
    _add_goal(
        report,
        "sign: dvmkit sign_event",
        "sign: raw orjson id + sign32",
        "sign_event >= 0.9x raw event signing (orjson id + cached-keypair sign32)",
    )
    _add_goal(
        report,
        "sign: dvmkit sign_event",
        "sign: raw sign32, cached keypair",
        "sign_event >= 0.9x bare cached-keypair sign32 (no id computed)",
    )
    return report


def _add_goal(report: Report, ours_key: str, reference: str, text: str) -> None:
    ours = next(f for f in report.figures if f.key == ours_key)
    value = ours.ratios[reference]
    report.goals.append(
        Goal(text=text, value=value, target=GOAL_RATIO, unit="x", met=value >= GOAL_RATIO)
    )
