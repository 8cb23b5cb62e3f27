"""Protocol tools in nak's shape: keys, events, verification, NIP-19 and NIP-44."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dvmkit.cli.common import (
    EXIT_INVALID_EVENTS,
    emit,
    error,
    load_keys,
    secret_option,
    translate_errors,
)
from dvmkit.errors import Bech32Error, InvalidEvent
from dvmkit.nostr import nip19
from dvmkit.nostr.event import parse_event, sign_event
from dvmkit.nostr.keys import Keys, parse_public_key

keys_app = typer.Typer(help="Generate keys.", no_args_is_help=True)
encode_app = typer.Typer(help="Encode NIP-19 entities.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new key pair as JSON: secret hex, nsec, pubkey hex, npub.

    This is the one command that prints a secret: keep its output private.
    """
    keys = Keys.generate()
    emit(
        {
            "secret": keys.secret_hex(),
            "nsec": keys.nsec(),
            "pubkey": keys.public_key,
            "npub": keys.npub,
        }
    )


def parse_tag(text: str) -> tuple[str, ...]:
    """nak's tag syntax: ``name=v1;v2`` (a bare ``name`` is a one-element tag)."""
    name, sep, values = text.partition("=")
    if not name:
        raise InvalidEvent(f"tag {text!r} has no name; write -t name=value1;value2")
    return (name, *values.split(";")) if sep else (name,)


@translate_errors
def event_command(
    kind: Annotated[int, typer.Option("-k", "--kind", help="event kind")] = 1,
    content: Annotated[str, typer.Option("-c", "--content", help="event content")] = "",
    tag: Annotated[
        list[str] | None, typer.Option("-t", "--tag", help="tag as name=value1;value2")
    ] = None,
    sec: str = secret_option("the signing key as hex or nsec"),
    ts: Annotated[int | None, typer.Option("--ts", help="created_at (unix seconds)")] = None,
) -> None:
    """Sign an event and print it as one line of compact JSON."""
    keys = load_keys(sec)
    tags = [parse_tag(t) for t in tag or []]
    event = sign_event(keys, kind=kind, content=content, tags=tags, created_at=ts)
    sys.stdout.write(event.to_json() + "\n")


def verify_command() -> None:
    """Read events (one JSON per line) on stdin; report invalid ones on stderr.

    Exits 0 when every event is valid, 123 when any is not (as nak does).
    """
    invalid = 0
    for number, line in enumerate(sys.stdin.buffer, start=1):
        if not line.strip():
            continue
        try:
            parse_event(line)
        except InvalidEvent as exc:
            invalid += 1
            error(f"line {number}: invalid event: {exc}")
    if invalid:
        raise typer.Exit(EXIT_INVALID_EVENTS)


@translate_errors
def decode_command(
    codes: Annotated[list[str], typer.Argument(help="npub, note, nprofile, nevent, naddr, nsec")],
) -> None:
    """Decode NIP-19 entities; print one JSON object per line.

    An nsec decodes to its public key: the secret itself is never printed.
    """
    for code in codes:
        decoded = nip19.decode(code)
        value = decoded.value
        if decoded.kind == "nsec":
            assert isinstance(value, str)
            emit({"type": "nsec", "pubkey": Keys(bytes.fromhex(value)).public_key})
        elif decoded.kind == "npub":
            emit({"type": "npub", "pubkey": value})
        elif decoded.kind == "note":
            emit({"type": "note", "id": value})
        elif isinstance(value, nip19.Profile):
            emit({"type": "nprofile", "pubkey": value.pubkey, "relays": list(value.relays)})
        elif isinstance(value, nip19.EventPointer):
            emit(
                {
                    "type": "nevent",
                    "id": value.id,
                    "relays": list(value.relays),
                    "author": value.author,
                    "kind": value.kind,
                }
            )
        elif isinstance(value, nip19.AddressPointer):
            emit(
                {
                    "type": "naddr",
                    "identifier": value.identifier,
                    "pubkey": value.pubkey,
                    "kind": value.kind,
                    "relays": list(value.relays),
                }
            )


Relays = Annotated[list[str] | None, typer.Option("--relay", "-r", help="relay hint (repeatable)")]


def _hex(name: str, value: str) -> str:
    # Accept npub/note input too, as nak does, but never nsec.
    if value.startswith(("npub1", "note1")):
        decoded = nip19.decode(value)
        assert isinstance(decoded.value, str)
        return decoded.value
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise Bech32Error(f"{name} must be 64 hex characters")
    return value


@encode_app.command("npub")
@translate_errors
def encode_npub(pubkey: str) -> None:
    """Encode a hex public key as npub."""
    print(nip19.encode_npub(parse_public_key(pubkey)))


@encode_app.command("note")
@translate_errors
def encode_note(event_id: str) -> None:
    """Encode a hex event id as note."""
    print(nip19.encode_note(_hex("event id", event_id)))


@encode_app.command("nprofile")
@translate_errors
def encode_nprofile(pubkey: str, relay: Relays = None) -> None:
    """Encode a public key with relay hints as nprofile."""
    print(nip19.encode_nprofile(nip19.Profile(parse_public_key(pubkey), tuple(relay or []))))


@encode_app.command("nevent")
@translate_errors
def encode_nevent(
    event_id: str,
    relay: Relays = None,
    author: Annotated[str | None, typer.Option(help="author public key")] = None,
    kind: Annotated[int | None, typer.Option(help="event kind")] = None,
) -> None:
    """Encode an event id with relay, author and kind hints as nevent."""
    pointer = nip19.EventPointer(
        _hex("event id", event_id),
        tuple(relay or []),
        parse_public_key(author) if author else None,
        kind,
    )
    print(nip19.encode_nevent(pointer))


@encode_app.command("naddr")
@translate_errors
def encode_naddr(
    pubkey: Annotated[str, typer.Option(help="author public key")],
    kind: Annotated[int, typer.Option(help="event kind")],
    identifier: Annotated[str, typer.Option("--identifier", "-d", help="the d tag")] = "",
    relay: Relays = None,
) -> None:
    """Encode an addressable event's coordinates as naddr."""
    pointer = nip19.AddressPointer(identifier, parse_public_key(pubkey), kind, tuple(relay or []))
    print(nip19.encode_naddr(pointer))


@translate_errors
def encrypt_command(
    text: Annotated[str, typer.Argument(help="the plaintext")],
    to: Annotated[str, typer.Option("--to", help="recipient public key (hex or npub)")],
    sec: str = secret_option("your secret key as hex or nsec"),
) -> None:
    """Encrypt TEXT to a public key with NIP-44 v2; print the payload."""
    from dvmkit.nostr import nip44  # cryptography loads only for the commands that use it

    keys = load_keys(sec)
    print(nip44.encrypt_to(keys, parse_public_key(to), text))


@translate_errors
def decrypt_command(
    payload: Annotated[str, typer.Argument(help="a NIP-44 v2 payload")],
    sender: Annotated[str, typer.Option("--from", help="sender public key (hex or npub)")],
    sec: str = secret_option("your secret key as hex or nsec"),
) -> None:
    """Decrypt a NIP-44 v2 payload from a public key; print the plaintext."""
    from dvmkit.nostr import nip44

    keys = load_keys(sec)
    print(nip44.decrypt_from(keys, parse_public_key(sender), payload))
