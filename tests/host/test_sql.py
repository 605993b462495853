"""The SQL subset: what compiles, what is refused (and how it says so), how plans read the tables, `/sql` JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autopilot_sync.examples.chat import module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.sql import (
    CompareOp,
    Comparison,
    SqlContext,
    SqlError,
    access_path,
    compile_query,
    compile_subscription,
    execute,
    sql_json_result,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(1))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    engine = HostEngine(module, tmp_path, "chat", EngineConfig(fsync=False))
    await engine.start()
    for name, age in (("ada", 36), ("bob", 20), ("cy", 36), ("di", 50)):
        await engine.call_reducer("add_person", (name, age), ALICE)
    await engine.call_reducer("send_message", ("hi",), ALICE)
    yield engine
    await engine.stop()


def names(engine: HostEngine, sql: str) -> list[str]:
    plan = compile_query(sql, SqlContext(engine.datastore, sender=ALICE.identity))
    return sorted(str(row[1]) for row in execute(plan, engine.datastore).rows)


async def test_predicates_filter_rows(engine: HostEngine) -> None:
    assert names(engine, "SELECT * FROM person") == ["ada", "bob", "cy", "di"]
    assert names(engine, "SELECT * FROM person WHERE age = 36") == ["ada", "cy"]
    assert names(engine, "SELECT * FROM person WHERE age <> 36") == ["bob", "di"]
    assert names(engine, "SELECT * FROM person WHERE age != 36 AND name = 'bob'") == ["bob"]
    assert names(engine, "SELECT * FROM person WHERE age < 30 OR age >= 50") == ["bob", "di"]
    assert names(engine, "SELECT * FROM person WHERE 30 < age AND (name = 'ada' OR name = 'di')") == ["ada", "di"]
    assert names(engine, "SELECT p.* FROM person p WHERE p.age > 36") == ["di"]
    assert names(engine, "select * from person where id <= 2") == ["ada", "bob"]


async def test_literal_kinds_are_checked_against_column_types(engine: HostEngine) -> None:
    ctx = SqlContext(engine.datastore, sender=ALICE.identity)
    hex_identity = "0x" + ALICE.identity.hex
    plan = compile_subscription(f"SELECT * FROM message WHERE sender = {hex_identity}", ctx)
    assert plan.predicate == Comparison("sender", 1, CompareOp.EQ, ALICE.identity)
    assert len(execute(plan, engine.datastore).rows) == 1
    assert compile_subscription("SELECT * FROM message WHERE sender = :sender", ctx).predicate == plan.predicate
    assert compile_subscription(f"SELECT * FROM message WHERE sender = X'{ALICE.identity.hex}'", ctx).predicate
    assert compile_subscription("SELECT * FROM all_types WHERE b = true AND f64 > 1 AND i8 = -5", ctx)
    assert compile_subscription("SELECT * FROM all_types WHERE bytes = 0xdeadbeef", ctx)
    assert compile_subscription("SELECT * FROM all_types WHERE ts > '2024-01-01T00:00:00Z'", ctx)
    for bad, fragment in (
        ("SELECT * FROM person WHERE age = 'old'", "cannot be parsed as type `U32`"),
        ("SELECT * FROM person WHERE age = 1.5", "cannot be parsed as type `U32`"),
        ("SELECT * FROM person WHERE age = -1", "cannot be parsed as type `U32`"),
        ("SELECT * FROM all_types WHERE u8 = 256", "cannot be parsed as type `U8`"),
        ("SELECT * FROM person WHERE name = 5", "cannot be parsed as type `String`"),
        ("SELECT * FROM all_types WHERE b = 1", "cannot be parsed as type `Bool`"),
        ("SELECT * FROM message WHERE sender = 0x01", "cannot be parsed as type `Identity`"),
        ("SELECT * FROM all_types WHERE b > true", "Invalid binary operator `>` for type `Bool`"),
        ("SELECT * FROM all_types WHERE list = 1", "Invalid binary operator"),
        ("SELECT * FROM person WHERE nope = 1", "does not have a field `nope`"),
        ("SELECT * FROM person WHERE x.age = 1", "`x` is not in scope"),
    ):
        with pytest.raises(SqlError, match=fragment.replace("`", ".").replace("(", ".").replace(")", ".")):
            compile_subscription(bad, ctx)


async def test_outside_the_subset_is_refused_by_name(engine: HostEngine) -> None:
    ctx = SqlContext(engine.datastore)
    for bad, fragment in (
        ("DELETE FROM person", "Non-SELECT"),
        ("INSERT INTO person VALUES (1, 'x', 2)", "Non-SELECT"),
        ("UPDATE person SET age = 1", "Non-SELECT"),
        ("SELECT * FROM person JOIN message ON person.id = message.id", "SELECT . is not supported for joins"),
        ("SELECT * FROM person, message", "Implicit joins"),
        ("SELECT * FROM person ORDER BY id", "ORDER"),
        ("SELECT * FROM person GROUP BY id", "GROUP"),
        ("SELECT * FROM person WHERE age IN (1, 2)", "Unsupported expression"),
        ("SELECT * FROM person WHERE age = age", "comparing two columns"),
        ("SELECT * FROM person; SELECT * FROM message", "Multiple SQL statements"),
        ("SELECT * FROM nope", "no such table"),
        ("SELECT * FROM st_client", "no such table"),
        ("", "Empty SQL query"),
        ("SELEC * FROM", "sql parser error: Expected an SQL statement, found: SELEC"),
        ("SELECT name FROM person", "Column projections are not supported in subscriptions"),
        ("SELECT * FROM person LIMIT 1", "LIMIT"),
        ("SELECT COUNT(*) AS n FROM person", "Column projections"),
    ):
        with pytest.raises(SqlError, match=fragment):
            compile_subscription(bad, ctx)
    with pytest.raises(SqlError, match="column aliases"):
        compile_query("SELECT COUNT(*) FROM person", ctx)
    assert compile_subscription("SELECT * FROM st_client", SqlContext(engine.datastore, private_visible=True))


async def test_one_off_projection_count_and_limit(engine: HostEngine) -> None:
    ctx = SqlContext(engine.datastore)
    projected = execute(compile_query("SELECT name, age AS years FROM person WHERE age = 36", ctx), engine.datastore)
    assert sorted(projected.rows) == [("ada", 36), ("cy", 36)]
    counted = execute(compile_query("SELECT COUNT(*) AS n FROM person WHERE age > 20", ctx), engine.datastore)
    assert counted.rows == ((3,),)
    limited = execute(compile_query("SELECT * FROM person LIMIT 2", ctx), engine.datastore)
    assert len(limited.rows) == 2 and limited.row_bytes is not None and len(limited.row_bytes) == 2


async def test_index_is_used_for_equality_and_range(engine: HostEngine) -> None:
    ctx = SqlContext(engine.datastore)
    store = engine.datastore["person"]
    assert access_path(compile_query("SELECT * FROM person WHERE name = 'ada'", ctx), store).kind == "index_eq"
    assert access_path(compile_query("SELECT * FROM person WHERE age = 1 AND id > 2", ctx), store).kind == (
        "index_range"
    )
    assert access_path(compile_query("SELECT * FROM person WHERE age = 36", ctx), store).kind == "scan"
    assert access_path(compile_query("SELECT * FROM person WHERE name = 'a' OR id = 1", ctx), store).kind == "scan"
    # Strict and inclusive bounds on the index agree with a scan.
    for op in ("<", "<=", ">", ">="):
        via_index = names(engine, f"SELECT * FROM person WHERE id {op} 2")
        via_scan = names(engine, f"SELECT * FROM person WHERE id {op} 2 OR age = 999")
        assert via_index == via_scan, op


async def test_sql_json_result_matches_the_real_host_shape(engine: HostEngine) -> None:
    (result,) = sql_json_result(engine.datastore, "SELECT * FROM person WHERE name = 'ada'")
    assert set(result) == {"schema", "rows", "total_duration_micros", "stats"}
    assert result["schema"]["elements"][0] == {"name": {"some": "id"}, "algebraic_type": {"U64": []}}
    assert result["rows"] == [[1, "ada", 36]]
    assert result["stats"] == {"rows_inserted": 0, "rows_deleted": 0, "rows_updated": 0}
    (counted,) = sql_json_result(engine.datastore, "SELECT COUNT(*) AS total FROM person")
    assert counted["schema"] == {"elements": [{"name": {"some": "total"}, "algebraic_type": {"U64": []}}]}
    assert counted["rows"] == [[4]]
    (messages,) = sql_json_result(engine.datastore, "SELECT sender FROM message")
    assert messages["rows"] == [[[f"0x{ALICE.identity.value:x}"]]]  # a product is an array; u256 is minimal hex
    with pytest.raises(SqlError):
        sql_json_result(engine.datastore, "DELETE FROM person")
