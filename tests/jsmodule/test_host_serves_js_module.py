"""`autopilot-sync host --module notes.js`: a real host process serves a TypeScript module to both SDKs.

Real processes end to end (marked `node`): the host CLI loads the built module file (the library's server bundle is
imported by URL, its `spacetime:sys@…` imports left as imports), and the SDK subscribes and calls reducers over the
v3 WebSocket; the official TypeScript SDK does the same through bindings generated from the host's schema route
(`official_sdk_notes.mjs`). Every failure a module can have — a refusal, a unique violation, a throw, a loop, a
heap blow-up — is a typed reducer result the SDK sees, and the host keeps serving after each.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.client import ReducerCommitted, ReducerFailed, ReducerInternalError, connect
from autopilot_sync.devtools.processes import ServiceProcess, ServiceStartError, start_host
from official_sdk_app import run_official_sdk_script

pytestmark = [pytest.mark.node, pytest.mark.timeout(180)]

DATABASE = "notes"


@pytest.fixture
def host(abi_module: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {"AUTOPILOT_SYNC_HOST_JS_HEAP_MB": "48", "AUTOPILOT_SYNC_HOST_JS_CALL_TIMEOUT_MS": "3000"}
    process = start_host(tmp_path / "data", module=str(abi_module), database=DATABASE, env=env)
    try:
        yield process
    finally:
        process.stop()


async def test_sdk_subscribes_and_sees_inserts_updates_and_deletes(host: ServiceProcess) -> None:
    async with await connect(host.url, DATABASE) as conn:
        qs = await conn.subscribe(["SELECT * FROM note", "SELECT * FROM visitor"])
        await qs.applied()
        async with await connect(host.url, DATABASE) as other:  # another client's row is not visible here
            await (await other.subscribe(["SELECT * FROM visitor"])).applied()
            assert len(other.cache.rows("visitor")) == 1
        (visitor,) = conn.cache.rows("visitor")  # client_connected ran in the module for this connection
        assert visitor.conn == conn.connection_id and visitor.who == conn.identity
        assert '"sub"' in visitor.jwt  # the caller's JWT payload, read by the module through get_jwt_payload
        for owner, rank, text, tag in (("ann", 1, "a1", "t1"), ("ann", 2, "a2", "t2")):
            assert isinstance(await conn.call("add_note", owner, rank, text, tag), ReducerCommitted)
        assert sorted((n.id, n.text) for n in conn.cache.rows("note")) == [(1, "a1"), (2, "a2")]
        await conn.call("rename", 2, "A2")
        assert sorted((n.id, n.text) for n in conn.cache.rows("note")) == [(1, "a1"), (2, "A2")]
        await conn.call("remove_ranks", "ann", 1, 2)
        assert [n.id for n in conn.cache.rows("note")] == [2]


async def test_every_module_failure_is_a_typed_result_and_the_host_keeps_serving(host: ServiceProcess) -> None:
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM note"])).applied()
        assert isinstance(await conn.call("add_note", "ann", 1, "a1", "t1"), ReducerCommitted)
        refused = await conn.call("refuse")
        assert isinstance(refused, ReducerFailed) and refused.message == "not allowed for this caller"
        duplicate = await conn.call("add_note", "bob", 1, "dup", "t1")
        assert isinstance(duplicate, ReducerInternalError) and "UniqueAlreadyExists" in duplicate.message
        thrown = await conn.call("explode")
        assert isinstance(thrown, ReducerInternalError) and "TypeError: a bug in the module" in thrown.message
        looped = await conn.call("spin")
        assert isinstance(looped, ReducerInternalError) and "time limit of 3 s" in looped.message
        hogged = await conn.call("hog")
        assert isinstance(hogged, ReducerInternalError)
        assert "heap limit of 48 MiB" in hogged.message or "time limit" in hogged.message
        assert isinstance(await conn.call("add_note", "bob", 2, "b2", "t2"), ReducerCommitted)
        assert sorted(n.text for n in conn.cache.rows("note")) == ["a1", "b2"]


async def test_scheduled_reducer_in_the_module_fires_and_subscribers_see_it(host: ServiceProcess) -> None:
    async with await connect(host.url, DATABASE) as conn:
        seen: asyncio.Queue[str] = asyncio.Queue()
        conn.cache.on_insert("audit", lambda row: seen.put_nowait(row.line))
        await (await conn.subscribe(["SELECT * FROM audit"])).applied()
        assert isinstance(await conn.call("remind", 100, "r1"), ReducerCommitted)
        async with asyncio.timeout(10):
            while await seen.get() != "fired r1":
                pass


def test_the_official_typescript_sdk_drives_the_module(host: ServiceProcess, tmp_path: Path) -> None:
    script = Path(__file__).with_name("official_sdk_notes.mjs")
    observed = run_official_sdk_script(script, host.url, DATABASE, [], tmp_path)
    assert observed["results"] == {
        "add": "ok",
        "rename": "ok",
        "refuse": "SenderError: not allowed for this caller",
        "duplicate": "InternalError",
        "explode": "InternalError",
        "spin": "InternalError",
        "after": "ok",
    }
    assert observed["seen"] == ["insert 1 a1", "update a1->A1", "insert 2 b2"]
    assert observed["rows"] == ["1:A1", "2:b2"]


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (None, "does not exist"),
        ("throw new RangeError('broken at import');\n", "RangeError: broken at import"),
        ("export default {};\n", "neither called register_hooks nor default-exports a schema"),
    ],
)
def test_a_module_that_cannot_load_stops_the_host_with_the_reason(
    tmp_path: Path, source: str | None, said: str
) -> None:
    if shutil.which("node") is None:
        pytest.skip("node missing")
    module = tmp_path / "broken.js"
    if source is not None:
        module.write_text(source)
    with pytest.raises(ServiceStartError) as failure:
        start_host(tmp_path / "data", module=str(module), database=DATABASE)
    assert said in str(failure.value)
    assert "Traceback" not in str(failure.value)
