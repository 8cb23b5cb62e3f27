"""nostr-sdk as the independent second implementation: it builds and signs the customer's and
other providers' events, and checks that ours verify and carry the tags we meant."""

from __future__ import annotations

from collections.abc import Sequence

import nostr_sdk

from dvmkit.nostr.event import Event, UnsignedEvent, parse_event
from dvmkit.nostr.keys import Keys

PROVIDER = Keys(bytes.fromhex("7f" * 32))
CUSTOMER = Keys(bytes.fromhex("3c" * 32))
OTHER = Keys(bytes.fromhex("5a" * 32))
NOW = 1_760_000_000


def sdk_keys(keys: Keys) -> nostr_sdk.Keys:
    return nostr_sdk.Keys.parse(keys.secret_hex())


def sdk_pub(keys: Keys) -> nostr_sdk.PublicKey:
    return nostr_sdk.PublicKey.parse(keys.public_key)


def sdk_event(
    keys: Keys,
    *,
    kind: int,
    tags: Sequence[Sequence[str]] = (),
    content: str = "",
    created_at: int = NOW,
) -> Event:
    """An event built with nostr-sdk's EventBuilder, signed by nostr-sdk, parsed by ours."""
    builder = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content)
        .tags([nostr_sdk.Tag.parse(list(tag)) for tag in tags])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(created_at))
    )
    signed = sdk_keys(keys).sign_event(builder.finalize_unsigned(sdk_pub(keys)))
    return parse_event(signed.as_json())


def checked_by_sdk(unsigned: UnsignedEvent, keys: Keys) -> nostr_sdk.Event:
    """Sign one of our builders' events and have nostr-sdk parse and verify it."""
    theirs = nostr_sdk.Event.from_json(unsigned.sign(keys).to_json())
    assert theirs.verify()
    assert [tag.to_vec() for tag in theirs.tags()] == [list(t) for t in unsigned.tags]
    assert theirs.content() == unsigned.content
    assert theirs.kind().as_u16() == unsigned.kind
    return theirs
