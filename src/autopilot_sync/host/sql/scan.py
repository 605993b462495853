"""How a plan finds its rows in one table: a B-tree index when a top-level conjunct allows it, else a scan.

An equality (or range) on an index's leading column picks the index; the caller still tests every candidate row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_sync.host.datastore import TOP, TableIndex, TableStore
from autopilot_sync.host.logtable import RowRun
from autopilot_sync.host.sql.plan import CompareOp, Comparison, Predicate, Row, SelectPlan, conjuncts


@dataclass(frozen=True, slots=True)
class AccessPath:
    """How a plan reads its table: one index equality, one index range, or a full scan (for tests and EXPLAIN).

    `column` is the index column the lookup ends on (the range column, or the last equality); `prefix` counts the
    leading index columns fixed by equalities (a composite index: `stream_id = x AND seq > n` is a range over the
    `(stream_id, seq)` index with one fixed column, so it reads only the rows after `n`).
    """

    kind: str  # "index_eq" | "index_range" | "scan"
    column: str | None = None
    prefix: int = 0


@dataclass(frozen=True, slots=True)
class _Lookup:
    index: Any
    equal: tuple[Comparison, ...]
    bound: Comparison | None


def access_path(plan: SelectPlan, store: TableStore) -> AccessPath:
    """The cheapest way this host knows to find the plan's candidate rows."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        return AccessPath("scan")
    if chosen.bound is not None:
        return AccessPath("index_range", chosen.bound.column, len(chosen.equal))
    return AccessPath("index_eq", chosen.equal[-1].column, len(chosen.equal))


def _choose_index(plan: SelectPlan, store: TableStore) -> _Lookup | None:
    """The index whose leading columns the most top-level equalities fix, then one range on the next column; ties go
    to the index with fewer columns (a point lookup). Without any equality: a range on some index's leading column."""
    equal: dict[str, Comparison] = {}
    ranges: dict[str, Comparison] = {}
    for term in conjuncts(plan.predicate):
        if not isinstance(term, Comparison) or term.op is CompareOp.NE:
            continue
        if term.op is CompareOp.EQ:
            equal.setdefault(term.column, term)
        else:
            ranges.setdefault(term.column, term)
    best: _Lookup | None = None
    best_score = (0, False, 0)
    for group, index in store.indexes.items():
        fixed = 0
        while fixed < len(group) and group[fixed] in equal:
            fixed += 1
        bound = ranges.get(group[fixed]) if fixed < len(group) else None
        if fixed == 0 and bound is None:
            continue
        score = (fixed, bound is not None, -len(group))
        if score > best_score:
            best_score = score
            best = _Lookup(index, tuple(equal[column] for column in group[:fixed]), bound)
    return best


def candidate_rows(plan: SelectPlan, store: TableStore) -> Iterator[tuple[bytes, Row]]:
    """Rows that may match: from an index when a conjunct allows it, else every row. The caller still filters."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        yield from list(store.rows.items())
        return
    prefix = tuple(term.value for term in chosen.equal)
    bound = chosen.bound
    keys: Iterable[bytes] = chosen.index.lookup(prefix) if bound is None else _bounded(chosen.index, prefix, bound)
    rows = store.rows
    for row_bytes in list(keys):
        row = rows.get(row_bytes)
        if row is not None:
            yield row_bytes, row


def _bounded(index: Any, prefix: Row, bound: Comparison) -> Iterator[bytes]:
    """Keys of `index` that start with `prefix` and whose next column satisfies `bound` (a strict bound on an index
    with more columns after it keeps the boundary rows; the caller's predicate check drops them)."""
    op, value = bound.op, bound.value
    exact = len(index.columns) == len(prefix) + 1
    if op in (CompareOp.GT, CompareOp.GE):
        low: Row | None = (*prefix, value)
        high: Row | None = (*prefix, TOP) if prefix else None
        inclusive = (op is CompareOp.GE or not exact, True)
    else:
        low = prefix or None
        high = (*prefix, value) if exact else (*prefix, value, TOP)
        inclusive = (True, op is CompareOp.LE or not exact)
    return index.range(low, high, inclusive)  # type: ignore[no-any-return]


def covered_bytes(terms: Sequence[Predicate], store: TableStore) -> Iterator[bytes] | None:
    """The bytes of exactly the rows satisfying `terms`, in key order, when one index answers all of them: equalities
    on its leading columns, then at most one lower and one upper bound on the next. No row is decoded (what a
    resume from seq N needs: `stream_id = 'x' AND seq > N`). None when the terms need a row to be tested.
    """
    equal: dict[int, Any] = {}
    bounds: dict[int, list[Comparison]] = {}
    for term in terms:
        if not isinstance(term, Comparison) or term.op is CompareOp.NE:
            return None
        if term.op is CompareOp.EQ:
            if term.position in equal:
                return None
            equal[term.position] = term.value
        else:
            bounds.setdefault(term.position, []).append(term)
    if not equal or len(bounds) > 1:
        return None
    for index in store.indexes.values():
        width = len(equal)
        if set(index.positions[:width]) != set(equal) or len(index.positions) < width + len(bounds):
            continue
        prefix = tuple(equal[p] for p in index.positions[:width])
        if not bounds:
            return index.lookup(prefix)
        ((position, terms_on),) = bounds.items()
        if index.positions[width] != position:
            continue
        found = _covering_range(index, prefix, terms_on, longer=len(index.positions) > width + 1)
        if found is not None:
            return found
    return None


def _covering_range(index: TableIndex, prefix: Row, terms: list[Comparison], *, longer: bool) -> Iterator[bytes] | None:
    """Rows of `index` whose key starts with `prefix` and whose next column satisfies `terms` (one lower, one upper
    bound at most). `longer`: keys have columns after the bounded one, so a bound covers every key it prefixes."""
    low: Comparison | None = None
    high: Comparison | None = None
    for term in terms:
        if term.op in (CompareOp.GT, CompareOp.GE) and low is None:
            low = term
        elif term.op in (CompareOp.LT, CompareOp.LE) and high is None:
            high = term
        else:
            return None
    low_key: Row = prefix if low is None else (*prefix, low.value)
    high_key: Row = (*prefix, TOP) if high is None else (*prefix, high.value)
    low_inclusive = low is None or low.op is CompareOp.GE
    high_inclusive = high is None or high.op is CompareOp.LE
    if longer:
        if not low_inclusive:
            low_key, low_inclusive = (*low_key, TOP), True
        if high is not None and high_inclusive:
            high_key = (*high_key, TOP)
    return index.range(low_key, high_key, (low_inclusive, high_inclusive))


def matching_bytes(plan: SelectPlan, store: TableStore) -> list[bytes] | RowRun | None:
    """The bytes of every row a single-table plan selects, honouring LIMIT, when an index answers its predicate
    alone (`covered_bytes`); None when rows must be decoded and tested. A log table's run of one partition is
    passed on as it is (`RowRun`: packed into the row list without an object per row)."""
    if plan.join is not None:
        return None
    if plan.predicate is None:
        found: Iterable[bytes] = store.rows
    else:
        covered = covered_bytes(conjuncts(plan.predicate), store)
        if covered is None:
            return None
        found = covered
    if plan.limit is None:
        return found if isinstance(found, RowRun) else list(found)
    return list(itertools.islice(found, plan.limit))


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
