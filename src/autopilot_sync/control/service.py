"""The token decision, without HTTP: proof → request → policy → signed token, or one `ControlError`.

Synchronous and socket-free (sans-I/O): `api.py` only reads the request, calls `issue`, and writes the answer, so
every rule here is testable with plain values. The order is fixed and documented: the NIP-98 proof first (nothing
about an unauthenticated request is worth parsing), then admission (replay memory, the key's rate), then the body,
then the policy (scopes, then streams).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from autopilot_sync.contract.scopes import Scope
from autopilot_sync.control.admission import AdmissionControl, AdmissionLimits
from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.control.keys import ALGORITHM, KeyStore
from autopilot_sync.control.metrics import ControlMetrics
from autopilot_sync.control.policy import ScopePolicy
from autopilot_sync.control.policy_file import PolicySource
from autopilot_sync.control.request import TtlBounds, parse_token_request
from autopilot_sync.control.tokens import IssuedToken, TokenContext, mint
from autopilot_sync.nostr.errors import NostrAuthError
from autopilot_sync.nostr.nip98 import DEFAULT_MAX_SKEW, decode_authorization_header, verify_http_auth_event

_log = logging.getLogger(__name__)

#: The one route that mints.
TOKEN_PATH = "/api/sync/token"
#: OIDC discovery, where hosts find `jwks_uri`.
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: The published signing keys.
JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Everything fixed for the life of the service (from `ControlSettings`)."""

    public_url: str
    context: TokenContext
    ttl: TtlBounds
    #: fixed grants, or a policy file re-read when it changes
    policy: ScopePolicy | PolicySource
    max_skew: int = DEFAULT_MAX_SKEW
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)

    @property
    def token_url(self) -> str:
        """The absolute URL clients sign into the NIP-98 `u` tag (before any query string)."""
        return f"{self.public_url}{TOKEN_PATH}"


class ControlService:
    """Verifies proofs, applies the policy, signs tokens and counts what happened."""

    def __init__(
        self,
        config: ControlConfig,
        keys: KeyStore,
        *,
        metrics: ControlMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.keys = keys
        self.metrics = metrics or ControlMetrics()
        self.admission = AdmissionControl(config.admission, config.max_skew)
        self._clock = clock

    def issue(self, authorization: str | None, url: str, method: str, body: bytes) -> IssuedToken:
        """Mint a token for this request or raise `ControlError`; every outcome is counted."""
        try:
            token = self._issue(authorization, url, method, body)
        except ControlError as exc:
            self.metrics.token_refused(exc.code)
            _log.info("token refused: %s", exc)
            raise
        self.metrics.token_issued(token.claims["client_kind"])
        _log.info(
            "token issued to %s: scopes=%s ttl=%ss kid=%s",
            token.pubkey.npub,
            " ".join(token.claims["scopes"]),
            token.ttl_seconds,
            self.keys.signing_key().kid,
        )
        return token

    def refuse(self, error: ControlError) -> None:
        """Count a refusal decided before `issue` could run (an oversized body)."""
        self.metrics.token_refused(error.code)
        _log.info("token refused: %s", error)

    def _issue(self, authorization: str | None, url: str, method: str, body: bytes) -> IssuedToken:
        now = int(self._clock())
        try:
            event = decode_authorization_header(authorization)
            pubkey = verify_http_auth_event(
                event, url=url, method=method, body=body, now=now, max_skew=self.config.max_skew
            )
        except NostrAuthError as exc:
            raise ControlError(ControlErrorCode.from_auth(exc.code), exc.message) from None
        self.admission.admit(event, now)  # signed by `pubkey`: replay memory and the key's rate
        request = parse_token_request(body, self.config.ttl)
        policy = self.config.policy
        current = policy.current() if isinstance(policy, PolicySource) else policy
        streams = current.decide(pubkey, request.scopes, request.streams)
        return mint(replace(request, streams=streams), pubkey, self.config.context, self.keys.signing_key(), now)

    def discovery(self) -> dict[str, Any]:
        """The OIDC discovery document: enough for a host (or any OIDC library) to find and use our keys."""
        base = self.config.public_url
        return {
            "issuer": base,
            "jwks_uri": f"{base}{JWKS_PATH}",
            "token_endpoint": f"{base}{TOKEN_PATH}",
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "scopes_supported": [scope.value for scope in Scope],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "iat",
                "nbf",
                "exp",
                "jti",
                "hex_identity",
                "scopes",
                "streams",
                "client_kind",
            ],
        }

    def jwks(self) -> dict[str, Any]:
        """The JWKS document now."""
        return self.keys.jwks()
