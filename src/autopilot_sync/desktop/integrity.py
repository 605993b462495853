"""The desktop's "verify stream integrity" command: `verify-stream`'s audit, run against the host the desktop uses.

Why: a user who doubts what the desktop shows should not need a second tool. The check is exactly the operators'
one (`desktop/stream_audit.py`): every retained event present, payloads hashing to their `payload_hash`, the
hash chain linking from `floor_chain` to `head_chain`. Its answer is one line: OK, or the first bad seq and why.
"""

from __future__ import annotations

import asyncio

from autopilot_sync.desktop.stream_audit import StreamAuditError, audit, fetch_stream

VERIFY_TIMEOUT_SECONDS = 30.0
"""A host that never answers the audit's subscription gets this long before the command says so."""


async def verify_stream(
    base_url: str, database: str, stream_id: str, token: str | None, *, within: float = VERIFY_TIMEOUT_SECONDS
) -> str:
    """One line: `OK <stream>: …` or `BROKEN <stream> at seq N: …`, or why the check could not run."""
    try:
        async with asyncio.timeout(within):
            head, events = await fetch_stream(base_url, database, stream_id, token)
    except StreamAuditError as exc:
        return f"could not verify {stream_id}: {exc}"
    except TimeoutError:
        return f"could not verify {stream_id}: no answer from {base_url} within {within:.0f}s"
    return audit(head, events).render()
