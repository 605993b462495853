"""Secret key files: written owner-only (mode 0600), and refused when anyone else could read them.

Same rule as OpenSSH for private keys: a secret that other local users can read is already compromised, so loading
it silently would hide the problem. The file holds one line, the key as `nsec1...` (64 hex digits are accepted too).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.nostr.errors import KeyErrorCode, NostrKeyError
from autopilot_sync.nostr.keys import SecretKey

#: Mode of a key file we create: read and write for the owner only.
KEY_FILE_MODE = 0o600

#: A key file is one short line; anything longer is not a key file.
MAX_KEY_FILE_SIZE = 4096


def save_secret_key(path: str | os.PathLike[str], key: SecretKey, *, overwrite: bool = False) -> Path:
    """Write `key` to `path` with mode 0600, durably; refuse to replace an existing file unless asked.

    The file is created with its final mode (never briefly world-readable) through one atomic write
    (`durable_files.write_atomically`), so a crash leaves either the old key or the new one, never half of one.
    """
    target = Path(path)
    data = (key.reveal_nsec() + "\n").encode("ascii")
    try:
        return write_atomically(target, data, mode=KEY_FILE_MODE, replace=overwrite)
    except FileExistsError:
        raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"{target} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"cannot write {target}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key file's key, and whether this call created the file (then its owner may want to say so)."""

    secret: SecretKey
    created: bool


def load_or_create_secret_key(path: str | os.PathLike[str], new_key: SecretKey | None = None) -> StoredKey:
    """The key in `path`; when there is no file yet, `new_key` (or a fresh key) is saved there first (0600).

    The one "load or create the Nostr key" of the project (the runtime, the desktop and the local stacks): an
    existing file is always loaded, never replaced, whatever `new_key` says (the caller compares if it cares). If
    another process creates the file between our check and our write, its key wins and is loaded.
    """
    target = Path(path)
    if not os.path.lexists(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        chosen = new_key if new_key is not None else SecretKey.generate()
        try:
            save_secret_key(target, chosen)
            return StoredKey(chosen, created=True)
        except NostrKeyError:
            if not os.path.lexists(target):
                raise
    return StoredKey(load_secret_key(target), created=False)


def load_secret_key(path: str | os.PathLike[str]) -> SecretKey:
    """Read a key file written by `save_secret_key` (or by hand), refusing one that group or others can access.

    Permissions are checked on the opened file descriptor, so the file checked is the file read.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"cannot open key file {target}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"key file {target} is not a regular file")
        if os.name == "posix":
            if info.st_mode & 0o077:
                raise NostrKeyError(
                    KeyErrorCode.INSECURE_FILE,
                    f"key file {target} has mode {stat.S_IMODE(info.st_mode):04o}: group or others can access it; "
                    f"run `chmod 600 {target}` (and consider the key exposed)",
                )
            if info.st_uid != os.geteuid():
                raise NostrKeyError(
                    KeyErrorCode.INSECURE_FILE,
                    f"key file {target} is owned by uid {info.st_uid}, not by the current user ({os.geteuid()})",
                )
        raw = os.read(fd, MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"cannot read key file {target}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_SIZE:
        raise NostrKeyError(KeyErrorCode.FILE_ERROR, f"key file {target} is too large to be a key file")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise NostrKeyError(KeyErrorCode.INVALID_HEX, f"key file {target} is not ASCII text") from None
    try:
        return SecretKey.parse(text)
    except NostrKeyError as exc:
        raise NostrKeyError(exc.code, f"key file {target}: {exc.message}") from None
