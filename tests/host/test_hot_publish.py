"""Publishing to a running host process, end to end over real sockets (the bar of issue 19, for a Python module and
a TypeScript module).

v1 is published to a host started with no database, data is written, a compatible v2 is published while an SDK
client is subscribed (it is disconnected with 1012, reconnects with the new schema and resumes: every row is still
there, in the new shape), a breaking v3 is refused with the diff, then forced with delete-data; a restart runs what
was published last; only the owner may publish or delete; DELETE leaves the host with no database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.client import SyncClient
from autopilot_sync.devtools.host_tokens import host_signed_token
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host
from autopilot_sync.host.auth.tokens import LOCAL_ISSUER
from autopilot_sync.ops.host_publish import ModuleArtifact, delete_database, publish_module
from autopilot_sync.spacetime.identity import identity_from_claims

MODULES = Path(__file__).resolve().parent / "publish_modules"
DATABASE = "notes"


def host_env(owner_subject: str = "operator") -> dict[str, str]:
    """The host child's environment: the test modules installed (on its path) and the operator as owner."""
    path = os.pathsep.join(filter(None, [str(MODULES), os.environ.get("PYTHONPATH")]))
    return {
        "PYTHONPATH": path,
        "AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": identity_from_claims(LOCAL_ISSUER, owner_subject).hex,
    }


class LiveHost:
    """One host process on a fixed port and data directory, restartable in place."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: ServiceProcess | None = None
        self.owner_token = host_signed_token(data_dir, "operator")
        self.stranger_token = host_signed_token(data_dir, "stranger")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, module: str = "") -> None:
        self.process = await asyncio.to_thread(
            start_host, self.data_dir, module=module, database=DATABASE, port=self.port, env=host_env()
        )

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveHost]:
    data_dir = tmp_path / "host"
    data_dir.mkdir()
    host = LiveHost(data_dir)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def http(method: str, url: str, *, token: str | None = None, json_body: Any = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, json=json_body) as r:
        return r.status, await r.text()


async def sql(host: LiveHost, query: str) -> list[list[Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{host.url}/v1/database/{DATABASE}/sql",
            data=query,
            headers={"Authorization": f"Bearer {host.owner_token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return list((await response.json())[0]["rows"])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`autopilot-sync <args>` as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "autopilot_sync", *args], capture_output=True, text=True, timeout=120, check=False
    )


async def until(condition: Any, what: str, seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (state another task changes: poll)
            await asyncio.sleep(0.05)
    assert condition(), what


async def test_only_the_owner_publishes_and_deletes_and_the_host_serves_one_database(live: LiveHost) -> None:
    v1 = ModuleArtifact(python_module="pub_notes_v1")
    stranger = await publish_module(live.url, DATABASE, live.stranger_token, v1)
    assert stranger.status == 403 and "may not create" in stranger.text
    assert (await publish_module(live.url, DATABASE, live.owner_token, v1)).op == "created"
    assert (await publish_module(live.url, DATABASE, live.stranger_token, v1)).status == 403
    other = await publish_module(live.url, "another-db", live.owner_token, v1)
    assert other.status == 404 and f"this host serves one database, `{DATABASE}`" in other.text
    status, text = await http(
        "POST", f"{live.url}/v1/database", token=live.owner_token, json_body={"python_module": "x"}
    )
    assert status == 409 and f"PUT /v1/database/{DATABASE}" in text
    assert (await http("PUT", f"{live.url}/v1/database/{DATABASE}", json_body={"python_module": "x"}))[0] == 401
    missing = await publish_module(live.url, DATABASE, live.owner_token, ModuleArtifact(python_module="no_such_mod"))
    assert missing.status == 400 and "cannot import module 'no_such_mod'" in missing.text
    assert (await delete_database(live.url, DATABASE, live.stranger_token)).status == 403

    deleted = await asyncio.to_thread(cli, "delete", "--server", live.url, "--token", live.owner_token, DATABASE)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"{DATABASE}: deleted", deleted.stderr
    assert (await http("GET", f"{live.url}/v1/database/{DATABASE}/schema?version=9"))[0] == 404
    refused = await asyncio.to_thread(cli, "delete", "--server", live.url, DATABASE)
    assert refused.returncode != 0, refused.stderr
    assert refused.stderr.startswith("Error: delete needs the owner's token"), refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr


SERVER_BUNDLE = Path(__file__).resolve().parents[2] / "conformance" / "node_modules" / "spacetimedb" / "dist"
JS_MODULES = MODULES / "js"


def js_bundle(tmp_path: Path, release: int) -> Path:
    """Release `release` of the notes module as a built TypeScript module file (skips without node)."""
    server = SERVER_BUNDLE / "server" / "index.mjs"
    if shutil.which("node") is None or not server.is_file():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    path = tmp_path / f"notes_v{release}.js"
    path.write_text(
        (JS_MODULES / f"notes_v{release}.mjs.in").read_text().replace("@SPACETIMEDB_SERVER@", server.as_uri())
    )
    return path


class Releases:
    """Releases 1-3 of the notes module as one kind publishes them: Python module paths, or built bundles."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.bundles = {n: js_bundle(tmp_path, n) for n in (1, 2, 3)} if kind == "typescript" else {}

    @property
    def v2_changes(self) -> set[str]:
        """What release 2 changes (the TypeScript release adds no index)."""
        changes = {"column_added_with_default", "table_added", "reducer_added"}
        return changes if self.kind == "typescript" else changes | {"index_added"}

    def cli_args(self, release: int) -> list[str]:
        """How `autopilot-sync publish` names release `release`."""
        if self.kind == "typescript":
            return ["--js-path", str(self.bundles[release])]
        return ["--module", f"pub_notes_v{release}"]

    def artifact(self, release: int) -> ModuleArtifact:
        """What `publish_module` sends for release `release`."""
        if self.kind == "typescript":
            return ModuleArtifact(bundle=self.bundles[release].read_bytes())
        return ModuleArtifact(python_module=f"pub_notes_v{release}")


@pytest.mark.parametrize("kind", ["python", pytest.param("typescript", marks=pytest.mark.node)])
async def test_publish_v1_write_v2_live_with_a_client_v3_refused_then_forced_with_delete_data(
    live: LiveHost, tmp_path: Path, kind: str
) -> None:
    releases = Releases(kind, tmp_path)
    schema_url = f"{live.url}/v1/database/{DATABASE}/schema?version=9"
    assert (await http("GET", schema_url))[0] == 404, "a host started with no module serves no database"

    created = await asyncio.to_thread(
        cli, "publish", "--server", live.url, *releases.cli_args(1), "--token", live.owner_token, DATABASE
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith(f"{DATABASE}: created")
    for text in ("one", "two"):
        status, body = await http(
            "POST", f"{live.url}/v1/database/{DATABASE}/call/add_note", token=live.owner_token, json_body=[text]
        )
        assert status == 200, body

    async with SyncClient(live.url, DATABASE) as client:
        notes = await client.subscribe(["SELECT * FROM note"])
        await asyncio.wait_for(notes.applied(), 20)
        assert sorted(tuple(row) for row in client.cache.rows("note")) == [(1, "one"), (2, "two")]

        artifact = releases.artifact(2)
        compatible_only = await publish_module(live.url, DATABASE, live.owner_token, artifact)
        assert compatible_only.status == 400 and "client-breaking change" in compatible_only.text
        v2 = await publish_module(live.url, DATABASE, live.owner_token, artifact, break_clients=True)
        assert v2.ok and v2.op == "updated" and v2.disconnected_clients and not v2.cleared, v2.text
        kinds = {change["kind"] for change in v2.changes}
        assert releases.v2_changes <= kinds

        # The client was closed with 1012, reconnected with the new schema and resubscribed: nothing lost.
        await until(lambda: client.reconnects >= 1 and notes.applied_count >= 2, "the client resubscribed")
        await until(
            lambda: sorted(tuple(row) for row in client.cache.rows("note")) == [(1, "one", False), (2, "two", False)],
            "the rows in the new shape",
        )
        result = await client.call("add_pinned_note", "three")
        assert type(result).__name__ == "ReducerCommitted", result
        await until(lambda: (3, "three", True) in {tuple(row) for row in client.cache.rows("note")}, "the new row")

    refused = await publish_module(live.url, DATABASE, live.owner_token, releases.artifact(3))
    assert refused.status == 400
    assert refused.text.startswith("Database update rejected")
    assert "column note.text" in refused.text and "table tag" in refused.text and "[breaking]" in refused.text
    assert len(await sql(live, "SELECT * FROM note")) == 3, "a refused publish changes nothing"
    assert "pinned" in (await http("GET", schema_url))[1]

    forced = await asyncio.to_thread(
        cli, "publish", "-s", live.url, *releases.cli_args(3), "--delete-data", "--token", live.owner_token, DATABASE
    )
    assert forced.returncode == 0, forced.stderr
    assert "data deleted" in forced.stdout
    assert await sql(live, "SELECT * FROM note") == []
    status, body = await http(
        "POST", f"{live.url}/v1/database/{DATABASE}/call/add_note", token=live.owner_token, json_body=[["a", "b"]]
    )
    assert status == 200, body

    # A restart runs what was published last (a bundle is kept in the data directory), whatever --module says.
    await live.stop()
    await live.start(module="pub_notes_v1")
    assert [row[1] for row in await sql(live, "SELECT * FROM note")] == [["a", "b"]]
    assert "lines" in (await http("GET", schema_url))[1]
