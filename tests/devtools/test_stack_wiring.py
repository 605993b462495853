"""The one stack wiring (`devtools/stack.py`): every environment it builds is one its service's settings class loads,
and a route hook (the chaos suite's fault proxies) changes exactly the URLs callers use. No processes: the wiring is
data; the stacks themselves are exercised end to end by the process tests, `up` and the chaos suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.devtools.stack import LocalStack
from autopilot_sync.settings.base import ServiceSettings
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.desktop import DesktopSettings
from autopilot_sync.settings.exporter import ExporterSettings
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import validate_environment
from autopilot_sync.settings.runtime import RuntimeSettings


def loaded(settings: type[ServiceSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result, problems = validate_environment(settings, env)
    assert problems == [] and result is not None, problems
    return result


@pytest.mark.parametrize("policy", [False, True])
def test_every_environment_the_stack_builds_loads_as_its_services_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: bool
) -> None:
    stack = LocalStack(tmp_path, 4001, 4002, 4003, policy=policy)
    host = loaded(HostSettings, stack.host_environment(), monkeypatch)
    control = loaded(ControlSettings, stack.control_environment(), monkeypatch)
    runtime = loaded(RuntimeSettings, stack.runtime_environment(), monkeypatch)
    desktop = loaded(DesktopSettings, stack.desktop_env(tmp_path / "desktop"), monkeypatch)
    exporter = loaded(ExporterSettings, stack.exporter_environment(), monkeypatch)
    assert isinstance(host, HostSettings) and host.trusted_issuers == ("http://127.0.0.1:4002",)
    assert host.observer_identities == (stack.exporter_identity.hex,)  # the exporter reads as an observer
    assert host.owner_identity == stack.owner_identity.hex != stack.exporter_identity.hex  # exporter is not owner
    assert isinstance(exporter, ExporterSettings) and exporter.spacetime_base_url == "http://127.0.0.1:4001"
    assert isinstance(control, ControlSettings) and control.spacetime_base_url == "http://127.0.0.1:4001"
    assert (control.policy_path is not None) is policy
    assert isinstance(runtime, RuntimeSettings) and len(runtime.readers) == len(stack.user_keys)
    assert isinstance(desktop, DesktopSettings) and desktop.spacetime_base_url == "http://127.0.0.1:4001"


def test_a_route_hook_sends_each_caller_through_its_own_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def route(caller: str, service: str) -> str | None:
        return (
            f"http://127.0.0.1:9{'1' if service == 'control' else {'runtime': '2', 'desktop': '3'}.get(caller, '4')}00"
        )

    stack = LocalStack(tmp_path, 4001, 4002, 4003, route=route)
    host = loaded(HostSettings, stack.host_environment(), monkeypatch)
    runtime = loaded(RuntimeSettings, stack.runtime_environment(), monkeypatch)
    desktop = loaded(DesktopSettings, stack.desktop_env(tmp_path / "desktop"), monkeypatch)
    control = loaded(ControlSettings, stack.control_environment(), monkeypatch)
    assert isinstance(host, HostSettings) and host.trusted_issuers == ("http://127.0.0.1:9100",)
    assert isinstance(runtime, RuntimeSettings)
    assert (runtime.control_url, runtime.spacetime_base_url) == ("http://127.0.0.1:9100", "http://127.0.0.1:9200")
    assert isinstance(desktop, DesktopSettings)
    assert (desktop.control_url, desktop.spacetime_base_url) == ("http://127.0.0.1:9100", "http://127.0.0.1:9300")
    assert isinstance(control, ControlSettings)
    assert (control.public_url, control.spacetime_base_url) == ("http://127.0.0.1:9100", "http://127.0.0.1:9400")
    assert stack.host_url == "http://127.0.0.1:4001", "the stack's own view of the host is never routed"
