"""NIP-01 events: the canonical serialization, the id, BIP-340 signing and verification, strict parsing.

An `Event` can only exist with a well-formed shape (it checks itself on construction); whether it is *authentic* is a
separate question answered by `Event.verify()`, which recomputes the id from the fields and checks the signature
against the pubkey. Nothing here trusts the `id` an event claims.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_sync.nostr.errors import EventErrorCode, NostrEventError, NostrKeyError
from autopilot_sync.nostr.hexstr import decode_lower_hex
from autopilot_sync.nostr.keys import KEY_LENGTH, SIGNATURE_LENGTH, PublicKey, SecretKey

Tag = tuple[str, ...]
Tags = tuple[Tag, ...]

#: NIP-01: "kind: integer between 0 and 65535".
MAX_KIND = 65535
#: Seconds since the epoch; bounded to a signed 64-bit integer so every timestamp fits a Spacetime `Timestamp`.
MAX_CREATED_AT = 2**63 - 1

EVENT_FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


def serialize_for_id(pubkey: str, created_at: int, kind: int, tags: Iterable[Sequence[str]], content: str) -> bytes:
    """The UTF-8 bytes NIP-01 hashes: `[0,<pubkey>,<created_at>,<kind>,<tags>,<content>]`, no whitespace.

    `json.dumps(ensure_ascii=False)` escapes exactly `"`, `\\`, and the control characters below U+0020 (`\\n`,
    `\\r`, `\\t`, `\\b`, `\\f` in their short forms, the rest as `\\u00XX`) and writes every other character as itself,
    which is what NIP-01 prescribes and what JSON.stringify (nostr-tools) and serde_json (rust-nostr) produce. NIP-01
    lists only the seven short escapes; the other control characters cannot appear raw in valid JSON, and every
    implementation escapes them the same way.
    """
    payload = [0, pubkey, created_at, kind, [list(tag) for tag in tags], content]
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def compute_event_id(pubkey: str, created_at: int, kind: int, tags: Iterable[Sequence[str]], content: str) -> str:
    """The event id: lowercase hex sha256 of `serialize_for_id(...)`."""
    return hashlib.sha256(serialize_for_id(pubkey, created_at, kind, tags, content)).hexdigest()


def _fail(code: EventErrorCode, field: str, message: str) -> NostrEventError:
    return NostrEventError(code, f"{field}: {message}", field=field)


def _check_text(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise _fail(EventErrorCode.WRONG_TYPE, field, f"must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(EventErrorCode.INVALID_TEXT, field, "contains a lone surrogate (not valid Unicode)") from None


def _check_hex(field: str, value: object, length: int) -> None:
    if not isinstance(value, str):
        raise _fail(EventErrorCode.WRONG_TYPE, field, f"must be a string, got {type(value).__name__}")
    if decode_lower_hex(value, length) is None:
        raise _fail(EventErrorCode.INVALID_HEX, field, f"must be {2 * length} lowercase hex digits")


def _check_int(field: str, value: object, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(EventErrorCode.WRONG_TYPE, field, f"must be an integer, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise _fail(EventErrorCode.OUT_OF_RANGE, field, f"must be between 0 and {maximum}, got {value}")


def _check_tags(value: object) -> None:
    if not isinstance(value, tuple):
        raise _fail(EventErrorCode.WRONG_TYPE, "tags", "must be a tuple of tags")
    for index, tag in enumerate(value):
        if not isinstance(tag, tuple):
            raise _fail(EventErrorCode.WRONG_TYPE, "tags", f"tag {index} must be an array of strings")
        if not tag:
            raise _fail(EventErrorCode.WRONG_TYPE, "tags", f"tag {index} is empty (a tag has one or more strings)")
        for item in tag:
            _check_text("tags", item)


@dataclass(frozen=True, slots=True)
class Event:
    """A NIP-01 event with exactly the seven wire fields, in wire form (hex strings, integer seconds).

    Construction checks the shape only; call `verify()` before believing `pubkey` signed it.
    """

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    def __post_init__(self) -> None:
        _check_hex("id", self.id, KEY_LENGTH)
        _check_hex("pubkey", self.pubkey, KEY_LENGTH)
        _check_int("created_at", self.created_at, MAX_CREATED_AT)
        _check_int("kind", self.kind, MAX_KIND)
        _check_tags(self.tags)
        _check_text("content", self.content)
        _check_hex("sig", self.sig, SIGNATURE_LENGTH)

    @classmethod
    def from_dict(cls, obj: object) -> Event:
        """Parse a decoded JSON object strictly: all seven fields, no others, exact JSON types.

        Unknown fields are refused rather than dropped: they are not covered by the signature, and an event we
        accept should mean the same thing to every reader.
        """
        if not isinstance(obj, Mapping):
            raise NostrEventError(EventErrorCode.NOT_AN_OBJECT, f"an event is a JSON object, got {type(obj).__name__}")
        for name in EVENT_FIELDS:
            if name not in obj:
                raise _fail(EventErrorCode.MISSING_FIELD, name, "is required")
        unknown = sorted(str(key) for key in obj if key not in EVENT_FIELDS)
        if unknown:
            raise _fail(EventErrorCode.UNKNOWN_FIELD, unknown[0], "is not a NIP-01 event field")
        raw_tags = obj["tags"]
        if not isinstance(raw_tags, list):
            raise _fail(EventErrorCode.WRONG_TYPE, "tags", "must be an array of arrays of strings")
        tags: list[Tag] = []
        for index, raw_tag in enumerate(raw_tags):
            if not isinstance(raw_tag, list):
                raise _fail(EventErrorCode.WRONG_TYPE, "tags", f"tag {index} must be an array of strings")
            tags.append(tuple(raw_tag))
        return cls(
            id=obj["id"],
            pubkey=obj["pubkey"],
            created_at=obj["created_at"],
            kind=obj["kind"],
            tags=tuple(tags),
            content=obj["content"],
            sig=obj["sig"],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse event JSON text: strict JSON (no NaN, no duplicate keys), then `from_dict`."""
        try:
            decoded = text.decode("utf-8") if isinstance(text, bytes) else text  # NIP-01: UTF-8, nothing else
            obj = json.loads(decoded, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise NostrEventError(EventErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from None
        return cls.from_dict(obj)

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, fields in NIP-01 order."""
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(tag) for tag in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact JSON text of the event, as sent on the wire."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def computed_id(self) -> str:
        """The id these fields hash to (which `id` must equal)."""
        return compute_event_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def verify(self) -> PublicKey:
        """Check the claimed id against the fields, then the signature against the pubkey; return the signer.

        Raises `NostrEventError` with `BAD_ID` or `BAD_SIGNATURE`. The returned key is the only pubkey a caller
        should ever treat as proven.
        """
        if self.computed_id() != self.id:
            raise _fail(EventErrorCode.BAD_ID, "id", "does not match the sha256 of the serialized event")
        try:
            signer = PublicKey.from_hex(self.pubkey)
        except NostrKeyError:
            raise _fail(EventErrorCode.BAD_SIGNATURE, "pubkey", "is not a secp256k1 x-only public key") from None
        if not signer.verify_schnorr(bytes.fromhex(self.sig), bytes.fromhex(self.id)):
            raise _fail(EventErrorCode.BAD_SIGNATURE, "sig", "is not a valid BIP-340 signature of id by pubkey")
        return signer

    def is_valid(self) -> bool:
        """True when `verify()` would succeed."""
        try:
            self.verify()
        except NostrEventError:
            return False
        return True

    def tags_named(self, name: str) -> Tags:
        """Every tag whose first element is `name`, in order."""
        return tuple(tag for tag in self.tags if tag[0] == name)


def sign_event(
    secret: SecretKey,
    *,
    kind: int,
    created_at: int,
    content: str = "",
    tags: Iterable[Sequence[str]] = (),
    aux_randomness: bytes | None = None,
) -> Event:
    """Build, hash and BIP-340-sign an event with `secret`; the result verifies by construction."""
    tag_tuple: Tags = tuple(tuple(tag) for tag in tags)
    pubkey = secret.public_key().hex
    # Construct once unsigned-shaped to validate fields before hashing, so a bad field fails with a field name.
    placeholder = Event("0" * 64, pubkey, created_at, kind, tag_tuple, content, "0" * 128)
    event_id = placeholder.computed_id()
    sig = secret.sign_schnorr(bytes.fromhex(event_id), aux_randomness)
    return Event(event_id, pubkey, created_at, kind, tag_tuple, content, sig.hex())


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
