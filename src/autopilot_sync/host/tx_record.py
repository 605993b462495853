"""The commit-log payload of one transaction: what the engine appends at commit and recovery replays.

One BSATN product per committed transaction: its offset, timestamp, reducer name, caller and, per table, the BSATN
bytes of the rows inserted and deleted. The offset comes first so recovery can place a record without decoding it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

TX_RECORD = bsatn.codec(
    at.product(
        ("offset", at.U64),
        ("timestamp", at.TIMESTAMP),
        ("reducer", at.STRING),
        ("caller", at.IDENTITY),
        (
            "changes",
            at.array(
                at.product(("table", at.STRING), ("inserts", at.array(at.BYTES)), ("deletes", at.array(at.BYTES)))
            ),
        ),
    )
)


_HEAD = struct.Struct("<Qq")
_U32 = struct.Struct("<I")

_native_encode: Callable[[CommittedTx, Callable[[CommittedTx], bytes]], bytes] | None
try:
    from autopilot_sync.spacetime._bsatn import encode_tx_record as _native_encode
except ImportError:  # `_bsatn.c` not compiled on this machine: `encode_record_python` runs alone
    _native_encode = None


def encode_record(tx: CommittedTx) -> bytes:
    """The log record of a committed transaction (its rows as the BSATN bytes the datastore keys them by).

    Built in C where `_bsatn.c` was compiled (`encode_tx_record`: no Python step per row, a batch's hundred rows
    included), with `encode_record_python` behind it: whatever C does not take exactly as Python writes it, Python
    writes or refuses, so the bytes and every error are `encode_record_python`'s (tests/host/test_tx_record.py).
    """
    if _native_encode is not None:
        return _native_encode(tx, encode_record_python)
    return encode_record_python(tx)


def encode_record_python(tx: CommittedTx) -> bytes:
    """`encode_record` in Python: the same bytes as `TX_RECORD.encode`, written directly (the generic codec's
    per-field calls were ~10% of a one-event call's CPU), and the twin behind the C encoder."""
    u32 = _U32.pack
    reducer = tx.reducer.encode("utf-8")
    parts = [
        _HEAD.pack(tx.offset, tx.timestamp.micros),
        u32(len(reducer)),
        reducer,
        tx.caller.identity.value.to_bytes(32, "little"),
        u32(len(tx.changes)),
    ]
    append = parts.append
    for change in tx.changes:
        table = change.table.encode("utf-8")
        append(u32(len(table)))
        append(table)
        for rows in (change.inserts, change.deletes):
            append(u32(len(rows)))
            for row_bytes, _ in rows:
                append(u32(len(row_bytes)))
                append(row_bytes)
    return b"".join(parts)


#: One table's changes in a decoded record: the table name, the inserted rows' bytes, the deleted rows' bytes.
RecordChange = tuple[str, list[bytes], list[bytes]]


def decode_record(payload: bytes) -> tuple[int, int, list[RecordChange]]:
    """(offset, timestamp in micros, changes) of a log record: what recovery replays, read directly.

    Accepts exactly what `TX_RECORD.decode` accepts and raises `DecodeError` where it does (truncation, invalid
    UTF-8, trailing bytes; tests/host/test_tx_record.py compares the two); the reducer name and the caller are
    checked and skipped. Why: a restart replays every record after the newest snapshot, and the generic codec's
    per-field calls were ~40% of replaying a one-event commit (docs/performance.md "Round 4 — startup").
    """
    try:
        offset, micros = _HEAD.unpack_from(payload, 0)
        at = _string(payload, 16)[1] + 32  # the reducer's name, then the caller's identity
        (count,) = _U32.unpack_from(payload, at)
        at += 4
        changes: list[RecordChange] = []
        for _ in range(count):
            table, at = _string(payload, at)
            inserts, at = _byte_strings(payload, at)
            deletes, at = _byte_strings(payload, at)
            changes.append((table, inserts, deletes))
    except struct.error as exc:
        raise DecodeError(f"truncated input: {exc}") from None
    if at != len(payload):  # every read above is bounds-checked, so `at` never passes the end
        raise DecodeError(f"{len(payload) - at} trailing bytes after value")
    return offset, micros, changes


def _string(data: bytes, at: int) -> tuple[str, int]:
    (size,) = _U32.unpack_from(data, at)
    end = at + 4 + size
    if end > len(data):
        raise DecodeError(f"truncated input: need {size} bytes at offset {at + 4}, have {len(data) - at - 4}")
    try:
        return data[at + 4 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None


def _byte_strings(data: bytes, at: int) -> tuple[list[bytes], int]:
    (count,) = _U32.unpack_from(data, at)
    at += 4
    if count * 4 > len(data) - at:
        raise DecodeError(f"array length {count} exceeds the {len(data) - at} bytes left")
    items: list[bytes] = []
    unpack_from = _U32.unpack_from
    for _ in range(count):
        (size,) = unpack_from(data, at)
        at += 4
        end = at + size
        if end > len(data):
            raise DecodeError(f"truncated input: need {size} bytes at offset {at}, have {len(data) - at}")
        items.append(data[at:end])
        at = end
    return items, at


def record_offset(payload: bytes) -> int:
    """The transaction offset of a commit-log record, read without decoding the rest of it.

    BSATN encodes a product as its fields in order, so a `TX_RECORD`'s first 8 bytes are its offset (u64 LE).
    """
    return int.from_bytes(payload[:8], "little")
