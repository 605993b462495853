"""Settings of the control service that issues session tokens (`AUTOPILOT_SYNC_CONTROL_*`)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from autopilot_sync.settings.base import ServiceSettings, service_config
from autopilot_sync.settings.fields import (
    BaseUrl,
    Count,
    DatabaseName,
    FilePath,
    HexPubkeys,
    Listen,
    ListenAddress,
    Seconds,
)


class ControlSettings(ServiceSettings):
    """The control service: `POST /api/sync/token`, its signing key, and the bounds on token lifetime."""

    model_config = service_config("control")

    listen: Listen = Field(
        default=ListenAddress("127.0.0.1", 3100), description="Address of the token API and OIDC discovery."
    )
    public_url: BaseUrl = Field(
        description="URL clients and hosts reach this service at; the issuer of every token it signs."
    )
    signing_key_path: FilePath = Field(
        description="PEM file of the private key that signs session tokens (created mode 0600 on first start); "
        "key rotation keeps `<path>.next` and `<path>.retired/` beside it (docs/control.md)."
    )
    spacetime_base_url: BaseUrl = Field(
        default="http://127.0.0.1:3000", description="Base URL of the Spacetime host the tokens are for."
    )
    database: DatabaseName = Field(default="autopilot-sync", description="Database the tokens grant access to.")
    append_allowlist: HexPubkeys = Field(
        default=(),
        description="Nostr public keys allowed every scope on every stream (producers), on top of the policy "
        "file; empty allows no producer unless the policy file names one.",
    )
    policy_path: FilePath | None = Field(
        default=None,
        description="TOML file of grants: which keys (or groups) may have which scopes on which stream patterns "
        "(docs/control.md); re-read when it changes. Unset: any key may have the reader scopes, keys on the "
        "append allowlist everything.",
    )
    proof_max_skew_seconds: Seconds = Field(
        default=60,
        description="How far a NIP-98 proof's created_at may be from control's clock, either way (NIP-98 suggests 60).",
    )
    token_requests_per_minute_per_key: Count = Field(
        default=60, description="Sustained token requests one Nostr key may make per minute (429 rate_limited beyond)."
    )
    token_burst_per_key: Count = Field(default=20, description="Token requests one Nostr key may make at once.")
    replay_memory_per_key: Count = Field(
        default=256,
        description="Unexpired NIP-98 proofs one key may hold in the replay memory, so no key can fill it alone.",
    )
    replay_memory_max: Count = Field(
        default=100_000, description="Unexpired NIP-98 proofs remembered in total (503 busy when full)."
    )
    token_ttl_min_seconds: Seconds = Field(
        default=60,
        description="Shortest token lifetime a client may ask for (tests set a few seconds to exercise refresh).",
    )
    token_ttl_max_seconds: Seconds = Field(default=900, description="Longest token lifetime a client may ask for.")
    token_ttl_default_seconds: Seconds = Field(
        default=300, description="Token lifetime when the client asks for none; between the min and the max."
    )

    token_refresh_margin_seconds: Seconds = Field(
        default=30,
        description="Clients are told to refresh this long before their token expires (`refresh_after_in` = "
        "lifetime - margin); below the shortest lifetime.",
    )

    @field_validator("token_ttl_max_seconds")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("token_ttl_min_seconds")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= the minimum ({minimum})")
        return value

    @field_validator("token_ttl_default_seconds")
    @classmethod
    def _default_within_bounds(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("token_ttl_min_seconds")
        maximum = info.data.get("token_ttl_max_seconds")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise ValueError(f"must be between the minimum ({minimum}) and the maximum ({maximum})")
        return value

    @field_validator("token_refresh_margin_seconds")
    @classmethod
    def _margin_below_min(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("token_ttl_min_seconds")
        if minimum is not None and value >= minimum:
            raise ValueError(f"must be below the shortest token lifetime ({minimum}), or clients refresh at once")
        return value
