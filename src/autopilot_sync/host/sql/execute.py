"""Running a compiled plan: a one-off query's rows (projected, counted, limited), the `/sql` body, a plan's rows."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.logtable import RowRun
from autopilot_sync.host.sql.compile import compile_query
from autopilot_sync.host.sql.joins import join_row_bytes, join_rows
from autopilot_sync.host.sql.plan import Row, SelectPlan, SqlContext
from autopilot_sync.host.sql.scan import matching_bytes, matching_rows
from autopilot_sync.host.sql.views import view_rows
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.sats_json import to_untyped_json
from autopilot_sync.spacetime.values import Identity


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A one-off query's answer: output rows as tuples (projected/counted) and, for whole-row plans, their bytes."""

    plan: SelectPlan
    rows: tuple[Row, ...]
    row_bytes: tuple[bytes, ...] | None
    duration_micros: int = field(default=0)


def execute(plan: SelectPlan, datastore: Datastore) -> QueryResult:
    """Run a compiled plan against the current state."""
    started = time.perf_counter_ns()
    if plan.view is not None:
        found = view_rows(plan, datastore)
        if plan.limit is not None and plan.count_alias is None:
            found = found[: plan.limit]
    elif plan.join is not None:
        unlimited = plan if plan.count_alias is None else dataclasses.replace(plan, limit=None)
        found = join_rows(unlimited, datastore)
    else:
        store = datastore[plan.table.name]
        counted = plan if plan.count_alias is None else SelectPlan(plan.sql, plan.table, plan.predicate)
        found = matching_rows(counted, store)
    if plan.count_alias is not None:
        rows: tuple[Row, ...] = () if plan.limit == 0 else ((len(found),),)
        return QueryResult(plan, rows, None, (time.perf_counter_ns() - started) // 1000)
    if plan.projection is None:
        return QueryResult(
            plan, tuple(r for _, r in found), tuple(b for b, _ in found), (time.perf_counter_ns() - started) // 1000
        )
    positions = [p.position for p in plan.projection]
    projected = tuple(tuple(row[i] for i in positions) for _, row in found)
    return QueryResult(plan, projected, None, (time.perf_counter_ns() - started) // 1000)


def sql_json_result(
    datastore: Datastore, sql: str, *, private_visible: bool = False, sender: Identity | None = None
) -> list[dict[str, Any]]:
    """The body of HTTP `POST /v1/database/:name/sql`: `[{schema, rows, total_duration_micros, stats}]`.

    Matches `SqlStmtResult` in the real host's `client-api-messages/src/http.rs`: `schema` is the SATS-JSON of the
    result's product type (`{"elements": [...]}`), `rows` are untyped SATS-JSON (each row a JSON array), `stats`
    counts writes (always zero here: only SELECT is served). Raises SqlError, which the route turns into a 400 with
    the message as the body; the route also sets `spacetime-execution-duration-micros` from `total_duration_micros`.
    """
    started = time.perf_counter_ns()
    plan = compile_query(sql, SqlContext(datastore, private_visible=private_visible, sender=sender))
    result = execute(plan, datastore)
    out_type = plan.output_type()
    rows = [to_untyped_json(out_type, row) for row in result.rows]
    return [
        {
            "schema": at.to_json(out_type)["Product"],
            "rows": rows,
            "total_duration_micros": (time.perf_counter_ns() - started) // 1000,
            "stats": {"rows_inserted": 0, "rows_deleted": 0, "rows_updated": 0},
        }
    ]


def plan_row_bytes(plan: SelectPlan, datastore: Datastore) -> list[bytes] | RowRun:
    """The bytes of every row a whole-row plan selects (as `plan_rows`), without decoding rows when an index answers
    the predicate alone: a subscription's initial rows, sent as stored (a log partition's run as a `RowRun`)."""
    if plan.view is not None:
        return [row_bytes for row_bytes, _ in view_rows(plan, datastore)]
    found = (
        join_row_bytes(plan, datastore) if plan.join is not None else matching_bytes(plan, datastore[plan.table.name])
    )
    if found is not None:
        return found
    return [row_bytes for row_bytes, _ in plan_rows(plan, datastore)]


def plan_rows(plan: SelectPlan, datastore: Datastore) -> list[tuple[bytes, Row]]:
    """Every (bytes, row) a whole-row plan selects, join or not (a joined row may repeat, once per partner)."""
    if plan.view is not None:
        return view_rows(plan, datastore)
    if plan.join is not None:
        return join_rows(plan, datastore)
    return matching_rows(plan, datastore[plan.table.name])
