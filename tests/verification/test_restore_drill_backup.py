"""`back_up`, the copy the restore drill makes: docs/deployment.md's order, complete snapshots only."""

from __future__ import annotations

from pathlib import Path

from autopilot_sync.verification.scenarios.restore_drill import back_up


def test_backup_copies_meta_and_key_then_complete_snapshots_then_log_segments_oldest_first(tmp_path: Path) -> None:
    data = tmp_path / "host"
    for name, text in {
        "meta.json": "{}",
        "id_ecdsa": "key",
        "snapshots/00000000000000000040.snap": "s40",
        "snapshots/00000000000000000080.snap": "s80",
        "snapshots/00000000000000000120.snap.tmp": "being written",
        "commitlog/00000000000000000041.log": "l41",
        "commitlog/00000000000000000001.log": "l1",
    }.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text)
    copied = back_up(data, tmp_path / "backup")
    assert copied == [
        "meta.json",
        "id_ecdsa",
        "snapshots/00000000000000000040.snap",
        "snapshots/00000000000000000080.snap",
        "commitlog/00000000000000000001.log",
        "commitlog/00000000000000000041.log",
    ]
    assert (tmp_path / "backup" / "commitlog" / "00000000000000000041.log").read_text() == "l41"
    assert not (tmp_path / "backup" / "snapshots" / "00000000000000000120.snap.tmp").exists()
