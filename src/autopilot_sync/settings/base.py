"""The base every service's settings class derives from: environment only, frozen, defaults validated too."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX_ROOT = "AUTOPILOT_SYNC_"
"""Every variable of this project starts with this, then the service name, then the field name."""


def service_config(service: str) -> SettingsConfigDict:
    """The settings config for `service`: variables `AUTOPILOT_SYNC_<SERVICE>_<FIELD>`, nothing read from files."""
    return SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX_ROOT}{service.upper()}_",
        frozen=True,
        validate_default=True,
        extra="forbid",
    )


class ServiceSettings(BaseSettings):
    """One service's whole configuration, read from the environment once at start (see `load_settings`).

    Subclasses set `model_config = service_config("<service>")` and give every field a description: the docs
    table and the start-up errors are generated from it.
    """

    @classmethod
    def env_prefix(cls) -> str:
        """The prefix of this service's variables, e.g. `AUTOPILOT_SYNC_HOST_`."""
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def service_name(cls) -> str:
        """The service's short name, e.g. `host` (from the prefix, so the two cannot disagree)."""
        return cls.env_prefix().removeprefix(ENV_PREFIX_ROOT).rstrip("_").lower()

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field`."""
        return f"{cls.env_prefix()}{field.upper()}"
