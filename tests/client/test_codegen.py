"""Generated bindings for the chat module are mypy-clean and work as row types and typed reducer calls."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from client_host_process import DATABASE, HostProcess

from autopilot_sync.cli import main
from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.examples.chat import module as chat

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
