"""Targets of the module publish lane (`AUTOPILOT_SYNC_OPS_*`): one host, database and identity per environment.

Every per-environment value defaults to empty ("not configured") because an operator's machine usually knows only
some environments; the lane then refuses to act on an environment whose target is incomplete and names every
missing variable (`OpsSettings.target`), instead of guessing a URL or a database and publishing to the wrong place.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.settings.base import Kind, ServiceSettings, setting
from autopilot_sync.settings.fields import FilePath, text, then


class Environment(enum.Enum):
    """The deployment environments, in promotion order: a release reaches `prod` only through `staging`."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"

    @property
    def promoted_from(self) -> Environment | None:
        """The environment whose verified release `promote` copies here (None for `dev`, the first)."""
        order = list(Environment)
        index = order.index(self)
        return order[index - 1] if index > 0 else None


def _optional_url(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    if not (value.startswith("http://") or value.startswith("https://")) or any(ch.isspace() for ch in value):
        raise ValueError("expected an http:// or https:// URL with a host, or empty")
    if not value.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("expected an http:// or https:// URL with a host, or empty")
    return value.rstrip("/")


def _optional_database(value: str) -> str:
    value = value.strip()
    if value and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
        raise ValueError("expected lowercase letters and digits in words joined by '-' (like autopilot-sync), or empty")
    return value


OptionalUrl: Kind[str] = Kind("http(s) URL, or empty when not configured", then(text, _optional_url))
"""A base URL that may be left empty; a trailing `/` is dropped so paths can be appended."""

OptionalDatabase: Kind[str] = Kind(
    "database name like autopilot-sync, or empty when not configured", then(text, _optional_database)
)
"""A Spacetime database name that may be left empty."""

OptionalPath: Kind[str] = Kind("filesystem path (~ expands), or empty when not configured", text)
"""A path that may be left empty (kept as text so that empty stays distinguishable from `.`)."""

_TARGET_FIELDS = ("base_url", "database", "control_url", "nostr_key_path")


class IncompleteTargetError(ValueError):
    """An environment the lane was asked to act on lacks some of its variables; the message names each one."""


@dataclass(frozen=True, slots=True)
class Target:
    """One environment's complete publish target."""

    env: Environment
    base_url: str
    database: str
    control_url: str
    nostr_key_path: Path
    state_dir: Path

    @property
    def env_state_dir(self) -> Path:
        """Where the lane keeps this environment's release ledger and recorded schemas."""
        return self.state_dir / self.env.value


class OpsSettings(ServiceSettings, service="ops"):
    """The operator's publish targets: per environment the host, its database, and who the lane signs in as.

    The key signs a NIP-98 proof for control, which grants the session token the post-publish smoke check uses
    (scope `sync.subscribe`); the lane never needs `sync.append` or `sync.admin`.
    """

    state_dir: Path = setting(
        FilePath,
        default=Path("./var/ops"),
        description="Directory of the release ledgers, one subdirectory per environment.",
    )
    dev_base_url: str = setting(OptionalUrl, default="", description="Base URL of the dev Spacetime host.")
    dev_database: str = setting(OptionalDatabase, default="", description="Database name on the dev host.")
    dev_control_url: str = setting(
        OptionalUrl, default="", description="Control service issuing the lane's dev tokens."
    )
    dev_nostr_key_path: str = setting(
        OptionalPath,
        default="",
        description="Nostr secret key file (hex, mode 0600) the lane proves itself with in dev.",
    )
    staging_base_url: str = setting(OptionalUrl, default="", description="Base URL of the staging Spacetime host.")
    staging_database: str = setting(OptionalDatabase, default="", description="Database name on the staging host.")
    staging_control_url: str = setting(
        OptionalUrl, default="", description="Control service issuing the lane's staging tokens."
    )
    staging_nostr_key_path: str = setting(
        OptionalPath,
        default="",
        description="Nostr secret key file (hex, mode 0600) the lane proves itself with in staging.",
    )
    prod_base_url: str = setting(OptionalUrl, default="", description="Base URL of the prod Spacetime host.")
    prod_database: str = setting(OptionalDatabase, default="", description="Database name on the prod host.")
    prod_control_url: str = setting(
        OptionalUrl, default="", description="Control service issuing the lane's prod tokens."
    )
    prod_nostr_key_path: str = setting(
        OptionalPath,
        default="",
        description="Nostr secret key file (hex, mode 0600) the lane proves itself with in prod.",
    )

    def target(self, env: Environment) -> Target:
        """The complete target of `env`, or `IncompleteTargetError` naming every variable still empty."""
        values = {name: str(getattr(self, f"{env.value}_{name}")) for name in _TARGET_FIELDS}
        missing = [self.env_name(f"{env.value}_{name}") for name, value in values.items() if not value]
        if missing:
            raise IncompleteTargetError(
                f"environment {env.value} is not fully configured; set {', '.join(missing)} "
                "(see docs/configuration.md, section ops)"
            )
        return Target(
            env=env,
            base_url=values["base_url"],
            database=values["database"],
            control_url=values["control_url"],
            nostr_key_path=Path(values["nostr_key_path"]).expanduser(),
            state_dir=self.state_dir,
        )
