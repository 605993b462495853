"""Launchers name settings fields, and the environment they build is read back by the settings classes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import validate_environment


def test_an_environment_built_from_fields_loads_back_as_those_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "listen": ListenAddress("127.0.0.1", 4321),
        "data_dir": Path("/tmp/somewhere"),
        "trusted_issuers": ("http://127.0.0.1:1", "http://127.0.0.1:2"),
        "fsync": False,
        "snapshots_kept": 3,
    }
    env = service_environment(HostSettings, values)
    assert env["AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS"] == "http://127.0.0.1:1,http://127.0.0.1:2"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, problems = validate_environment(HostSettings, env)
    assert problems == [] and settings is not None
    assert {name: getattr(settings, name) for name in values} == values


def test_a_field_the_class_does_not_have_is_refused_where_the_stack_is_wired() -> None:
    with pytest.raises(ValueError, match="ControlSettings has no field public_urls"):
        service_environment(ControlSettings, {"public_urls": "http://x"})


def test_none_leaves_a_field_at_its_default() -> None:
    assert service_environment(ControlSettings, {"policy_path": None}) == {}
