"""The commit-log payload of one transaction: what the engine appends at commit and recovery replays.

One BSATN product per committed transaction: its offset, timestamp, reducer name, caller and, per table, the BSATN
bytes of the rows inserted and deleted. The offset comes first so recovery can place a record without decoding it.
"""

from __future__ import annotations

import struct

from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn

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


def encode_record(tx: CommittedTx) -> bytes:
    """The log record of a committed transaction (its rows as the BSATN bytes the datastore keys them by).

    The same bytes as `TX_RECORD.encode` (tests/host/test_tx_record.py checks it), written directly: one record per
    commit is on every call's path, and the generic codec's per-field calls were ~10% of a one-event call's CPU.
    """
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


def record_offset(payload: bytes) -> int:
    """The transaction offset of a commit-log record, read without decoding the rest of it.

    BSATN encodes a product as its fields in order, so a `TX_RECORD`'s first 8 bytes are its offset (u64 LE).
    """
    return int.from_bytes(payload[:8], "little")
