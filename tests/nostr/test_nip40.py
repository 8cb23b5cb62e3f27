"""NIP-40 expiration."""

from __future__ import annotations

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip40 import expiration, expiration_tag, is_expired

KEYS = Keys.generate()


def test_expiration_is_read_and_compared_with_the_clock() -> None:
    ev = sign_event(KEYS, kind=1, tags=[expiration_tag(1000)])
    assert expiration(ev) == 1000
    assert not is_expired(ev, now=lambda: 999.9)
    assert is_expired(ev, now=lambda: 1000)


def test_no_or_malformed_expiration_means_never_expires() -> None:
    for tags in (
        [],
        [["expiration"]],
        [["expiration", "soon"]],
        [["expiration", "-5"]],
        [["expiration", "١٢"]],
    ):  # Arabic-Indic digits: isdigit() but not ASCII
        ev = sign_event(KEYS, kind=1, tags=tags)
        assert expiration(ev) is None
        assert not is_expired(ev, now=lambda: 2**40)


def test_absurdly_long_expiration_is_malformed_not_a_crash() -> None:
    # int() refuses more than 4300 digits; a hostile tag must read as "no expiration".
    ev = sign_event(KEYS, kind=1, tags=[["expiration", "9" * 5000]])
    assert expiration(ev) is None
    assert expiration(sign_event(KEYS, kind=1, tags=[["expiration", "9" * 20]])) == int("9" * 20)
