"""The deployment files (deploy/) are wired the way the services read them; checked without a container runtime.

No Docker or systemd runs here, so each file is checked the other honest way (docs/deployment.md says so): compose
and unit environments go through the settings classes' own validation, every Prometheus target must be a compose
service listening on that port, every mounted file must exist, and the image's ENTRYPOINT + CMD and every service
command run from the installed wheel (tests/packaging/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.settings.base import ServiceSettings
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.exporter import ExporterSettings
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import validate_environment
from autopilot_sync.settings.runtime import RuntimeSettings

pytestmark = pytest.mark.packaging

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHECKOUT = DEPLOY.parent
SETTINGS: dict[str, type[ServiceSettings]] = {
    "host": HostSettings,
    "control": ControlSettings,
    "runtime": RuntimeSettings,
    "exporter": ExporterSettings,
}


def _strip_comment(line: str) -> str:
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line


def _scalar(text: str) -> Any:
    if text.startswith(("[", "{", '"')):
        return json.loads(text)
    return text


def _block(lines: list[tuple[int, str]], at: int, indent: int) -> tuple[Any, int]:
    if lines[at][1].startswith("- "):
        items = []
        while at < len(lines) and lines[at][0] == indent and lines[at][1].startswith("- "):
            items.append(_scalar(lines[at][1][2:].strip()))
            at += 1
        return items, at
    mapping: dict[str, Any] = {}
    while at < len(lines) and lines[at][0] == indent:
        key, _, rest = lines[at][1].partition(":")
        at += 1
        if rest.strip():
            mapping[key] = _scalar(rest.strip())
        else:
            mapping[key], at = _block(lines, at, lines[at][0])
    return mapping, at


def parse_compose(text: str) -> dict[str, Any]:
    """The block-style YAML subset deploy/compose.yaml is written in (a test helper: no YAML library is installed)."""
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if line.strip():
            lines.append((len(line) - len(line.lstrip()), line.strip()))
    parsed, end = _block(lines, 0, 0)
    assert end == len(lines), f"compose.yaml: unparsed from line {lines[end]}"
    return dict(parsed)


COMPOSE = parse_compose((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with the variables an operator sets (RUNTIME_PUBKEY: a real public key)."""
    operator = {
        "RUNTIME_PUBKEY": SecretKey.generate().public_key().hex,
        "EXPORTER_IDENTITY": "c2" + "00" * 31,
        "OWNER_IDENTITY": "c2" + "11" * 31,
    }
    return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: operator[m.group(1)], value)


def _assert_valid(cls: type[ServiceSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    for name in [n for n in os.environ if n.startswith("AUTOPILOT_SYNC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, problems = validate_environment(cls, env)
    assert problems == [] and settings is not None, problems
    return settings


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_environment_is_valid_for_the_service_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: _interpolate(str(value)) for name, value in SERVICES[service]["environment"].items()}
    settings = _assert_valid(SETTINGS[service], env, monkeypatch)
    listen = settings.listen  # type: ignore[attr-defined]
    assert listen.host == "0.0.0.0", "inside a container a service must listen on every interface"
    assert [f"{listen.port}:{listen.port}"] == SERVICES[service]["ports"]


def test_compose_wires_the_services_as_up_does() -> None:
    host, control, runtime = (SERVICES[name]["environment"] for name in ("host", "control", "runtime"))
    issuer = control["AUTOPILOT_SYNC_CONTROL_PUBLIC_URL"]
    assert host["AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS"] == issuer, "the host must trust control as issuer"
    assert runtime["AUTOPILOT_SYNC_RUNTIME_CONTROL_URL"] == issuer
    host_url = f"http://host:{host['AUTOPILOT_SYNC_HOST_LISTEN'].rsplit(':', 1)[1]}"
    assert control["AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL"] == host_url
    assert runtime["AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL"] == host_url
    assert "RUNTIME_PUBKEY" in control["AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST"], "control allow-lists the runtime"
    exporter = SERVICES["exporter"]["environment"]
    assert exporter["AUTOPILOT_SYNC_EXPORTER_CONTROL_URL"] == issuer
    assert exporter["AUTOPILOT_SYNC_EXPORTER_SPACETIME_BASE_URL"] == host_url
    assert "EXPORTER_IDENTITY" in host["AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES"], "the exporter reads as an observer"
    owner = host.get("AUTOPILOT_SYNC_HOST_OWNER_IDENTITY", "")
    assert "EXPORTER_IDENTITY" not in owner, "the exporter's key must not be the owner's"
    assert "OWNER_IDENTITY" in owner, "an operator's key owns the database: it names the trusted issuer"
    for name in SETTINGS:  # state lives in the service's named volume
        data = [v for k, v in SERVICES[name]["environment"].items() if k.endswith(("_DATA_DIR", "_KEY_PATH"))]
        mount = SERVICES[name]["volumes"][0].split(":")[1]
        assert data and all(path.startswith(mount + "/") for path in data), (name, data, mount)


def test_every_prometheus_target_is_a_compose_service_on_its_port() -> None:
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    jobs = dict(re.findall(r"job_name: (\S+)\s+static_configs:\s+- targets: \[\"([^\"]+)\"\]", text))
    assert set(jobs) == {f"autopilot-sync-{name}" for name in SETTINGS}, "alerts.yml expects these job names"
    for job, target in jobs.items():
        service, port = target.split(":")
        assert job == f"autopilot-sync-{service}"
        prefix = SETTINGS[service].env_prefix()
        assert SERVICES[service]["environment"][f"{prefix}LISTEN"].endswith(f":{port}"), target


def test_every_mounted_file_exists_and_the_shipped_rules_and_dashboard_are_provisioned() -> None:
    mounted = []
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{volume}: {source} is missing"
                mounted.append((DEPLOY / source).resolve())
    for shipped in ("prometheus/alerts.yml", "grafana/autopilot-sync.json", "grafana/provisioning"):
        assert (DEPLOY / shipped).resolve() in mounted, f"{shipped} is not provisioned"
    assert "alerts.yml" in (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: scripts/install-system-deps.sh")
def test_promtool_accepts_the_scrape_config() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _dockerfile() -> tuple[list[str], list[str], str]:
    text = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    return json.loads(entrypoint), json.loads(cmd), text


def test_the_image_runs_as_a_user_and_builds_from_the_checkout_only() -> None:
    _, _, text = _dockerfile()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the final image must not run as root"
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (CHECKOUT / source).exists(), f"COPY {source}: not in the checkout"


def test_the_image_entry_point_and_every_service_command_run_from_the_installed_wheel(installed_wheel: Any) -> None:
    entrypoint, cmd, _ = _dockerfile()
    assert entrypoint == ["autopilot-sync"], "the CLI is the entry point"
    done = installed_wheel.run(*cmd)
    assert done.returncode == 0 and "Example:" in done.stdout, done.stderr
    for name in SETTINGS:
        done = installed_wheel.run(*SERVICES[name]["command"], "--help")
        assert done.returncode == 0, (name, done.stderr)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_systemd_unit_environment_and_command_are_valid(
    service: str, monkeypatch: pytest.MonkeyPatch, installed_wheel: Any
) -> None:
    text = (DEPLOY / "systemd" / f"autopilot-sync-{service}.service").read_text(encoding="utf-8")
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.MULTILINE))
    if service == "control":
        env["AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST"] = SecretKey.generate().public_key().hex  # from control.env
    _assert_valid(SETTINGS[service], env, monkeypatch)
    (command,) = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
    program, *args = command.split()
    assert program == "/opt/autopilot-sync/bin/autopilot-sync" and args == [service]
    assert installed_wheel.run(*args, "--help").returncode == 0
