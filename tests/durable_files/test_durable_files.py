"""One atomic write (`autopilot_sync/durable_files.py`): temporary file, fsync, rename, fsync of the directory.

The order is observed with a recording double of `os.fsync`/`os.replace`/`os.link` (unit tests: the point is the
order of system calls, which a crash test cannot see on a machine that never loses power).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.ops.ledger import Ledger


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Records (call, what it touched) for fsync, replace and link, then performs the real call."""
    recorded: list[tuple[str, str]] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        what = os.readlink(f"/proc/self/fd/{fd}")
        recorded.append(("fsync-dir" if os.path.isdir(what) else "fsync-file", os.path.basename(what)))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        recorded.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    def link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        recorded.append(("link", os.path.basename(dst)))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    yield recorded


def test_an_atomic_write_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, calls: list[tuple[str, str]]
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    kinds = [kind for kind, _ in calls]
    assert kinds == ["fsync-file", "replace", "fsync-dir"], calls
    assert calls[2][1] == tmp_path.name
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temporary file may stay behind"


def test_an_atomic_write_without_replace_never_overwrites_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "signing.pem"
    write_atomically(target, b"first", mode=0o600, replace=False)
    with pytest.raises(FileExistsError):
        write_atomically(target, b"second", mode=0o600, replace=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["signing.pem"]


def test_an_atomic_write_gives_the_exact_mode_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        public = write_atomically(tmp_path / "public.pem", b"pub", mode=0o644)
        secret = write_atomically(tmp_path / "secret.key", b"sec", mode=0o600)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_the_release_ledger_stores_a_schema_durably(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """It used to write a temporary file and rename it without any fsync: a crash could lose the schema a recorded
    release points at."""
    path = Ledger(tmp_path / "prod").save_schema("v1", {"tables": []})
    assert [kind for kind, _ in calls] == ["fsync-file", "replace", "fsync-dir"], calls
    assert path.read_text(encoding="utf-8").startswith("{")
