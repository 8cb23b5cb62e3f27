"""NIP-01 events: serialization, ids, signing and verification, tag access.

The id is the sha256 of ``[0, pubkey, created_at, kind, tags, content]`` serialized as compact
JSON with only the NIP-01 escapes; ``orjson`` writes exactly those bytes (checked against the
stdlib and nostr-sdk, control characters included), six times faster than ``json``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.keys import Keys, is_hex64, verify_signature
from dvmkit.nostr.kinds import MAX_KIND

Tag = tuple[str, ...]
Tags = tuple[Tag, ...]
MAX_CREATED_AT = 2**64 - 1  # nostr-sdk and most relays store it as an unsigned 64-bit number
_SIG_LEN = 128
_HEX = frozenset("0123456789abcdef")


def serialize(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    """The NIP-01 serialization whose sha256 is the event id."""
    return orjson.dumps([0, pubkey, created_at, kind, tags, content])


def compute_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    return hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).hexdigest()


def normalize_tags(tags: object) -> Tags:
    """Check that ``tags`` is a sequence of non-empty string sequences; return it as tuples.

    Raises:
        InvalidEvent: a tag is empty or not a list, or a value is not a string (NIP-01 tags are
            arrays of one or more strings; numbers in tags are invalid).
    """
    if type(tags) is not list and type(tags) is not tuple:
        raise InvalidEvent("tags must be an array of arrays of strings")
    out: list[Tag] = []
    append = out.append
    # A plain loop with exact type checks: this runs for every event a relay receives.
    for tag in tags:
        if (type(tag) is not list and type(tag) is not tuple) or not tag:
            break
        for value in tag:
            if type(value) is not str:
                break
        else:
            append(tuple(tag))
            continue
        break
    else:
        return tuple(out)
    index = len(out)
    tag = tags[index]
    if not isinstance(tag, (list, tuple)) or not tag:
        raise InvalidEvent(f"tag {index} must be a non-empty array of strings")
    bad = next(v for v in tag if not isinstance(v, str))
    raise InvalidEvent(f"tag {index} has a {type(bad).__name__} value; tag values must be strings")


def _check_int(name: str, value: object, maximum: int) -> int:
    # bool is an int subclass; JSON true must not pass as kind 1.
    if type(value) is not int or not 0 <= value <= maximum:
        raise InvalidEvent(f"{name} must be an integer in [0, {maximum}]")
    return value


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class UnsignedEvent:
    """An event without a signature: a template to sign, or a NIP-59 rumor."""

    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str

    @classmethod
    def from_dict(cls, data: object) -> UnsignedEvent:
        """Build an unsigned event from decoded JSON, checking its shape (any ``id`` is ignored).

        Raises:
            InvalidEvent: a field is missing or has the wrong type or format.
        """
        if not isinstance(data, Mapping):
            raise InvalidEvent("an event must be a JSON object")
        pubkey = data.get("pubkey")
        if not is_hex64(pubkey):
            raise InvalidEvent("pubkey must be 64 lowercase hex characters")
        return cls(
            pubkey,
            _check_int("created_at", data.get("created_at"), MAX_CREATED_AT),
            _check_int("kind", data.get("kind"), MAX_KIND),
            normalize_tags(data.get("tags")),
            _check_str("content", data.get("content")),
        )

    @property
    def id(self) -> str:
        return compute_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(t) for t in self.tags],
            "content": self.content,
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    def sign(self, keys: Keys, *, aux: bytes | None = None) -> Event:
        if keys.public_key != self.pubkey:
            raise InvalidEvent("the signing key is not the event's pubkey")
        return _signed(keys, self.created_at, self.kind, self.tags, self.content, aux)


@dataclass(frozen=True, slots=True)
class Event:
    """A signed Nostr event. Construct through :func:`sign_event` or :func:`parse_event`."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    @classmethod
    def from_dict(cls, data: object) -> Event:
        """Build an event from decoded JSON, checking its shape but not its id or signature.

        Raises:
            InvalidEvent: a field is missing or has the wrong type or format.
        """
        if not isinstance(data, Mapping):
            raise InvalidEvent("an event must be a JSON object")
        try:
            event_id = data["id"]
            pubkey = data["pubkey"]
            created_at = data["created_at"]
            kind = data["kind"]
            tags = data["tags"]
            content = data["content"]
            sig = data["sig"]
        except KeyError as exc:
            raise InvalidEvent(f"event has no {exc.args[0]!r} field") from None
        if not is_hex64(event_id):
            raise InvalidEvent("id must be 64 lowercase hex characters")
        if not is_hex64(pubkey):
            raise InvalidEvent("pubkey must be 64 lowercase hex characters", event_id=event_id)
        if not (isinstance(sig, str) and len(sig) == _SIG_LEN and _HEX.issuperset(sig)):
            raise InvalidEvent("sig must be 128 lowercase hex characters", event_id=event_id)
        return cls(
            event_id,
            pubkey,
            _check_int("created_at", created_at, MAX_CREATED_AT),
            _check_int("kind", kind, MAX_KIND),
            normalize_tags(tags),
            _check_str("content", content),
            sig,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Decode JSON text into an event, checking its shape but not its signature."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"event is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(t) for t in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json_bytes(self) -> bytes:
        # orjson writes tuples as arrays, so the tags need no copying.
        return orjson.dumps(
            {
                "id": self.id,
                "pubkey": self.pubkey,
                "created_at": self.created_at,
                "kind": self.kind,
                "tags": self.tags,
                "content": self.content,
                "sig": self.sig,
            }
        )

    def to_json(self) -> str:
        return self.to_json_bytes().decode()

    def has_valid_id(self) -> bool:
        return self.id == compute_id(
            self.pubkey, self.created_at, self.kind, self.tags, self.content
        )

    def verify(self) -> bool:
        """True when the id matches the content and the signature is valid for the pubkey."""
        return verification_problem(self) is None

    # -- tags -------------------------------------------------------------------------------

    def tag(self, name: str) -> Tag | None:
        """The first tag called ``name``, or None."""
        for tag in self.tags:
            if tag[0] == name:
                return tag
        return None

    def tag_value(self, name: str) -> str | None:
        """The first value of the first tag called ``name``, or None."""
        for tag in self.tags:
            if tag[0] == name and len(tag) > 1:
                return tag[1]
        return None

    def tags_named(self, name: str) -> list[Tag]:
        return [tag for tag in self.tags if tag[0] == name]

    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag called ``name`` (what relays index for letters)."""
        return [tag[1] for tag in self.tags if tag[0] == name and len(tag) > 1]


# Building a frozen slotted dataclass calls object.__setattr__ once per field; the slot
# descriptors' own setters do the same work in half the time, which matters on the hot paths.
_EVENT_SLOTS = tuple(
    getattr(Event, name).__set__
    for name in ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")
)
_new = object.__new__


def _make_event(
    event_id: str, pubkey: str, created_at: int, kind: int, tags: Tags, content: str, sig: str
) -> Event:
    event: Event = _new(Event)
    set_id, set_pubkey, set_created, set_kind, set_tags, set_content, set_sig = _EVENT_SLOTS
    set_id(event, event_id)
    set_pubkey(event, pubkey)
    set_created(event, created_at)
    set_kind(event, kind)
    set_tags(event, tags)
    set_content(event, content)
    set_sig(event, sig)
    return event


def _parse_fast(raw: str | bytes) -> Event | None:
    """Verify a well-formed event with the fewest Python steps; None means "look closer".

    Any doubt returns None and :func:`parse_event` repeats the work with the precise checks,
    so this path decides only that an event is valid, never why one is not.
    """
    try:
        event = event_from_dict_fast(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None
    if event is None or verification_problem(event) is not None:
        return None
    return event


def event_from_dict_fast(data: object) -> Event | None:
    """Shape-check decoded JSON like :meth:`Event.from_dict`, in the fewest Python steps.

    Checks exactly what :meth:`Event.from_dict` checks (field types and ranges, lowercase hex
    of the right lengths, tags as arrays of strings) but neither the id nor the signature, so
    that a caller (a relay) can apply its own cheap limits before paying for the hash and the
    BIP-340 verification.

    Returns:
        The event, or None when anything is off: :meth:`Event.from_dict` then says what.
    """
    try:
        event_id = data["id"]  # type: ignore[index]
        pubkey = data["pubkey"]  # type: ignore[index]
        created_at = data["created_at"]  # type: ignore[index]
        kind = data["kind"]  # type: ignore[index]
        content = data["content"]  # type: ignore[index]
        sig = data["sig"]  # type: ignore[index]
        tags = normalize_tags(data["tags"])  # type: ignore[index]
        if (
            type(event_id) is not str
            or type(pubkey) is not str
            or type(sig) is not str
            or type(content) is not str
            or type(created_at) is not int
            or type(kind) is not int
            or not 0 <= kind <= MAX_KIND
            or not 0 <= created_at <= MAX_CREATED_AT
            or len(event_id) != 64
            or len(pubkey) != 64
            or len(sig) != _SIG_LEN
            # fromhex accepts upper case and spaces; the round trip insists on lowercase hex.
            or bytes.fromhex(event_id).hex() != event_id
            or bytes.fromhex(pubkey).hex() != pubkey
            or bytes.fromhex(sig).hex() != sig
        ):
            return None
    except (TypeError, KeyError, ValueError, IndexError, InvalidEvent):
        return None
    return _make_event(event_id, pubkey, created_at, kind, tags, content, sig)


def parse_event(raw: str | bytes | Mapping[str, Any]) -> Event:
    """Decode and fully verify an event: shape, id and signature.

    Raises:
        InvalidEvent: with a message that says which check failed.
    """
    if not isinstance(raw, Mapping):
        fast = _parse_fast(raw)
        if fast is not None:
            return fast
    event = Event.from_dict(raw) if isinstance(raw, Mapping) else Event.from_json(raw)
    problem = verification_problem(event)
    if problem is not None:
        raise InvalidEvent(problem, event_id=event.id)
    return event


def verification_problem(event: Event) -> str | None:
    """What is wrong with a well-shaped event's id or signature, or None when both check out.

    For callers that word their own refusal (a relay's ``OK false "invalid: ..."``).
    """
    # digest.hex() is lowercase hex by construction, so equality also checks the id's format.
    digest = hashlib.sha256(
        serialize(event.pubkey, event.created_at, event.kind, event.tags, event.content)
    ).digest()
    if digest.hex() != event.id:
        return "id does not match content"
    if not verify_signature(bytes.fromhex(event.pubkey), bytes.fromhex(event.sig), digest):
        return "bad signature"
    return None


def sign_event(
    keys: Keys,
    *,
    kind: int,
    content: str = "",
    tags: Iterable[Sequence[str]] = (),
    created_at: int | None = None,
    clock: Callable[[], float] = time.time,
    aux: bytes | None = None,
) -> Event:
    """Build and sign an event with ``keys``.

    Raises:
        InvalidEvent: kind, created_at, content or tags are malformed.
    """
    kind = _check_int("kind", kind, MAX_KIND)
    created = int(clock()) if created_at is None else created_at
    created = _check_int("created_at", created, MAX_CREATED_AT)
    norm_tags = normalize_tags(tags if type(tags) is list or type(tags) is tuple else list(tags))
    content = _check_str("content", content)
    return _signed(keys, created, kind, norm_tags, content, aux)


def _signed(
    keys: Keys, created_at: int, kind: int, tags: Tags, content: str, aux: bytes | None
) -> Event:
    """The event ``keys`` signs from checked fields; one hash is both its id and what is signed."""
    pubkey = keys.public_key
    digest = hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).digest()
    sig = keys.sign_id(digest) if aux is None else keys.sign(digest, aux).hex()
    return _make_event(digest.hex(), pubkey, created_at, kind, tags, content, sig)
