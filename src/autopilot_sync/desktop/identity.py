"""The user's Nostr key: one file in the config dir, created (mode 0600) on first run or imported from an `nsec`.

The key is who the user is in presence: the control service turns a NIP-98 signature by it into a session token, and
the host shows its `npub`. Losing it changes who you are, so an existing key is never replaced silently: importing a
different key over it is refused with the path to remove first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.nostr.errors import KeyErrorCode, NostrKeyError
from autopilot_sync.nostr.keyfile import load_or_create_secret_key
from autopilot_sync.nostr.keys import PublicKey, SecretKey

KEY_FILE_NAME = "nostr.key"
CONFIG_DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class DesktopIdentity:
    """The loaded key, where it lives, and whether this run created or imported it."""

    secret: SecretKey
    path: Path
    created: bool

    @property
    def public_key(self) -> PublicKey:
        """The public half, as presence shows it."""
        return self.secret.public_key()

    @property
    def npub(self) -> str:
        """`npub1...` for people."""
        return self.public_key.npub


def key_path(config_dir: Path) -> Path:
    """Where the key lives inside the config dir."""
    return config_dir / KEY_FILE_NAME


def load_identity(config_dir: Path, import_nsec: str | None = None) -> DesktopIdentity:
    """The user's key: loaded, imported from `import_nsec` (nsec1... or hex), or created on first run.

    Raises `NostrKeyError` for an unreadable or insecure key file, a malformed import, or an import that would
    replace a different existing key.
    """
    config_dir.mkdir(parents=True, exist_ok=True, mode=CONFIG_DIR_MODE)
    path = key_path(config_dir)
    imported = SecretKey.parse(import_nsec.strip()) if import_nsec is not None else None
    stored = load_or_create_secret_key(path, imported)
    if not stored.created and imported is not None and imported.data != stored.secret.data:
        raise NostrKeyError(
            KeyErrorCode.FILE_ERROR,
            f"{path} already holds a different key ({stored.secret.public_key().npub}); move it away to import another",
        )
    return DesktopIdentity(stored.secret, path, created=stored.created)
