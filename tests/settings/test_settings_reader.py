"""The settings reader (`settings/base.py`): frozen values, keywords over the environment, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.settings.base import SettingsError
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings


def test_a_settings_object_is_frozen_and_compares_by_value() -> None:
    settings = HostSettings(listen=ListenAddress("127.0.0.1", 0))
    assert settings == HostSettings(listen="127.0.0.1:0")
    assert hash(settings) == hash(HostSettings(listen="127.0.0.1:0"))
    assert settings != HostSettings(listen="127.0.0.1:1")
    with pytest.raises(AttributeError, match="frozen"):
        settings.fsync = False
    assert "listen=ListenAddress(host='127.0.0.1', port=0)" in repr(settings)


def test_a_keyword_wins_over_the_environment_and_defaults_are_validated_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_DATABASE", "from-env")
    monkeypatch.setenv("autopilot_sync_host_snapshot_every_commits", " 7 ")  # names compared without regard to case
    settings = HostSettings(database="from-keyword")
    assert settings.database == "from-keyword"
    assert settings.snapshot_every_commits == 7
    assert settings.cache_dir == Path("~/.cache/autopilot-sync").expanduser()  # the default went through its kind


def test_an_unknown_keyword_and_each_bad_field_are_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as refused:
        HostSettings(port=3000, fsync="sometimes", max_message_bytes=0)
    problems = {(problem.field, problem.reason) for problem in refused.value.problems}
    assert problems == {("port", "unknown"), ("fsync", "invalid"), ("max_message_bytes", "invalid")}
    assert isinstance(refused.value, ValueError)
    assert "Input should be greater than or equal to 1" in str(refused.value)
