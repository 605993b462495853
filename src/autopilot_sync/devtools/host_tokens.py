"""Tokens a host signed itself, minted from its data directory: for tests that need a subject control never issues.

The host's own signing key is `<data_dir>/id_ecdsa` (`host/auth/tokens.py`); a token signed with it is as valid as
one the host issued over `POST /v1/identity`, but its subject is the caller's choice — e.g. `banned`, which the chat
module's `client_connected` refuses (the conformance suite and the process tests check that refusal end to end).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopilot_sync.host.auth.tokens import LOCAL_AUDIENCE, LOCAL_ISSUER, SigningKey
from autopilot_sync.spacetime.identity import identity_from_claims

#: The subject the chat example's `client_connected` refuses with "forbidden: this subject is banned".
BANNED_SUBJECT = "banned"


def host_signed_token(data_dir: Path, subject: str = BANNED_SUBJECT, extra: Mapping[str, Any] | None = None) -> str:
    """A token without expiry for `subject`, signed with the key of the host whose data directory is `data_dir`.

    `extra` adds claims (e.g. `scopes`, which the sync module's `client_connected` requires).
    """
    claims = {
        **(extra or {}),
        "iss": LOCAL_ISSUER,
        "sub": subject,
        "aud": list(LOCAL_AUDIENCE),
        "iat": int(time.time()),
        "exp": None,
        "hex_identity": identity_from_claims(LOCAL_ISSUER, subject).hex,
    }
    return SigningKey.load_or_create(data_dir).sign(claims)
