"""`GET /v1/database/:name/schema?version=9|10` from a real host process, read by the SDK: one module, two forms.

The route follows SpacetimeDB's `schema` handler (`crates/client-api/src/routes/database.rs`): `version` is required
and is `9` or `10`; anything else is axum's query rejection (400, serde's text).
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from click.testing import CliRunner
from client_host_process import DATABASE, HostProcess

from autopilot_sync.cli import main
from autopilot_sync.client.codegen import generate
from autopilot_sync.client.schema import ClientSchema, fetch_schema_json
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.spacetime import moduledef


async def test_the_sdk_reads_the_same_module_from_schema_versions_9_and_10(host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        v9 = await fetch_schema_json(session, host.base_url, DATABASE)
        v10 = await fetch_schema_json(session, host.base_url, DATABASE, version=10)
    assert "typespace" in v9 and "sections" in v10
    assert moduledef.from_json(v9) == moduledef.from_json(v10) == chat.module_def()
    assert moduledef.schema_hash(moduledef.from_json(v10)) == chat.schema_hash()
    from_v9, from_v10 = ClientSchema.from_json(v9), ClientSchema.from_json(v10)
    assert from_v9.tables.keys() == from_v10.tables.keys() and from_v9.reducers == from_v10.reducers
    assert generate(v10, "chat") == generate(v9, "chat")


async def test_the_served_v9_document_writes_index_algorithms_as_spacetimedb_does(host: HostProcess) -> None:
    """`{"BTree": [0]}`, the newtype form of SpacetimeDB's `SerdeWrapper(RawModuleDefV9)` (see `raw.INDEX_ALGORITHM`),
    so tools reading SpacetimeDB's JSON read ours; the schema hash of what was served is the one data dirs store."""
    async with aiohttp.ClientSession() as session:
        served = await fetch_schema_json(session, host.base_url, DATABASE)
    algorithms = [index["algorithm"] for table in served["tables"] for index in table["indexes"]]
    assert algorithms and all(set(a) <= {"BTree", "Hash", "Direct"} for a in algorithms)
    assert all(
        isinstance(columns, list) and all(isinstance(c, int) for c in columns)
        for a in algorithms
        for columns in a.values()
    )
    assert moduledef.schema_hash(served) == chat.schema_hash()


async def test_other_schema_versions_get_spacetimedbs_query_rejection(host: HostProcess) -> None:
    url = f"{host.base_url}/v1/database/{DATABASE}/schema"
    async with aiohttp.ClientSession() as session:
        for query, text in [
            ("", "Failed to deserialize query string: missing field `version`"),
            ("?version=8", "Failed to deserialize query string: unknown variant `8`, expected `9` or `10`"),
            ("?version=v10", "Failed to deserialize query string: unknown variant `v10`, expected `9` or `10`"),
        ]:
            async with session.get(url + query) as response:
                assert (response.status, await response.text()) == (400, text), query


def test_client_generate_writes_the_same_bindings_from_a_v9_or_a_v10_file(tmp_path: Path) -> None:
    outputs = []
    for version in (9, 10):
        schema_file = tmp_path / f"chat.v{version}.json"
        schema_file.write_text(json.dumps(moduledef.to_json(chat.module_def(), version)))
        out = tmp_path / f"bindings_v{version}.py"
        args = ["client", "generate", "--schema-file", str(schema_file), "--out", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        # the header names the command that wrote the file, paths and all
        outputs.append(out.read_text().replace(schema_file.name, "chat.json").replace(out.name, "bindings.py"))
    assert outputs[0] == outputs[1]


def test_client_generate_refuses_a_file_that_is_not_a_schema_in_one_line(tmp_path: Path) -> None:
    schema_file = tmp_path / "not_a_schema.json"
    schema_file.write_text(json.dumps({"tables": []}))
    args = ["client", "generate", "--schema-file", str(schema_file), "--out", str(tmp_path / "out.py")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: not a RawModuleDefV9 document: at $:")
    assert result.exception is None or isinstance(result.exception, SystemExit)
