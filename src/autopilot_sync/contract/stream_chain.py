"""The per-stream hash chain: one definition the module, desktops, the SDK and `verify-stream` all compute.

Why: anchors (`head_seq`, `retained_from_seq`, `epoch`) catch a host that lost or reset history only when the numbers
differ. A host restored from an older copy that then commits a *different* seq 198 has the same numbers as before;
only a value that commits to every event before it tells the two histories apart. Each `sync_event` row carries
`chain = link(previous chain, event)`, `stream_head` carries the head's chain and the chain just below the retained
floor, so anyone holding one event's chain can prove that the host's history up to it is the one they applied.

The bytes are pinned in docs/protocol.md ("Stream hash chain", with test vectors checked against this file by
`tests/module/test_stream_chain.py`); the TypeScript twin of the module computes the same:

- hash: SHA-256; a chain value is written `sha256:<64 lowercase hex>` and enters the next link as its 32 raw bytes;
- strings: BSATN `String` (u32 little-endian byte length, then UTF-8); integers: BSATN `u64` (8 bytes little-endian);
- `genesis(stream_id, epoch) = SHA-256(str("autopilot-sync/stream-chain/v1") || str(stream_id) || u64(epoch))`;
- `link(prev, e) = SHA-256(raw(prev) || str(stream_id) || u64(epoch) || u64(seq) || str(kind)
  || str(idempotency_key) || str(payload_hash))`.

Pure: the standard library only, no import of the host, the module or the client.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

PREFIX = "sha256:"
GENESIS_TAG = "autopilot-sync/stream-chain/v1"
_PREFIX_LENGTH = len(PREFIX)
_VALUE_LENGTH = _PREFIX_LENGTH + 64
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_EPOCH_SEQ_LEN = struct.Struct("<QQI")  # u64(epoch) || u64(seq) || the u32 length of the kind that follows
#: An empty SHA-256 state each link copies: `hashlib.sha256(data)` fetches the digest from OpenSSL 3's provider on
#: every call, which cost more than hashing one link's ~200 bytes; a copy skips that fetch (same digest).
_SHA256 = hashlib.sha256()


class ChainValueError(ValueError):
    """Text that is not a chain value (`sha256:` and 64 lowercase hex digits)."""


def _str(text: str) -> bytes:
    data = text.encode("utf-8")
    return _U32.pack(len(data)) + data


def text_of(digest: bytes) -> str:
    """The chain value written for 32 raw bytes (`sha256:<64 lowercase hex>`)."""
    return PREFIX + digest.hex()


def raw(chain: str) -> bytes:
    """The 32 bytes of a chain value (ChainValueError for anything else, upper-case hex included).

    Without a regular expression: `fromhex` and the round trip through `hex` (which writes exactly 64 lowercase
    digits) check the digits, as `sha256:[0-9a-f]{64}` did, for a fraction of the match's cost (the module parses
    every stream's head value once per call: a fan-in call of many streams did it as often as it had streams).
    """
    if len(chain) == _VALUE_LENGTH and chain.startswith(PREFIX):
        digits = chain[_PREFIX_LENGTH:]
        try:
            digest = bytes.fromhex(digits)  # also takes upper case and spaces: the round trip below refuses those
        except ValueError:
            digest = b""
        if digest.hex() == digits:
            return digest
    raise ChainValueError(f"not a chain value (sha256: and 64 lowercase hex digits): {chain[:80]!r}")


def genesis(stream_id: str, epoch: int) -> str:
    """The chain value before seq 1 of an epoch that starts empty (a new stream, or one just reset)."""
    return text_of(hashlib.sha256(_str(GENESIS_TAG) + _str(stream_id) + _U64.pack(epoch)).digest())


def link(prev: str, stream_id: str, epoch: int, seq: int, kind: str, idempotency_key: str, payload_hash: str) -> str:
    """The chain value of one event, committing to its predecessor's chain value and to the event's identity."""
    return text_of(link_digest(raw(prev), stream_id, epoch, seq, kind, idempotency_key, payload_hash))


def link_digest(
    prev: bytes, stream_id: str, epoch: int, seq: int, kind: str, idempotency_key: str, payload_hash: str
) -> bytes:
    """`link` from and to the 32 raw bytes of chain values: a writer that chains many events in a row (the module's
    batch append) keeps each value's bytes for the next link instead of parsing the text it just wrote."""
    stream, kind_bytes = stream_id.encode("utf-8"), kind.encode("utf-8")
    key, hash_bytes = idempotency_key.encode("utf-8"), payload_hash.encode("utf-8")
    message = b"".join(
        (
            prev,
            _U32.pack(len(stream)),
            stream,
            _EPOCH_SEQ_LEN.pack(epoch, seq, len(kind_bytes)),
            kind_bytes,
            _U32.pack(len(key)),
            key,
            _U32.pack(len(hash_bytes)),
            hash_bytes,
        )
    )
    digest = _SHA256.copy()  # not `hashlib.sha256(message)`: see `_SHA256`
    digest.update(message)
    return digest.digest()


class ChainedEvent(Protocol):
    """What a chain check reads from an event (a `sync_event` row, the desktop's `StreamEvent`, ...)."""

    @property
    def stream_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def payload_hash(self) -> str: ...
    @property
    def chain(self) -> str: ...


def event_link(prev: str, event: ChainedEvent) -> str:
    """`link` over an event's own fields."""
    return link(prev, event.stream_id, event.epoch, event.seq, event.kind, event.idempotency_key, event.payload_hash)


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain fails: the first seq whose stored chain value is not the one recomputed, and why."""

    seq: int
    reason: str


def first_break(prev_seq: int, prev_chain: str, events: Iterable[ChainedEvent]) -> Break | None:
    """Walk `events` (ascending) from the chain value `prev_chain` at `prev_seq`; the first break, or None.

    A missing seq, an event of another stream or a stored value that is not the recomputed one is a break.
    """
    seq, chain = prev_seq, prev_chain
    stream = None
    for event in events:
        if stream is None:
            stream = event.stream_id
        if event.stream_id != stream:
            return Break(event.seq, f"event of stream {event.stream_id!r} in the chain of {stream!r}")
        if event.seq != seq + 1:
            return Break(seq + 1, f"seq {seq + 1} missing (next is {event.seq})")
        try:
            expected = event_link(chain, event)
        except ChainValueError as exc:
            return Break(event.seq, str(exc))
        if event.chain != expected:
            return Break(event.seq, f"chain {event.chain or '(empty)'} but the predecessor links to {expected}")
        seq, chain = event.seq, event.chain
    return None
