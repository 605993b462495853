"""Generated bindings for the chat module are mypy-clean and work as row types and typed reducer calls."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from client_host_process import DATABASE, HostProcess

from autopilot_sync.cli import main
from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.codegen import generate
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn

pytestmark = pytest.mark.timeout(120)


def test_generated_bindings_pass_mypy_strict(tmp_path: Path) -> None:
    schema_file = tmp_path / "chat.schema.json"
    import json

    schema_file.write_text(json.dumps(chat.schema_json()))
    out = tmp_path / "chat_bindings.py"
    result = CliRunner().invoke(main, ["client", "generate", "--schema-file", str(schema_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_generated_reducer_calls_answer_the_sdks_result_type_without_naming_the_sdk(tmp_path: Path) -> None:
    """The bindings sit below the SDK (sync_bindings/ is on floor 1): they never import it, even for type checking,
    yet a call through a `Connection` or a `SyncClient` is still typed as the SDK's `ReducerCallResult`."""
    source = generate(chat.schema_json(), command="autopilot-sync client generate")
    assert "autopilot_sync.client" not in source
    (tmp_path / "chat_bindings.py").write_text(source, encoding="utf-8")
    user = tmp_path / "chat_user.py"
    user.write_text(
        "from typing import assert_type\n"
        "from autopilot_sync.client import Connection, ReducerCallResult, SyncClient\n"
        "from chat_bindings import Reducers\n\n\n"
        "async def call(conn: Connection, client: SyncClient) -> None:\n"
        '    assert_type(await Reducers(conn).add_person("ann", 3), ReducerCallResult)\n'
        '    assert_type(await Reducers(client).add_person("ann", 3), ReducerCallResult)\n',
        encoding="utf-8",
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_generated_bindings_from_a_host_decode_rows_and_call_reducers(host: HostProcess, tmp_path: Path) -> None:
    out = tmp_path / "chat_bindings.py"
    cli = Path(sys.executable).with_name("autopilot-sync")
    args = ["client", "generate", "--base-url", host.base_url, "--database", DATABASE, "--out", str(out)]
    process = await asyncio.create_subprocess_exec(str(cli), *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    spec = importlib.util.spec_from_file_location("chat_bindings", out)
    assert spec is not None and spec.loader is not None
    bindings = importlib.util.module_from_spec(spec)
    sys.modules["chat_bindings"] = bindings
    spec.loader.exec_module(bindings)
    async with await connect(host.base_url, DATABASE, row_types=bindings.ROW_TYPES) as conn:
        await (await conn.subscribe(["SELECT * FROM person"])).applied()
        committed = await bindings.Reducers(conn).add_person("gus", 7)
        assert isinstance(committed, ReducerCommitted)
        assert conn.cache.rows("person") == [bindings.Person(id=1, name="gus", age=7)]


def _load(source: str, name: str, tmp_path: Path) -> Any:
    out = tmp_path / f"{name}.py"
    out.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, out)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def test_unnamed_product_arguments_get_named_classes_that_decode_nested_values(tmp_path: Path) -> None:
    document = chat.schema_json()
    point = at.product(("x", at.I32), ("label", at.option(at.product(("text", at.STRING)))))
    shape = at.product(("name", at.STRING), ("points", at.array(point)))
    document["reducers"].append(
        {"name": "draw", "params": at.to_json(at.product(("shape", shape)))["Product"], "lifecycle": {"none": []}}
    )
    bindings = _load(generate(document, command="test"), "nested_bindings", tmp_path)
    value = bindings.DrawShape(
        "tri",
        [
            bindings.DrawShapePointsItem(1, bindings.DrawShapePointsItemLabel("a")),
            bindings.DrawShapePointsItem(2, None),
        ],
    )
    data = value.encode()
    assert data == bsatn.encode(shape, ("tri", [(1, ("a",)), (2, None)]))
    decoded = bindings.DrawShape.decode(data)
    assert decoded == value
    assert isinstance(decoded.points[0], bindings.DrawShapePointsItem)
    assert isinstance(decoded.points[0].label, bindings.DrawShapePointsItemLabel)
    assert decoded.points[1].label is None


def test_an_unnamed_product_equal_to_a_table_row_is_that_tables_class(tmp_path: Path) -> None:
    bindings = _load(generate(chat.schema_json(), command="test"), "chat_bindings_rows", tmp_path)
    assert "remind" in dir(bindings.Reducers)
    assert not any(name.startswith("Remind") and name != "Reminder" for name in bindings.__all__)
