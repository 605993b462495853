"""Evidence stamps: which tree a verification result was produced from, and when.

The compliance signoff reads result files the suites wrote. Without a stamp, a file left from last week's run on
another branch would count as evidence for today's tree. So every result carries the commit it ran at and a
fingerprint of the exact files it ran on (tracked and new, the same list the gate scans, minus run state under
`var/`), plus the time it finished; the signoff refuses a result whose fingerprint is not the tree's (foreign) or
that is older than its freshness bound (stale).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from autopilot_sync.gate.files import git_output, list_files

RUN_STATE_PREFIXES = ("var/",)
"""What a test run itself writes: never part of the fingerprint (results would change the tree they describe)."""


def head_commit(root: Path) -> str:
    """The commit checked out at `root`, or "" outside git."""
    output = git_output(root, "rev-parse", "HEAD")
    return output.strip() if output is not None else ""


def tree_fingerprint(root: Path) -> str:
    """`sha256:<hex>` over every file the gate would scan (path and bytes): equal only for the same tree content."""
    digest = hashlib.sha256()
    for relative in list_files(root):
        if relative.startswith(RUN_STATE_PREFIXES):
            continue
        path = root / relative
        digest.update(relative.encode("utf-8", errors="surrogateescape") + b"\0")
        try:
            data = b"<symlink>" + str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
        except OSError:
            data = b"<missing>"
        digest.update(len(data).to_bytes(8, "little") + data)
    return "sha256:" + digest.hexdigest()


def stamp(root: Path, now: dt.datetime | None = None) -> dict[str, Any]:
    """The fields a suite adds to its result file: `commit`, `tree` and `finished_at` (UTC, ISO 8601)."""
    moment = now or dt.datetime.now(dt.UTC)
    return {"commit": head_commit(root), "tree": tree_fingerprint(root), "finished_at": moment.isoformat()}
