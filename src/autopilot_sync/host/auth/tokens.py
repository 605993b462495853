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
  keys (`auth/oidc.py`), but only for issuers the operator configured as trusted.
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
import contextlib
import json
import math
import stat
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from autopilot_sync.auth.claims import (
    LEEWAY_SECONDS,
    ORIGIN_EXPIRY_CLAIM,
    audiences,
    check_audience,
    check_claims,
    origin_expiry,
    parse_unverified,
)
from autopilot_sync.auth.errors import TokenError, TokenErrorCode
from autopilot_sync.auth.oidc import OidcVerifier
from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.auth.keyfile import new_key_pem, scalar_of
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Identity

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    from autopilot_sync.settings.host import HostSettings

#: The issuer of host-minted tokens, as SpacetimeDB standalone (`LOCALHOST`).
LOCAL_ISSUER = "localhost"
#: The audience of host-minted tokens (SpacetimeDB's placeholder audience).
LOCAL_AUDIENCE = ("spacetimedb",)
#: Lifetime of `POST /v1/identity/websocket-token` tokens.
WEBSOCKET_TOKEN_TTL = 60
#: How long a verified signature is remembered (per exact token string); claims are re-checked on every use.
VERIFIED_CACHE_SECONDS = 60.0
#: Verified tokens remembered at most; the oldest are forgotten first.
VERIFIED_CACHE_MAX = 4096
#: Marks a remembered token this host issued at `/v1/identity/websocket-token`: remembered until its first use (the
#: upgrade that follows), not for the cache's full window, so 10,000 open sockets do not keep 4,096 token texts.
_ISSUED = object()
#: File name of the host's private key inside the data directory.
KEY_FILE_NAME = "id_ecdsa"
#: The protected header of every token the host signs, `{"typ":"JWT","alg":"ES256"}`, base64url-encoded.
_JWT_ES256_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"ES256"}').rstrip(b"=")


def _b64url(data: bytes) -> bytes:
    """Base64url without padding, as JWS segments are."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


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
    """The host's ES256 key pair; the public half is served at `/v1/identity/public-key`.

    A key loaded from (or just written to) the data directory in the short form `host/auth/keyfile.py` checks is
    held as its scalar until the first signature or public-key request: `cryptography` is imported then, not at
    the host's start (docs/performance.md "Round 7 — startup4"). The file was checked completely at start.
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the host signing key must be a P-256 key (ES256)")
        self._hold(None, private_key)

    def _hold(self, scalar: int | None, key: ec.EllipticCurvePrivateKey | None) -> None:
        """The one place a key's state is set: its scalar or its `cryptography` object, the rest made on first use."""
        self._scalar = scalar
        self._key = key
        self._public_pem: bytes | None = None
        self._jwk_key: ECKey | None = None
        self._signer: Callable[[bytes], bytes] | None = None

    @classmethod
    def _of_scalar(cls, scalar: int) -> SigningKey:
        """The P-256 key of private scalar `scalar` (in [1, n), checked by the caller), built on first use."""
        key = cls.__new__(cls)
        key._hold(scalar, None)
        return key

    @property
    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        """The `cryptography` key object (imported and derived from the scalar the first time it is needed)."""
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric import ec

            assert self._scalar is not None
            self._key = ec.derive_private_key(self._scalar, ec.SECP256R1())
        return self._key

    @property
    def public_pem(self) -> bytes:
        """PEM (SubjectPublicKeyInfo) of the public key."""
        if self._public_pem is None:
            from cryptography.hazmat.primitives import serialization

            self._public_pem = self._private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return self._public_pem

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key (tests; production keys come from `load_or_create`)."""
        return cls._of_scalar(new_key_pem()[0])

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """Load `<data_dir>/id_ecdsa`, creating it (mode 0600, atomically) on first start.

        A file in the short form this host writes is checked completely without `cryptography` (`keyfile.py`);
        any other (an older host's, another tool's, a damaged one) is parsed with it here, so a key that cannot
        serve fails the start, never a request.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            cls._create(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")
        pem = path.read_bytes()
        scalar = scalar_of(pem)
        if scalar is not None:
            return cls._of_scalar(scalar)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(private)

    @staticmethod
    def _create(path: Path) -> None:
        # Fails if another process created the key first: then we use theirs.
        with contextlib.suppress(FileExistsError):
            write_atomically(path, new_key_pem()[1], mode=0o600, replace=False)

    @property
    def _jwk(self) -> ECKey:
        """The key as joserfc's JWK, made on first use: joserfc (and `cryptography.x509` under it) cost the host's
        start ~0.1 s of CPU and are needed only once the first token is checked."""
        if self._jwk_key is None:
            from joserfc.jwk import ECKey

            self._jwk_key = ECKey.import_key(self._private_key)
        return self._jwk_key

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS of `claims` with header `{"typ": "JWT", "alg": "ES256"}` (RFC 7515, RFC 7518 §3.4).

        Signed with `cryptography` directly rather than through joserfc's `jwt.encode`: every WebSocket token
        exchange signs one token, and joserfc's claim conversion and header registry cost as much as the ECDSA
        signature itself (~160 µs against ~75 µs per token). The result is the same format, checked by `verifies`.
        """
        try:
            payload = orjson.dumps(claims)
        except orjson.JSONEncodeError:  # e.g. an integer over 64 bits in a foreign token's extra claims
            payload = json.dumps(claims, separators=(",", ":")).encode()
        signing_input = _JWT_ES256_HEADER + b"." + _b64url(payload)
        return (signing_input + b"." + self._signature(signing_input)).decode("ascii")

    def _signature(self, signing_input: bytes) -> bytes:
        """The JWS ES256 signature of `signing_input`: r || s, 32 bytes each, base64url (RFC 7518 §3.4)."""
        if self._signer is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

            sign = self._private_key.sign
            algorithm = ec.ECDSA(hashes.SHA256())

            def signer(data: bytes) -> bytes:
                r, s = decode_dss_signature(sign(data, algorithm))
                return _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

            self._signer = signer
        return self._signer(signing_input)

    def verifies(self, token: str) -> bool:
        """True when `token` carries a valid ES256 signature by this key."""
        from joserfc import jws
        from joserfc.errors import JoseError

        try:
            jws.deserialize_compact(token, self._jwk, algorithms=["ES256"])
        except (JoseError, ValueError, TypeError):
            return False
        return True


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
        issued = self._issue(verified.issuer, verified.subject, audiences(verified.claims), extra, iat, exp, origin)
        self._remember_issued(issued)
        return issued

    def _remember_issued(self, issued: VerifiedToken) -> None:
        """Remember a token this host just signed as verified, as `verify` would after checking it.

        The signature is ours, so checking it again at the upgrade that follows every exchange would only repeat an
        ES256 verify per connection. The claims are the ones just signed (JSON values, so equal to what reading the
        token back gives) and, as for every remembered token, are checked on use, expiry included; it is forgotten
        at its first use.
        """
        claims = dict(issued.claims)
        origin = origin_expiry(claims, host_signed=True)
        verified = VerifiedToken(issued.token, issued.identity, issued.issuer, issued.subject, _shared(claims), origin)
        self._remember(verified, self._clock(), _ISSUED)

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
            ours = keys is None or keys is _ISSUED
            if now < until and (ours or (self.oidc is not None and self.oidc.current_keys(verified.issuer) is keys)):
                if keys is _ISSUED:  # its upgrade is here: a second use (rare) verifies the signature again
                    del self._verified[token]
                self._check(verified.claims, now, host_signed=ours)
                return verified
            del self._verified[token]
        header, claims = parse_unverified(token)
        now = self._clock()
        if header.get("alg") == "ES256" and self.key.verifies(token):
            identity, issuer, subject = self._check(claims, now, host_signed=True)
            origin = origin_expiry(claims, host_signed=True)
            return self._remember(VerifiedToken(token, identity, issuer, subject, _shared(claims), origin), now, None)
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
        origin = origin_expiry(claims, host_signed=False)
        verified = VerifiedToken(token, identity, issuer, subject, _shared(claims), origin)
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


def _shared(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims with their names and text values (also inside lists) interned.

    Every socket keeps its token's claims for as long as it is open, and a JSON decode makes new strings each time:
    the names, the issuer, the subject, the scopes are the same for every token of a user. Interned, 10,000 sockets
    of one user share one copy of each (values are equal either way; only memory changes).
    """
    return {sys.intern(name): _interned(value) for name, value in claims.items()}


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, list):
        return [sys.intern(item) if isinstance(item, str) else item for item in value]
    return value
