"""How a plan finds its rows in one table: a B-tree index when a top-level conjunct allows it, else a scan.

An equality (or range) on an index's leading column picks the index; the caller still tests every candidate row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from autopilot_sync.host.datastore import TOP, TableStore
from autopilot_sync.host.sql.plan import CompareOp, Comparison, Row, SelectPlan, conjuncts


@dataclass(frozen=True, slots=True)
class AccessPath:
    """How a plan reads its table: one index equality, one index range, or a full scan (for tests and EXPLAIN)."""

    kind: str  # "index_eq" | "index_range" | "scan"
    column: str | None = None


def access_path(plan: SelectPlan, store: TableStore) -> AccessPath:
    """The cheapest way this host knows to find the plan's candidate rows."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        return AccessPath("scan")
    term, _ = chosen
    return AccessPath("index_eq" if term.op is CompareOp.EQ else "index_range", term.column)


def _choose_index(plan: SelectPlan, store: TableStore) -> tuple[Comparison, Any] | None:
    best: tuple[Comparison, Any] | None = None
    for term in conjuncts(plan.predicate):
        if not isinstance(term, Comparison) or term.op is CompareOp.NE:
            continue
        try:
            index = store.index_for((term.column,))
        except KeyError:
            continue
        if term.op is CompareOp.EQ:
            return term, index
        if best is None:
            best = (term, index)
    return best


def candidate_rows(plan: SelectPlan, store: TableStore) -> Iterator[tuple[bytes, Row]]:
    """Rows that may match: from an index when a conjunct allows it, else every row. The caller still filters."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        yield from list(store.rows.items())
        return
    term, index = chosen
    if term.op is CompareOp.EQ:
        keys: Iterable[bytes] = index.lookup((term.value,))
    else:
        low = (term.value,) if term.op in (CompareOp.GT, CompareOp.GE) else None
        high = (term.value,) if term.op in (CompareOp.LT, CompareOp.LE) else None
        keys = _prefix_range(index, low, high, term.op)
    rows = store.rows
    for row_bytes in list(keys):
        row = rows.get(row_bytes)
        if row is not None:
            yield row_bytes, row


def _prefix_range(index: Any, low: Row | None, high: Row | None, op: CompareOp) -> Iterator[bytes]:
    # Index keys may be longer than one column; a one-column bound must then cover every key with that prefix, so use
    # inclusive bounds and let the caller's predicate check drop the boundary rows a strict operator excludes.
    if len(index.columns) > 1:
        if high is not None:
            high = (*high, TOP)
        return index.range(low, high)  # type: ignore[no-any-return]
    inclusive = (op is not CompareOp.GT, op is not CompareOp.LT)
    return index.range(low, high, inclusive)  # type: ignore[no-any-return]


def matching_rows(plan: SelectPlan, store: TableStore) -> list[tuple[bytes, Row]]:
    """Every (bytes, row) of the table the plan selects, honouring LIMIT."""
    out: list[tuple[bytes, Row]] = []
    limit = plan.limit
    if limit == 0:
        return out
    for row_bytes, row in candidate_rows(plan, store):
        if plan.matches(row):
            out.append((row_bytes, row))
            if limit is not None and len(out) >= limit:
                break
    return out
