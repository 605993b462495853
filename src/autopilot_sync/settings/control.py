"""Settings of the control service that issues session tokens (`AUTOPILOT_SYNC_CONTROL_*`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from autopilot_sync.settings.base import Kind, ServiceSettings, setting
from autopilot_sync.settings.fields import (
    BaseUrl,
    Count,
    DatabaseName,
    FilePath,
    HexPubkeys,
    Listen,
    ListenAddress,
    Seconds,
    optional,
)

#: The policy file, or None (the form the docs table has always shown for it).
OptionalFilePath: Kind[Path | None] = Kind("text", optional(FilePath.parse))


def _max_not_below_min(value: int, before: Mapping[str, object]) -> int:
    minimum = before.get("token_ttl_min_seconds")
    if isinstance(minimum, int) and value < minimum:
        raise ValueError(f"must be >= the minimum ({minimum})")
    return value


def _default_within_bounds(value: int, before: Mapping[str, object]) -> int:
    minimum = before.get("token_ttl_min_seconds")
    maximum = before.get("token_ttl_max_seconds")
    if isinstance(minimum, int) and isinstance(maximum, int) and not minimum <= value <= maximum:
        raise ValueError(f"must be between the minimum ({minimum}) and the maximum ({maximum})")
    return value


def _margin_below_min(value: int, before: Mapping[str, object]) -> int:
    minimum = before.get("token_ttl_min_seconds")
    if isinstance(minimum, int) and value >= minimum:
        raise ValueError(f"must be below the shortest token lifetime ({minimum}), or clients refresh at once")
    return value


class ControlSettings(ServiceSettings, service="control"):
    """The control service: `POST /api/sync/token`, its signing key, and the bounds on token lifetime."""

    listen: ListenAddress = setting(
        Listen, default=ListenAddress("127.0.0.1", 3100), description="Address of the token API and OIDC discovery."
    )
    public_url: str = setting(
        BaseUrl, description="URL clients and hosts reach this service at; the issuer of every token it signs."
    )
    signing_key_path: Path = setting(
        FilePath,
        description="PEM file of the private key that signs session tokens (created mode 0600 on first start); "
        "key rotation keeps `<path>.next` and `<path>.retired/` beside it (docs/control.md).",
    )
    spacetime_base_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3000", description="Base URL of the Spacetime host the tokens are for."
    )
    database: str = setting(DatabaseName, default="autopilot-sync", description="Database the tokens grant access to.")
    append_allowlist: tuple[str, ...] = setting(
        HexPubkeys,
        default=(),
        description="Nostr public keys allowed every scope on every stream (producers), on top of the policy "
        "file; empty allows no producer unless the policy file names one.",
    )
    policy_path: Path | None = setting(
        OptionalFilePath,
        default=None,
        description="TOML file of grants: which keys (or groups) may have which scopes on which stream patterns "
        "(docs/control.md); re-read when it changes. Unset: any key may have the reader scopes, keys on the "
        "append allowlist everything.",
    )
    proof_max_skew_seconds: int = setting(
        Seconds,
        default=60,
        description="How far a NIP-98 proof's created_at may be from control's clock, either way (NIP-98 suggests 60).",
    )
    token_requests_per_minute_per_key: int = setting(
        Count,
        default=60,
        description="Sustained token requests one Nostr key may make per minute (429 rate_limited beyond).",
    )
    token_burst_per_key: int = setting(Count, default=20, description="Token requests one Nostr key may make at once.")
    replay_memory_per_key: int = setting(
        Count,
        default=256,
        description="Unexpired NIP-98 proofs one key may hold in the replay memory, so no key can fill it alone.",
    )
    replay_memory_max: int = setting(
        Count, default=100_000, description="Unexpired NIP-98 proofs remembered in total (503 busy when full)."
    )
    token_ttl_min_seconds: int = setting(
        Seconds,
        default=60,
        description="Shortest token lifetime a client may ask for (tests set a few seconds to exercise refresh).",
    )
    token_ttl_max_seconds: int = setting(
        Seconds, check=_max_not_below_min, default=900, description="Longest token lifetime a client may ask for."
    )
    token_ttl_default_seconds: int = setting(
        Seconds,
        check=_default_within_bounds,
        default=300,
        description="Token lifetime when the client asks for none; between the min and the max.",
    )

    token_refresh_margin_seconds: int = setting(
        Seconds,
        check=_margin_below_min,
        default=30,
        description="Clients are told to refresh this long before their token expires (`refresh_after_in` = "
        "lifetime - margin); below the shortest lifetime.",
    )
