"""The commit-log payload of one transaction: what the engine appends at commit and recovery replays.

One BSATN product per committed transaction: its offset, timestamp, reducer name, caller and, per table, the BSATN
bytes of the rows inserted and deleted. The offset comes first so recovery can place a record without decoding it.
"""

from __future__ import annotations

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


def encode_record(tx: CommittedTx) -> bytes:
    """The log record of a committed transaction (its rows as the BSATN bytes the datastore keys them by)."""
    return TX_RECORD.encode(
        (
            tx.offset,
            tx.timestamp,
            tx.reducer,
            tx.caller.identity,
            [(c.table, [b for b, _ in c.inserts], [b for b, _ in c.deletes]) for c in tx.changes],
        )
    )


def record_offset(payload: bytes) -> int:
    """The transaction offset of a commit-log record, read without decoding the rest of it.

    BSATN encodes a product as its fields in order, so a `TX_RECORD`'s first 8 bytes are its offset (u64 LE).
    """
    return int.from_bytes(payload[:8], "little")
