"""The publish lane against real host and control processes: drift, record, verify (token, subscribe, heartbeat)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from autopilot_sync.cli import main
from autopilot_sync.devtools.processes import free_port, start_host, start_service
from autopilot_sync.module import module as sync_module
from autopilot_sync.nostr.keyfile import save_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.ops.publish import Release


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    control_url = f"http://127.0.0.1:{free_port()}"
    control = start_service(
        "control",
        env={
            "AUTOPILOT_SYNC_CONTROL_LISTEN": control_url.removeprefix("http://"),
            "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": control_url,
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(tmp_path / "control" / "signing.pem"),
        },
    )
    host = start_host(tmp_path / "host", env={"AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": control_url})
    key_path = tmp_path / "ops.key"
    save_secret_key(key_path, SecretKey.generate())
    try:
        yield {
            "AUTOPILOT_SYNC_OPS_STATE_DIR": str(tmp_path / "ops"),
            "AUTOPILOT_SYNC_OPS_DEV_BASE_URL": host.url,
            "AUTOPILOT_SYNC_OPS_DEV_DATABASE": "autopilot-sync",
            "AUTOPILOT_SYNC_OPS_DEV_CONTROL_URL": control_url,
            "AUTOPILOT_SYNC_OPS_DEV_NOSTR_KEY_PATH": str(key_path),
        }
    finally:
        host.stop()
        control.stop()


def test_publish_to_a_live_host_verifies_over_the_real_protocol(dev_env: dict[str, str]) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["module", "publish", "--env", "dev"], env=dev_env)
    assert result.exit_code == 0, result.output
    tag = Release.of(sync_module).tag
    for line in (
        "schema drift live -> local: none",
        "ok   token: session token for npub1",
        "ok   connect: connected with v",
        "own connection present in presence",
        "ok   heartbeat: committed",
        f"GO: dev runs {tag}, verified",
    ):
        assert line in result.output, result.output
    status = runner.invoke(main, ["module", "status", "--env", "dev"], env=dev_env)
    assert f"current: {tag} (verified at" in status.output
    diff = runner.invoke(main, ["module", "diff", "--env", "dev", "--json"], env=dev_env)
    assert diff.exit_code == 0 and diff.output.strip() == "[]"


def test_an_incomplete_environment_exits_2_naming_each_variable(tmp_path: Path) -> None:
    env = {
        "AUTOPILOT_SYNC_OPS_PROD_BASE_URL": "https://sync.example.net",
        "AUTOPILOT_SYNC_OPS_STATE_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(main, ["module", "publish", "--env", "prod"], env=env)
    assert result.exit_code == 2
    for name in ("DATABASE", "CONTROL_URL", "NOSTR_KEY_PATH"):
        assert f"AUTOPILOT_SYNC_OPS_PROD_{name}" in result.output
    assert "AUTOPILOT_SYNC_OPS_PROD_BASE_URL," not in result.output


def test_a_malformed_target_url_is_refused_at_load(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["module", "verify", "--env", "dev"], env={"AUTOPILOT_SYNC_OPS_DEV_BASE_URL": "ftp://x"}
    )
    assert result.exit_code == 2
    assert "AUTOPILOT_SYNC_OPS_DEV_BASE_URL: invalid value" in result.output


def test_an_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "AUTOPILOT_SYNC_OPS_STATE_DIR": str(tmp_path),
        "AUTOPILOT_SYNC_OPS_DEV_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "AUTOPILOT_SYNC_OPS_DEV_DATABASE": "autopilot-sync",
        "AUTOPILOT_SYNC_OPS_DEV_CONTROL_URL": "http://127.0.0.1:9",
        "AUTOPILOT_SYNC_OPS_DEV_NOSTR_KEY_PATH": str(tmp_path / "key"),
    }
    result = CliRunner().invoke(main, ["module", "publish", "--env", "dev"], env=env)
    assert result.exit_code == 1
    assert "error: cannot read the schema from" in result.output
