"""The base every service's settings class derives from: environment only, frozen, defaults validated too.

The environment is read here, by a pydantic model, rather than through pydantic-settings: the services use none of
its sources but the environment, and its import (~0.06 s of CPU, with `importlib.metadata`, dotenv and tempfile
under it) was 5% of the host's start (docs/performance.md "Round 4 — startup"). What it did for us is kept: the
variable `<prefix><FIELD>` sets a field, matched without regard to case; a keyword given to the constructor wins
over the environment; values are passed to validation as the raw strings (never JSON-decoded: every list-shaped
field splits its own commas, `settings/fields.py`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

ENV_PREFIX_ROOT = "AUTOPILOT_SYNC_"
"""Every variable of this project starts with this, then the service name, then the field name."""


class ServiceConfigDict(ConfigDict, total=False):
    """pydantic's model config plus the prefix of the service's environment variables."""

    env_prefix: str


def service_config(service: str) -> ServiceConfigDict:
    """The settings config for `service`: variables `AUTOPILOT_SYNC_<SERVICE>_<FIELD>`, nothing read from files."""
    return ServiceConfigDict(
        env_prefix=f"{ENV_PREFIX_ROOT}{service.upper()}_",
        frozen=True,
        validate_default=True,
        extra="forbid",
    )


class ServiceSettings(BaseModel):
    """One service's whole configuration, read from the environment once at start (see `load_settings`).

    Subclasses set `model_config = service_config("<service>")` and give every field a description: the docs
    table and the start-up errors are generated from it. `Settings()` reads the process environment; keywords
    override it (tests).
    """

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**self.from_environment(os.environ), **values})

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> dict[str, str]:
        """The raw value of each field set in `environ` (variable names compared without regard to case)."""
        by_name = {name.upper(): value for name, value in environ.items()}
        return {
            field: by_name[variable]
            for field in cls.model_fields
            if (variable := cls.env_name(field).upper()) in by_name
        }

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
