"""Key files are created owner-only and refused when group or others could read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autopilot_sync.nostr import (
    KeyErrorCode,
    NostrKeyError,
    SecretKey,
    StoredKey,
    load_or_create_secret_key,
    load_secret_key,
    save_secret_key,
)


def test_saved_key_file_is_mode_0600_and_loads_back(tmp_path: Path) -> None:
    key = SecretKey.generate()
    old_umask = os.umask(0)  # even with a permissive umask, the file must come out 0600
    try:
        path = save_secret_key(tmp_path / "nostr.key", key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key.reveal_nsec()
    assert load_secret_key(path) == key


def test_saving_refuses_to_replace_an_existing_key_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "nostr.key"
    first, second = SecretKey.generate(), SecretKey.generate()
    save_secret_key(path, first)
    with pytest.raises(NostrKeyError) as err:
        save_secret_key(path, second)
    assert err.value.code is KeyErrorCode.FILE_ERROR
    assert load_secret_key(path) == first
    save_secret_key(path, second, overwrite=True)
    assert load_secret_key(path) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["nostr.key"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_key_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = save_secret_key(tmp_path / "nostr.key", SecretKey.generate())
    path.chmod(mode)
    with pytest.raises(NostrKeyError) as err:
        load_secret_key(path)
    assert err.value.code is KeyErrorCode.INSECURE_FILE
    assert "chmod 600" in str(err.value)


def test_hand_written_hex_and_nsec_files_both_load(tmp_path: Path) -> None:
    key = SecretKey.generate()
    for name, text in (("hex.key", key.reveal_hex()), ("nsec.key", f"  {key.reveal_nsec()}\n\n")):
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o600)
        assert load_secret_key(path) == key


def test_missing_garbage_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NostrKeyError) as err:
        load_secret_key(tmp_path / "absent.key")
    assert err.value.code is KeyErrorCode.FILE_ERROR

    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    with pytest.raises(NostrKeyError) as err:
        load_secret_key(garbage)
    assert err.value.code is KeyErrorCode.INVALID_HEX
    assert str(garbage) in str(err.value)

    big = tmp_path / "big.key"
    big.write_text("0" * 10_000)
    big.chmod(0o600)
    with pytest.raises(NostrKeyError) as err:
        load_secret_key(big)
    assert err.value.code is KeyErrorCode.FILE_ERROR


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    real = save_secret_key(tmp_path / "real.key", SecretKey.generate())
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(NostrKeyError) as err:
        load_secret_key(link)
    assert err.value.code is KeyErrorCode.FILE_ERROR


def test_load_or_create_creates_a_key_once_and_then_only_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nostr.key"
    first = load_or_create_secret_key(path)
    assert first.created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_secret_key(path)
    assert not again.created
    assert again.secret == first.secret


def test_load_or_create_never_replaces_an_existing_key_with_the_one_offered(tmp_path: Path) -> None:
    path = tmp_path / "nostr.key"
    offered = SecretKey.generate()
    assert load_or_create_secret_key(path, offered) == StoredKey(offered, created=True)
    stored = load_or_create_secret_key(path, SecretKey.generate())
    assert stored == StoredKey(offered, created=False)


def test_load_or_create_refuses_an_insecure_existing_key_instead_of_making_a_new_one(tmp_path: Path) -> None:
    path = save_secret_key(tmp_path / "nostr.key", SecretKey.generate())
    path.chmod(0o644)
    with pytest.raises(NostrKeyError) as err:
        load_or_create_secret_key(path)
    assert err.value.code is KeyErrorCode.INSECURE_FILE
