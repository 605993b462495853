"""The host's own token authority: its ES256 key, the tokens it mints, and the verification of every token it sees.

Behaviour follows SpacetimeDB (`crates/client-api/src/auth.rs`, `crates/core/src/auth/token_validation.rs`):
- `POST /v1/identity` mints claims exactly `hex_identity, sub, iss, aud, iat, exp` with `iss = "localhost"`,
  `sub` a random UUID, `aud = ["spacetimedb"]` and `exp = null` (the real host's anonymous tokens do not expire).
- `POST /v1/identity/websocket-token` re-signs the caller's claims (issuer, subject, audience and any extra claims)
  with the host key and `exp = iat + 60`. Unlike SpacetimeDB, the exchanged token never outlives the token it came
  from: its `exp` is at most the origin's, and it carries the origin's expiry in `origin_exp` (null for the host's
  own non-expiring tokens), so exchanging an exchanged token cannot extend it. A socket's rights end at that origin
  expiry (`websocket.py` closes it then), not at the 60 s token that only admitted the upgrade.
- Verification tries the host key first, whatever the issuer (re-signed tokens keep a foreign issuer). A token that
  names the host's issuer but fails that check is rejected; any other token is checked against its issuer's published
  keys (`oidc.py`), but only for issuers the operator configured as trusted.
- Claims rules for every token: `iss`/`sub` non-empty strings of at most 128 bytes, `iat` present, `exp`/`nbf`
  respected with a leeway (60 s by default, jsonwebtoken's; the host setting `token_leeway_seconds`), and
  `hex_identity`, when present, equal to the identity derived from `iss`/`sub`.
- A token from another issuer (a trusted OIDC issuer such as our control service, or one the host re-signed) must
  name this host's database in `aud`: a token for database X does not open database Y. The host's own anonymous
  tokens (`iss = "localhost"`, `aud = ["spacetimedb"]`) are not audience-checked, as on SpacetimeDB. This rule
  only our host enforces; a SpacetimeDB deployment relies on giving each database its own issuer instead.

The private key lives in the data directory as a PKCS#8 PEM created with mode 0600 on first start; a key file that
others can read is refused, because whoever reads it can mint any identity on this host.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import math
import stat
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.json_bounds import JsonBoundsError, bounded_loads
from autopilot_sync.spacetime.values import Identity

if TYPE_CHECKING:
    from autopilot_sync.host.oidc import OidcVerifier
    from autopilot_sync.settings.host import HostSettings

#: The issuer of host-minted tokens, as SpacetimeDB standalone (`LOCALHOST`).
LOCAL_ISSUER = "localhost"
#: The audience of host-minted tokens (SpacetimeDB's placeholder audience).
LOCAL_AUDIENCE = ("spacetimedb",)
#: Lifetime of `POST /v1/identity/websocket-token` tokens.
WEBSOCKET_TOKEN_TTL = 60
#: Clock skew tolerated on `exp` and `nbf` by default (the host setting `token_leeway_seconds`).
LEEWAY_SECONDS = 60
#: Claim of an exchanged token holding the expiry of the token it came from (null: the origin never expires).
ORIGIN_EXPIRY_CLAIM = "origin_exp"
#: SpacetimeDB's limit on `iss` and `sub`.
MAX_CLAIM_BYTES = 128
#: How long a verified signature is remembered (per exact token string); claims are re-checked on every use.
VERIFIED_CACHE_SECONDS = 60.0
#: Verified tokens remembered at most; the oldest are forgotten first.
VERIFIED_CACHE_MAX = 4096
#: File name of the host's private key inside the data directory.
KEY_FILE_NAME = "id_ecdsa"


class TokenErrorCode(enum.Enum):
    """Why a token was refused; the value is the stable code clients and logs see."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN_ISSUER = "unknown_issuer"
    IDENTITY_MISMATCH = "identity_mismatch"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    WRONG_AUDIENCE = "wrong_audience"


class TokenError(Exception):
    """A token that cannot be accepted; `code` classifies it, the message says what exactly (HTTP 401 body)."""

    def __init__(self, code: TokenErrorCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.value}: {message}")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims were checked, and the identity it proves.

    `expires_at` is when the rights the token proves end (Unix seconds, before leeway): its own `exp`, or for a token
    this host exchanged, the expiry of the token it came from; None when they never end (the host's anonymous
    tokens).
    """

    token: str
    identity: Identity
    issuer: str
    subject: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None


class SigningKey:
    """The host's ES256 key pair; the public half is served at `/v1/identity/public-key`."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the host signing key must be a P-256 key (ES256)")
        self._jwk = ECKey.import_key(private_key)
        self.public_pem: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key (tests; production keys come from `load_or_create`)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """Load `<data_dir>/id_ecdsa`, creating it (mode 0600, atomically) on first start."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            cls._create(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(private)

    @staticmethod
    def _create(path: Path) -> None:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Fails if another process created the key first: then we use theirs.
        with contextlib.suppress(FileExistsError):
            write_atomically(path, pem, mode=0o600, replace=False)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS of `claims` with header `{"typ": "JWT", "alg": "ES256"}`."""
        return jwt.encode({"alg": "ES256"}, dict(claims), self._jwk, algorithms=["ES256"])

    def verifies(self, token: str) -> bool:
        """True when `token` carries a valid ES256 signature by this key."""
        try:
            jws.deserialize_compact(token, self._jwk, algorithms=["ES256"])
        except (JoseError, ValueError, TypeError):
            return False
        return True


def _b64decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = bounded_loads(raw)
    except JsonBoundsError as exc:
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is over the input bounds: {exc}") from None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is not a JSON object")
    return value


def parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWT, without checking anything but its shape."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError(TokenErrorCode.MALFORMED, "Authorization is invalid: malformed token")
    return _b64decode_json(parts[0], "header"), _b64decode_json(parts[1], "payload")


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenError(TokenErrorCode.MALFORMED, f"missing required claim {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} must be a number of seconds")
    return float(value)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise TokenError(TokenErrorCode.MALFORMED, f"missing required claim {name!r}")
    if not value:
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} is empty")
    if len(value.encode()) > MAX_CLAIM_BYTES:
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} is over {MAX_CLAIM_BYTES} bytes")
    return value


def check_claims(claims: Mapping[str, Any], now: float, leeway: float = LEEWAY_SECONDS) -> tuple[Identity, str, str]:
    """Apply SpacetimeDB's claim rules; returns (identity, issuer, subject) or raises TokenError."""
    issuer = _text(claims, "iss")
    subject = _text(claims, "sub")
    _number(claims, "iat", required=True)
    exp = _number(claims, "exp", required=False)
    if exp is not None and now > exp + leeway:
        raise TokenError(TokenErrorCode.EXPIRED, "token has expired")
    nbf = _number(claims, "nbf", required=False)
    if nbf is not None and now + leeway < nbf:
        raise TokenError(TokenErrorCode.NOT_YET_VALID, "token is not valid yet (nbf)")
    aud = claims.get("aud")
    if (
        aud is not None
        and not isinstance(aud, str)
        and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise TokenError(TokenErrorCode.MALFORMED, "claim 'aud' must be a string or an array of strings")
    identity = identity_from_claims(issuer, subject)
    claimed = claims.get("hex_identity")
    if claimed is not None:
        try:
            token_identity = Identity.from_hex(claimed) if isinstance(claimed, str) else None
        except ValueError:
            token_identity = None
        if token_identity is None:
            raise TokenError(TokenErrorCode.MALFORMED, "claim 'hex_identity' must be 64 hex digits")
        if token_identity != identity:
            raise TokenError(
                TokenErrorCode.IDENTITY_MISMATCH,
                f"Identity mismatch: token identity {token_identity.hex} does not match computed identity "
                f"{identity.hex}",
            )
    return identity, issuer, subject


def origin_expiry(claims: Mapping[str, Any], *, host_signed: bool) -> float | None:
    """When the rights a verified token proves end: `origin_exp` of a token this host signed, else its `exp`.

    `origin_exp` is only believed from tokens signed with the host's key (the host wrote it when it exchanged a
    token); the same claim in another issuer's token is ignored.
    """
    if host_signed and ORIGIN_EXPIRY_CLAIM in claims:
        return _number(claims, ORIGIN_EXPIRY_CLAIM, required=False)
    return _number(claims, "exp", required=False)


def audiences(claims: Mapping[str, Any]) -> list[str]:
    """The `aud` claim as a list (a single string is a list of one; absent is empty)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def check_audience(claims: Mapping[str, Any], database: str) -> None:
    """Refuse a token whose `aud` does not name `database` (WRONG_AUDIENCE, a 401 naming both)."""
    named = audiences(claims)
    if database not in named:
        raise TokenError(
            TokenErrorCode.WRONG_AUDIENCE,
            f"token is not for this database: its audience {named} does not name {database!r}; "
            f"ask the issuer for a token for {database!r}",
        )


class TokenService:
    """Mints, re-signs and verifies tokens for one host."""

    def __init__(
        self,
        key: SigningKey,
        *,
        oidc: OidcVerifier | None = None,
        issuer: str = LOCAL_ISSUER,
        audience: Sequence[str] = LOCAL_AUDIENCE,
        database: str | None = None,
        leeway: float = LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.oidc = oidc
        self.issuer = issuer
        self.audience = tuple(audience)
        #: When set, tokens of other issuers must name this database in `aud`.
        self.database = database
        #: Clock skew tolerated on `exp`, `nbf` and `origin_exp` (and so on a socket's end of rights).
        self.leeway = float(leeway)
        self._clock = clock
        # token string -> (verified token, remembered until, the OIDC key set that verified it or None for ours)
        self._verified: dict[str, tuple[VerifiedToken, float, object | None]] = {}

    @classmethod
    def for_host(cls, settings: HostSettings) -> TokenService:
        """The service a host runs with: its key from the data directory, its trusted issuers from the settings."""
        from autopilot_sync.host.oidc import OidcVerifier

        oidc = OidcVerifier(settings.trusted_issuers) if settings.trusted_issuers else None
        return cls(
            SigningKey.load_or_create(Path(settings.data_dir)),
            oidc=oidc,
            database=settings.database,
            leeway=settings.token_leeway_seconds,
        )

    @property
    def public_key_pem(self) -> bytes:
        """PEM of the public key, for `/v1/identity/public-key`."""
        return self.key.public_pem

    async def close(self) -> None:
        """Release the OIDC HTTP client."""
        if self.oidc is not None:
            await self.oidc.close()

    def _issue(
        self,
        issuer: str,
        subject: str,
        audience: Any,
        extra: Mapping[str, Any],
        iat: int,
        exp: int | None,
        origin: float | None,
    ) -> VerifiedToken:
        identity = identity_from_claims(issuer, subject)
        claims: dict[str, Any] = {
            "hex_identity": identity.hex,
            "sub": subject,
            "iss": issuer,
            "aud": audience,
            "iat": iat,
            "exp": exp,
        }
        for name, value in extra.items():
            claims.setdefault(name, value)
        return VerifiedToken(self.key.sign(claims), identity, issuer, subject, claims, origin)

    def mint_anonymous(self) -> VerifiedToken:
        """A new identity (random subject under the host's issuer) and its non-expiring token."""
        return self._issue(self.issuer, str(uuid.uuid4()), list(self.audience), {}, int(self._clock()), None, None)

    def resign(self, verified: VerifiedToken, ttl: int = WEBSOCKET_TOKEN_TTL) -> VerifiedToken:
        """The same claims (issuer, subject, audience, extra) signed by the host, valid `ttl` s but never longer
        than the token they came from: `exp = min(iat + ttl, origin expiry)`, and `origin_exp` carries that origin
        expiry (null when the origin never expires) so exchanging the result again cannot extend it."""
        standard = {"hex_identity", "sub", "iss", "aud", "iat", "exp", ORIGIN_EXPIRY_CLAIM}
        extra = {k: v for k, v in verified.claims.items() if k not in standard}
        origin = verified.expires_at
        iat = int(self._clock())
        exp = iat + ttl if origin is None else min(iat + ttl, math.floor(origin))
        extra[ORIGIN_EXPIRY_CLAIM] = None if origin is None else math.floor(origin)
        return self._issue(verified.issuer, verified.subject, audiences(verified.claims), extra, iat, exp, origin)

    def rights_end(self, verified: VerifiedToken) -> float | None:
        """When a session opened with `verified` must end (Unix seconds): its origin expiry plus the leeway."""
        return None if verified.expires_at is None else verified.expires_at + self.leeway

    def _check(self, claims: Mapping[str, Any], now: float, *, host_signed: bool) -> tuple[Identity, str, str]:
        """Every claim rule: SpacetimeDB's, the origin expiry, and (for other issuers) the audience."""
        identity, issuer, subject = check_claims(claims, now, self.leeway)
        origin = origin_expiry(claims, host_signed=host_signed)
        if origin is not None and now > origin + self.leeway:
            raise TokenError(TokenErrorCode.EXPIRED, "token has expired (the token it was exchanged for expired)")
        if self.database is not None and issuer != self.issuer:
            check_audience(claims, self.database)
        return identity, issuer, subject

    async def verify(self, token: str) -> VerifiedToken:
        """Check a token (host key first, then a trusted OIDC issuer); raises TokenError.

        A token whose signature verified recently (the same string, within `VERIFIED_CACHE_SECONDS`, and for an OIDC
        token while the issuer's cached keys are the same) skips the signature check; its claims, expiry included,
        are checked again on every use.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            verified, until, keys = remembered
            now = self._clock()
            if now < until and (
                keys is None or (self.oidc is not None and self.oidc.current_keys(verified.issuer) is keys)
            ):
                self._check(verified.claims, now, host_signed=keys is None)
                return verified
            del self._verified[token]
        header, claims = parse_unverified(token)
        now = self._clock()
        if header.get("alg") == "ES256" and self.key.verifies(token):
            identity, issuer, subject = self._check(claims, now, host_signed=True)
            origin = origin_expiry(claims, host_signed=True)
            return self._remember(VerifiedToken(token, identity, issuer, subject, claims, origin), now, None)
        raw_issuer = claims.get("iss")
        if not isinstance(raw_issuer, str) or not raw_issuer:
            raise TokenError(TokenErrorCode.MALFORMED, "missing required claim 'iss'")
        if raw_issuer == self.issuer:
            raise TokenError(TokenErrorCode.BAD_SIGNATURE, "Authorization failed: token not signed by this instance")
        if self.oidc is None or not self.oidc.is_trusted(raw_issuer):
            raise TokenError(TokenErrorCode.UNKNOWN_ISSUER, f"issuer {raw_issuer!r} is not trusted by this host")
        self._check(claims, now, host_signed=False)  # cheap rejections (expired, audience) before any fetch
        await self.oidc.verify_signature(token, raw_issuer, header)
        keys = self.oidc.current_keys(raw_issuer)
        now = self._clock()
        identity, issuer, subject = self._check(claims, now, host_signed=False)
        verified = VerifiedToken(token, identity, issuer, subject, claims, origin_expiry(claims, host_signed=False))
        return verified if keys is None else self._remember(verified, now, keys)

    def _remember(self, verified: VerifiedToken, now: float, keys: object | None) -> VerifiedToken:
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            stale = [token for token, (_, until, _) in self._verified.items() if until <= now]
            for token in stale:
                del self._verified[token]
            while len(self._verified) >= VERIFIED_CACHE_MAX:
                del self._verified[next(iter(self._verified))]
        self._verified[verified.token] = (verified, now + VERIFIED_CACHE_SECONDS, keys)
        return verified
