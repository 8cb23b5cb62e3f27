"""The demo's corpus: notes, reactions and reposts from fixed keys, the same on every run.

No downloads: every event is generated and signed here, from keys derived from a fixed phrase
and a seeded random generator, so a run's results can be recomputed from its corpus base.
"""

from __future__ import annotations

import hashlib
import random

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys

VOCAB = [
    *("bitcoin", "nostr", "relays", "zaps", "coffee", "lightning", "privacy", "music"),
    *("python", "machines", "keys", "notes", "clients", "wallets", "mining", "search"),
    *("trending", "freedom", "code", "garden"),
]


def demo_keys(n: int) -> Keys:
    """The demo's n-th fixed author key (derived, so the corpus is the same every run)."""
    return Keys.parse(hashlib.sha256(f"dvmkit demo author {n}".encode()).hexdigest())


def corpus(base: int) -> list[Event]:
    """40 notes from 6 authors dated from ``base``, then reactions and reposts of them.

    Deterministic for a given ``base``: the demo prints its base, so its results can be
    recomputed from the same events.
    """
    rng = random.Random(90)
    authors = [demo_keys(n) for n in range(6)]
    notes = []
    for n in range(40):
        words = rng.sample(VOCAB, 6)
        content = f"note {n}: " + " ".join(words)
        notes.append(sign_event(authors[n % 6], kind=1, content=content, created_at=base + n * 60))
    engagement = []
    for n, note in enumerate(notes):
        for r in range((n * 7) % 9):
            reactor = authors[(n + r + 1) % 6]
            tags = [["e", note.id], ["p", note.pubkey]]
            at = note.created_at + r + 1
            engagement.append(sign_event(reactor, kind=7, content="+", tags=tags, created_at=at))
        if n % 5 == 0:
            tags = [["e", note.id], ["p", note.pubkey]]
            engagement.append(
                sign_event(authors[(n + 2) % 6], kind=6, tags=tags, created_at=note.created_at + 30)
            )
    return notes + engagement
