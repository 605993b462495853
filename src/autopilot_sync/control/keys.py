"""The control service's signing keys: the one that signs now, one staged to sign next, and retired public keys.

A host verifies our tokens with the keys it fetches from our JWKS (and caches for minutes), so a key change must
never leave a valid token without its public key published. The key ring lives next to `signing_key_path`:

- `<signing_key_path>`: PKCS#8 PEM of the key that signs every new token (mode 0600, created on first start);
- `<signing_key_path>.next`: an optional staged key, published in the JWKS but not signing yet, so hosts can
  learn it before the first token it signs arrives;
- `<signing_key_path>.retired/<retired_at>-<kid>.pem`: public halves of former keys, published until every token
  they signed has expired (`retired_at + token_ttl_max + 120 s` of clock leeway), then left out of the JWKS.

`rotate` (the `autopilot-sync control rotate-key` command) moves these files with atomic renames, and a running
service notices the change on its next request (`KeyStore`), so rotation needs no restart. The `kid` of a key is its
RFC 7638 JWK thumbprint: derived from the key itself, never stored, and identical wherever it is computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from autopilot_sync.durable_files import fsync_directory, write_atomically

_log = logging.getLogger(__name__)

#: The only algorithm the control service signs with.
ALGORITHM = "ES256"
#: How long past `exp` a retired key stays published: the host's 60 s leeway plus 60 s for clock differences.
RETIRED_MARGIN_SECONDS = 120
#: `rotate` deletes retired public key files older than this; they are out of the JWKS long before.
DEFAULT_PRUNE_AFTER_SECONDS = 86400
_STAGED_SUFFIX = ".next"
_RETIRED_SUFFIX = ".retired"


class KeyFileError(RuntimeError):
    """A key file that cannot be used: unreadable, not a P-256 key, or readable by other users."""


@dataclass(frozen=True, slots=True)
class KeyPaths:
    """Where the key ring's files live, all derived from the configured `signing_key_path`."""

    active: Path

    @property
    def staged(self) -> Path:
        """The staged key: published, signing after the next rotation."""
        return self.active.with_name(self.active.name + _STAGED_SUFFIX)

    @property
    def retired_dir(self) -> Path:
        """Directory of the public halves of former signing keys."""
        return self.active.with_name(self.active.name + _RETIRED_SUFFIX)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A P-256 private key and its `kid`; signs session tokens."""

    kid: str
    jwk: ECKey

    @classmethod
    def from_private(cls, private: ec.EllipticCurvePrivateKey) -> SigningKey:
        """Wrap a cryptography key, insisting on P-256 (ES256)."""
        if not isinstance(private.curve, ec.SECP256R1):
            raise KeyFileError("a control signing key must be a P-256 (ES256) key")
        jwk = ECKey.import_key(private)
        return cls(jwk.thumbprint(), jwk)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the OS CSPRNG."""
        return cls.from_private(ec.generate_private_key(ec.SECP256R1()))

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (what the key files hold)."""
        return self.jwk.as_pem(private=True)

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM of the public key (what a retired key file holds)."""
        return self.jwk.as_pem(private=False)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as published: `kty, crv, x, y, kid, use, alg`."""
        return _published(self.jwk, self.kid)

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of `claims` with header `{"alg": "ES256", "typ": "JWT", "kid": <kid>}`."""
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": self.kid}
        return jwt.encode(header, claims, self.jwk, algorithms=[ALGORITHM])


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """The public half of a key that no longer signs, and when it stopped."""

    kid: str
    jwk: ECKey
    retired_at: int

    def published_until(self, token_ttl_max: int) -> int:
        """Last second (epoch) at which a token it signed can still be accepted by a host."""
        return self.retired_at + token_ttl_max + RETIRED_MARGIN_SECONDS


def _published(key: ECKey, kid: str) -> dict[str, Any]:
    document: dict[str, Any] = dict(key.as_dict(private=False))
    document.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return document


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every key the service knows at one moment."""

    active: SigningKey
    staged: SigningKey | None
    retired: tuple[RetiredKey, ...]

    def published(self, now: float, token_ttl_max: int) -> tuple[str, ...]:
        """Kids in the JWKS at `now`: the active key, the staged key, and retired keys still covering tokens."""
        kids = [self.active.kid]
        if self.staged is not None and self.staged.kid not in kids:
            kids.append(self.staged.kid)
        for key in self.retired:
            if now <= key.published_until(token_ttl_max) and key.kid not in kids:
                kids.append(key.kid)
        return tuple(kids)

    def jwks(self, now: float, token_ttl_max: int) -> dict[str, Any]:
        """The `/.well-known/jwks.json` document at `now`."""
        wanted = self.published(now, token_ttl_max)
        by_kid: dict[str, dict[str, Any]] = {}
        for signing in (self.active, self.staged):
            if signing is not None:
                by_kid.setdefault(signing.kid, signing.public_jwk())
        for retired in self.retired:
            by_kid.setdefault(retired.kid, _published(retired.jwk, retired.kid))
        return {"keys": [by_kid[kid] for kid in wanted]}


# ----- files -----


def _load_private(path: Path) -> SigningKey:
    """Read a private key file, refusing one that group or others can access."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise KeyFileError(f"{path} is accessible to other users (mode {mode:04o}); run: chmod 600 {path}")
        data = handle.read()
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} does not hold an EC private key")
    return SigningKey.from_private(private)


def _load_retired(path: Path) -> RetiredKey | None:
    """A retired public key file, or None (logged) for a file that is not one, so one stray file breaks nothing."""
    stamp, _, _ = path.name.partition("-")
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
        retired_at = int(stamp)
    except (OSError, ValueError, TypeError) as exc:
        _log.warning("ignoring %s in the retired key directory: %s", path, exc)
        return None
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        _log.warning("ignoring %s in the retired key directory: not a P-256 public key", path)
        return None
    jwk = ECKey.import_key(public)
    return RetiredKey(jwk.thumbprint(), jwk, retired_at)


def load_keyring(paths: KeyPaths, *, create: bool = True) -> KeyRing:
    """Read the ring's files; with `create`, make the active key (0600, parent 0700) when there is none yet."""
    if create and not paths.active.exists():
        try:
            paths.active.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                write_atomically(paths.active, SigningKey.generate().private_pem(), mode=0o600, replace=False)
        except OSError as exc:
            raise KeyFileError(f"cannot create signing key {paths.active}: {exc.strerror or exc}") from None
    active = _load_private(paths.active)
    staged = _load_private(paths.staged) if paths.staged.exists() else None
    retired: list[RetiredKey] = []
    if paths.retired_dir.is_dir():
        for path in sorted(paths.retired_dir.glob("*.pem")):
            key = _load_retired(path)
            if key is not None:
                retired.append(key)
    return KeyRing(active, staged, tuple(retired))


@dataclass(frozen=True, slots=True)
class Rotation:
    """What `rotate` did: which key stopped signing, which started (or was staged), which files were pruned."""

    retired_kid: str | None
    active_kid: str
    staged_kid: str | None
    pruned: tuple[Path, ...]


def stage(paths: KeyPaths) -> Rotation:
    """Create the next key as `<path>.next`: published from now on, signing after the next `rotate`."""
    ring = load_keyring(paths)
    if ring.staged is not None:
        raise KeyFileError(f"{paths.staged} already holds a staged key ({ring.staged.kid}); rotate to promote it")
    staged = SigningKey.generate()
    write_atomically(paths.staged, staged.private_pem(), mode=0o600, replace=False)
    return Rotation(None, ring.active.kid, staged.kid, ())


def rotate(paths: KeyPaths, *, now: int, prune_after: int = DEFAULT_PRUNE_AFTER_SECONDS) -> Rotation:
    """Make a new key sign from now on (the staged one if there is one) and retire the current one.

    Order matters for a service reading concurrently: the old public key is written to the retired directory first,
    then the new key replaces the active file in one rename, so at no moment is a signing key unpublished.
    """
    ring = load_keyring(paths)
    paths.retired_dir.mkdir(mode=0o700, exist_ok=True)
    retired_file = paths.retired_dir / f"{now}-{ring.active.kid}.pem"
    write_atomically(retired_file, ring.active.public_pem(), mode=0o644)
    if ring.staged is not None:
        new = ring.staged
        os.replace(paths.staged, paths.active)
        fsync_directory(paths.active.parent)
    else:
        new = SigningKey.generate()
        write_atomically(paths.active, new.private_pem(), mode=0o600)
    pruned: list[Path] = []
    for key_file in sorted(paths.retired_dir.glob("*.pem")):
        stamp = key_file.name.partition("-")[0]
        if stamp.isdigit() and int(stamp) + prune_after < now:
            key_file.unlink(missing_ok=True)
            pruned.append(key_file)
    return Rotation(ring.active.kid, new.kid, None, tuple(pruned))


# ----- the running service's view -----


def _fingerprint(paths: KeyPaths) -> tuple[object, ...]:
    """Cheap summary of the ring's files; a change means something was rotated and the ring must be re-read."""

    def file_state(path: Path) -> tuple[int, int, int] | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    try:
        retired = tuple(sorted(os.listdir(paths.retired_dir)))
    except (FileNotFoundError, NotADirectoryError):
        retired = ()
    return (file_state(paths.active), file_state(paths.staged), retired)


class KeyStore:
    """The ring as a running service sees it: re-read whenever its files change, so rotation needs no restart.

    If re-reading fails (a half-edited file, wrong permissions) the last good ring stays in use and the problem is
    logged: a bad edit must not stop the service from issuing tokens with a key hosts already trust.
    """

    def __init__(self, paths: KeyPaths, token_ttl_max: int, *, clock: Callable[[], float] = time.time) -> None:
        self.paths = paths
        self.token_ttl_max = token_ttl_max
        self._clock = clock
        self._ring = load_keyring(paths)
        self._fingerprint = _fingerprint(paths)

    def ring(self) -> KeyRing:
        """The current ring (re-read if the files changed since the last call)."""
        fingerprint = _fingerprint(self.paths)
        if fingerprint != self._fingerprint:
            try:
                self._ring = load_keyring(self.paths, create=False)
            except (KeyFileError, OSError) as exc:
                _log.error("key ring changed but cannot be read, still signing with %s: %s", self._ring.active.kid, exc)
            else:
                _log.info("key ring reloaded: signing with %s", self._ring.active.kid)
            self._fingerprint = fingerprint
        return self._ring

    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.ring().active

    def jwks(self) -> dict[str, Any]:
        """The published key set now."""
        return self.ring().jwks(self._clock(), self.token_ttl_max)
