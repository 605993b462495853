"""The user's key: created once with mode 0600, the same key on every later run, importable from an nsec."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from autopilot_sync.desktop.identity import key_path, load_identity
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import SecretKey


def test_first_run_creates_an_owner_only_key_and_later_runs_reuse_it(tmp_path: Path) -> None:
    first = load_identity(tmp_path / "cfg")
    assert first.created
    assert stat.S_IMODE(key_path(tmp_path / "cfg").stat().st_mode) == 0o600
    again = load_identity(tmp_path / "cfg")
    assert not again.created
    assert again.npub == first.npub


def test_an_nsec_is_imported_on_first_run(tmp_path: Path) -> None:
    key = SecretKey.generate()
    imported = load_identity(tmp_path, key.reveal_nsec())
    assert imported.created and imported.public_key == key.public_key()
    assert load_identity(tmp_path, key.reveal_nsec()).npub == key.public_key().npub  # same key again: fine


def test_importing_over_a_different_key_is_refused(tmp_path: Path) -> None:
    existing = load_identity(tmp_path)
    with pytest.raises(NostrKeyError, match="different key"):
        load_identity(tmp_path, SecretKey.generate().reveal_nsec())
    assert load_identity(tmp_path).npub == existing.npub


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_identity(tmp_path)
    key_path(tmp_path).chmod(0o644)
    with pytest.raises(NostrKeyError, match="chmod 600"):
        load_identity(tmp_path)
