"""The publish lane against real host and control processes: drift, record, publish over the host's route, verify
(token, subscribe, heartbeat), promote, roll back, GO / NO-GO."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from autopilot_sync.cli import main
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import free_port, start_host, start_service
from autopilot_sync.module import module as sync_module
from autopilot_sync.nostr.keyfile import save_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.ops.publish import Release
from autopilot_sync.spacetime.identity import identity_from_claims

MODULES = Path(__file__).resolve().parents[1] / "host" / "publish_modules"


@pytest.fixture
def lane_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Control, and a dev and a staging host running the sync module, owned by the lane's key (control's identity)."""
    monkeypatch.syspath_prepend(str(MODULES))  # the lane loads the release it publishes
    control_url = f"http://127.0.0.1:{free_port()}"
    control = start_service(
        "control",
        env={
            "AUTOPILOT_SYNC_CONTROL_LISTEN": control_url.removeprefix("http://"),
            "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": control_url,
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(tmp_path / "control" / "signing.pem"),
        },
    )
    key = SecretKey.generate()
    key_path = tmp_path / "ops.key"
    save_secret_key(key_path, key)
    host_env = {
        "AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": control_url,
        "AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": identity_from_claims(control_url, key.public_key().hex).hex,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(MODULES), os.environ.get("PYTHONPATH")])),
    }
    hosts = []
    try:
        hosts = [start_host(tmp_path / env, env=host_env) for env in ("dev", "staging")]
        lane = {"AUTOPILOT_SYNC_OPS_STATE_DIR": str(tmp_path / "ops")}
        for env, host in zip(("DEV", "STAGING"), hosts, strict=True):
            lane |= {
                f"AUTOPILOT_SYNC_OPS_{env}_BASE_URL": host.url,
                f"AUTOPILOT_SYNC_OPS_{env}_DATABASE": "autopilot-sync",
                f"AUTOPILOT_SYNC_OPS_{env}_CONTROL_URL": control_url,
                f"AUTOPILOT_SYNC_OPS_{env}_NOSTR_KEY_PATH": str(key_path),
            }
        yield lane
    finally:
        for host in hosts:
            host.stop()
        control.stop()


def served_tables(base_url: str) -> dict[str, int]:
    """The host's tables, each with how many indexes it has (read over its schema route)."""
    with urllib.request.urlopen(f"{base_url}/v1/database/autopilot-sync/schema?version=9", timeout=10) as response:
        schema = json.load(response)
    return {table["name"]: len(table["indexes"]) for table in schema["tables"]}


def test_the_lane_publishes_promotes_and_rolls_back_over_the_route_with_go_no_go(lane_env: dict[str, str]) -> None:
    runner = CliRunner()

    def lane(*args: str) -> Result:
        return runner.invoke(main, ["module", *args], env=lane_env)

    first = lane("publish", "--env", "dev")
    assert first.exit_code == 0, first.output
    tag = Release.of(sync_module).tag
    for line in (
        "schema drift live -> local: none",
        f"PUBLISH {tag} (autopilot_sync.module) to ",
        "ok   token: session token for npub1",
        "ok   connect: connected with v",
        "own connection present in presence",
        "ok   heartbeat: committed",
        f"GO: dev runs {tag}, verified",
    ):
        assert line in first.output, first.output
    status = lane("status", "--env", "dev")
    assert f"current: {tag} (verified at" in status.output
    assert lane("diff", "--env", "dev", "--json").output.strip() == "[]"
    assert lane("publish", "--env", "staging").exit_code == 0

    # A compatible release is published to the running host (no restart) and verified.
    v2 = lane("publish", "--env", "dev", "--module", "pub_sync_v2")
    assert v2.exit_code == 0, v2.output
    assert (
        "+ table release_note: new table" in v2.output
        and "updated (1 schema change(s); clients reconnect)" in v2.output
    )
    dev_url, staging_url = lane_env["AUTOPILOT_SYNC_OPS_DEV_BASE_URL"], lane_env["AUTOPILOT_SYNC_OPS_STAGING_BASE_URL"]
    assert "release_note" in served_tables(dev_url) and "release_note" not in served_tables(staging_url)

    # Promote = the same artifact, verified in dev, to staging.
    promoted = lane("promote", "--env", "staging", "--module", "pub_sync_v2")
    assert promoted.exit_code == 0, promoted.output
    assert "GO: staging runs" in promoted.output and "release_note" in served_tables(staging_url)

    # Rollback publishes the previous release when the rules allow it (v3 -> v2 drops an index: compatible) ...
    assert lane("publish", "--env", "dev", "--module", "pub_sync_v3").exit_code == 0
    assert served_tables(dev_url)["release_note"] == 2
    back = lane("rollback", "--env", "dev")
    assert back.exit_code == 0, back.output
    assert "GO: dev runs" in back.output and served_tables(dev_url)["release_note"] == 1

    # ... and refuses, saying why, when they do not (staging v2 -> v1 drops a table holding data).
    refused = lane("rollback", "--env", "staging")
    assert refused.exit_code == 1
    assert "- table release_note: table removed" in refused.output and "REFUSED: going back to" in refused.output
    assert "release_note" in served_tables(staging_url)

    # A release the host accepts but that fails verification is NO-GO (here: a module without the sync tables).
    wrong = lane("publish", "--env", "dev", "--module", "pub_notes_v1")
    assert wrong.exit_code == 1 and "REFUSED: " in wrong.output, wrong.output
    forced = lane("publish", "--env", "dev", "--module", "pub_notes_v1", "--delete-data")
    assert forced.exit_code == 1, forced.output
    assert "data deleted" in forced.output and "NO-GO: dev does not pass verification" in forced.output


def test_the_lane_publishes_a_built_typescript_module_and_rolls_back_to_it_from_the_ledger(
    lane_env: dict[str, str], typescript_sync_module: Path
) -> None:
    """`--js-path` releases the bundle `autopilot-sync build` wrote: uploaded over the route, verified GO, kept in
    the ledger so a rollback publishes those same bytes again."""
    runner = CliRunner()

    def lane(*args: str) -> Result:
        return runner.invoke(main, ["module", *args], env=lane_env)

    js = str(typescript_sync_module)
    js_tag = lane("tag", "--js-path", js).output.split()[0]
    assert js_tag.startswith("vjs-"), js_tag
    published = lane("publish", "--env", "dev", "--js-path", js)
    assert published.exit_code == 0, published.output
    assert f"PUBLISH {js_tag} ({js}) to " in published.output and f"GO: dev runs {js_tag}, verified" in published.output
    dev_url = lane_env["AUTOPILOT_SYNC_OPS_DEV_BASE_URL"]
    assert "sync_event" in served_tables(dev_url)
    assert f"current: {js_tag} (verified at" in lane("status", "--env", "dev").output

    python = lane("publish", "--env", "dev")
    assert python.exit_code == 0, python.output
    back = lane("rollback", "--env", "dev")
    assert back.exit_code == 0, back.output
    assert f"rollback dev: {Release.of(sync_module).tag} -> {js_tag}" in back.output
    assert f"GO: dev runs {js_tag}, verified" in back.output

    missing = lane("publish", "--env", "dev", "--js-path", str(Path(js).with_name("missing.js")))
    assert missing.exit_code == 2 and "error: cannot load" in missing.output, missing.output


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


def test_a_delete_data_publish_names_control_again_so_producers_publish_on_the_new_incarnation(
    lane_env: dict[str, str],
) -> None:
    """`init` of the new incarnation seeds no trusted issuer and the sync module fails closed: the lane names
    control (its own token's issuer) before it verifies, so a reader's control token is admitted right after."""
    result = CliRunner().invoke(main, ["module", "publish", "--env", "dev", "--delete-data"], env=lane_env)
    assert result.exit_code == 0, result.output
    control_url = lane_env["AUTOPILOT_SYNC_OPS_DEV_CONTROL_URL"]
    assert f"TRUST {control_url}: named the sync module's trusted issuer again" in result.output
    assert "GO: dev runs" in result.output

    async def heartbeat() -> tuple[int, str]:
        """A call of a reader that is not the owner: its `client_connected` checks the trusted issuer."""
        reader = await fetch_session_token(control_url, SecretKey.generate(), ("sync.subscribe",), None, None, "t")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{lane_env['AUTOPILOT_SYNC_OPS_DEV_BASE_URL']}/v1/database/autopilot-sync/call/heartbeat",
                json=[],
                headers={"Authorization": f"Bearer {reader.token}"},
            ) as response,
        ):
            return response.status, await response.text()

    assert asyncio.run(heartbeat()) == (200, "")
