"""A publish is atomic and durable: a host SIGKILLed at any step of it restarts on the old module with the old data,
or on the new module with the new data (migrated rows, or none after delete-data) — never a mix.

The kill comes from the test fault in tests/faults/publish_kill/ (a real host process, its own code unchanged).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest
from test_hot_publish import DATABASE, host_env

from autopilot_sync.devtools.host_tokens import host_signed_token
from autopilot_sync.devtools.processes import free_port, start_host
from autopilot_sync.ops.host_publish import ModuleArtifact, publish_module

FAULT = Path(__file__).resolve().parents[1] / "faults" / "publish_kill"

#: (kill point, whether the new module is what runs after the restart)
POINTS = [
    ("_commit:before", False),
    ("_commit:after", True),
    ("after_install:before", True),
    ("after_install:after", True),
]


async def _notes(url: str, token: str) -> tuple[str, list[list[object]]]:
    """The served schema's `note` columns (as text) and every row of `note`."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/database/{DATABASE}/schema?version=9") as response:
            schema = await response.text()
        async with session.post(f"{url}/v1/database/{DATABASE}/sql", data="SELECT * FROM note", headers=headers) as r:
            assert r.status == 200, await r.text()
            rows = (await r.json())[0]["rows"]
    return schema, rows


@pytest.mark.parametrize(("clear", "module"), [(False, "pub_notes_v2"), (True, "pub_notes_v3")], ids=["v2", "v3-clear"])
@pytest.mark.parametrize(("point", "new_runs"), POINTS, ids=[point for point, _ in POINTS])
async def test_a_host_killed_mid_publish_restarts_on_the_old_module_or_the_new_never_a_mix(
    tmp_path: Path, point: str, new_runs: bool, clear: bool, module: str
) -> None:
    data_dir = tmp_path / "host"
    data_dir.mkdir()
    token = host_signed_token(data_dir, "operator")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = host_env()
    faulty = {**env, "FAULT_PUBLISH_KILL": point, "PYTHONPATH": os.pathsep.join([str(FAULT), env["PYTHONPATH"]])}
    host = await asyncio.to_thread(
        start_host, data_dir, module="pub_notes_v1", database=DATABASE, port=port, env=faulty
    )
    try:
        async with aiohttp.ClientSession() as session:
            for text in ("one", "two", "three"):
                call = f"{url}/v1/database/{DATABASE}/call/add_note"
                async with session.post(call, json=[text], headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200
        with pytest.raises(aiohttp.ClientError):
            await publish_module(
                url, DATABASE, token, ModuleArtifact(python_module=module), clear=clear, break_clients=True
            )
        assert await asyncio.to_thread(host.process.wait, 10) == -9, "the fault killed the host mid-publish"
    finally:
        host.kill()

    host = await asyncio.to_thread(start_host, data_dir, module="pub_notes_v1", database=DATABASE, port=port, env=env)
    try:
        schema, rows = await _notes(url, token)
        columns = [element["name"]["some"] for element in _note_columns(schema)]
        if not new_runs:
            assert columns == ["id", "text"] and rows == [[1, "one"], [2, "two"], [3, "three"]]
        elif clear:
            assert columns == ["id", "lines"] and rows == []
        else:
            assert columns == ["id", "text", "pinned"]
            assert rows == [[1, "one", False], [2, "two", False], [3, "three", False]]
    finally:
        await asyncio.to_thread(host.stop)


def _note_columns(schema_text: str) -> list[dict[str, object]]:
    schema = json.loads(schema_text)
    table = next(t for t in schema["tables"] if t["name"] == "note")
    row_type = schema["typespace"]["types"][table["product_type_ref"]]
    return list(row_type["Product"]["elements"])
