"""Evaluating the one inner equi-join: the rows of a one-off join, and what join subscriptions maintain results with.

`join_rows` answers a join query on the current state; `JoinMirror` and `has_partner` are what the subscription
engine keeps a join's result at a commit offset with (see subscriptions.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from autopilot_sync.host.datastore import Datastore, TableStore
from autopilot_sync.host.logtable import LogRows, RowRun
from autopilot_sync.host.sql.plan import And, CompareOp, Comparison, Row, SelectPlan, conjuncts
from autopilot_sync.host.sql.scan import candidate_rows, covered_bytes


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def join_rows(plan: SelectPlan, datastore: Datastore) -> list[tuple[bytes, Row]]:
    """Rows of the projected table, one per matching (projected, joined) pair (bag semantics, as the real host's
    join), honouring LIMIT."""
    assert plan.join is not None
    spec = plan.join
    joined = datastore[spec.table.name]
    try:
        index: Any = joined.index_for((spec.right_column,))
        if index.columns != (spec.right_column,):
            index = None
    except KeyError:
        index = None
    by_value: dict[Any, list[Row]] | None = None
    if index is None:
        by_value = {}
        for row in joined.rows.values():
            by_value.setdefault(_hashable(row[spec.right_position]), []).append(row)
    out: list[tuple[bytes, Row]] = []
    if plan.limit == 0:
        return out
    # the projected table's own conjuncts pick its candidate rows through an index when they can
    width = len(plan.table.columns)
    own = tuple(t for t in conjuncts(plan.predicate) if isinstance(t, Comparison) and t.position < width)
    scan = SelectPlan(plan.sql, plan.table, And(own) if own else None)
    for row_bytes, row in candidate_rows(scan, datastore[plan.table.name]):
        value = _hashable(row[spec.left_position])
        if by_value is not None:
            partners: Iterable[Row] = by_value.get(value, ())
        else:
            partners = [joined.rows[b] for b in index.lookup((value,))]
        for partner in partners:
            if plan.matches(row + partner):
                out.append((row_bytes, row))
                if plan.limit is not None and len(out) >= plan.limit:
                    return out
    return out


def join_row_bytes(plan: SelectPlan, datastore: Datastore) -> list[bytes] | RowRun | None:
    """`join_rows`' bytes without decoding a projected row, when that is possible; None when it is not.

    Possible when an index answers the projected table's own conjuncts alone (`covered_bytes`), one of them fixes
    the join column (so every candidate has the same partners), and every other conjunct is about the joined row:
    then whether a candidate is in the result, and how many times, is the same for all of them. This is a resume
    under row-level security (`stream_id = 'x' AND seq > N`, joined with the caller's reader grant).
    """
    assert plan.join is not None
    spec = plan.join
    width = len(plan.table.columns)
    terms = conjuncts(plan.predicate)
    if not all(isinstance(t, Comparison) for t in terms):
        return None
    own = [t for t in terms if isinstance(t, Comparison) and t.position < width]
    theirs = [t for t in terms if isinstance(t, Comparison) and t.position >= width]
    fixed = [t.value for t in own if t.position == spec.left_position and t.op is CompareOp.EQ]
    if not fixed:
        return None
    covered = covered_bytes(own, datastore[plan.table.name])
    if covered is None:
        return None
    joined = datastore[spec.table.name]
    blank = (None,) * width
    partners = [row for _, row in _partners(joined, spec.right_column, spec.right_position, fixed[0])]
    times = sum(1 for partner in partners if all(t.test(blank + partner) for t in theirs))
    if times == 0 or plan.limit == 0:
        return []
    if times == 1 and plan.limit is None and isinstance(covered, RowRun):
        return covered  # one partition's run, packed by the caller without an object per row
    out = list(covered)
    if times > 1:
        out = [row_bytes for row_bytes in out for _ in range(times)]
    return out if plan.limit is None else out[: plan.limit]


def _partners(store: TableStore, column: str, position: int, value: Any) -> list[tuple[bytes, Row]]:
    """Rows of `store` whose `column` equals `value`: through an index on exactly that column, else a scan."""
    try:
        index = store.index_for((column,))
    except KeyError:
        index = None
    if index is not None and index.columns == (column,):
        return [(b, store.rows[b]) for b in index.lookup((value,))]
    return [(b, row) for b, row in store.rows.items() if _hashable(row[position]) == _hashable(value)]


#: One transaction's change to one table: (inserts, deletes), each (row bytes, row).
Change = tuple[Iterable[tuple[bytes, Row]], Iterable[tuple[bytes, Row]]]
#: The changes to a table by the transactions applied after an offset (oldest first): what a log mirror undoes.
ChangesAfter = Callable[[str, int], Sequence[Change]]


def _nothing_after(_table: str, _offset: int) -> Sequence[Change]:
    return ()


class JoinMirror:
    """The rows of one table grouped by one column, as of a commit offset: what a join subscription reads.

    The subscription engine hears of a transaction only once it is durable, when the datastore may already hold later
    transactions; a join's result at offset k needs both tables at offset k, so the engine keeps this copy (the row
    bytes, grouped) and advances it with every committed transaction it is told about. Rows are kept as bytes and
    decoded when read, as the datastore keeps them: a mirror of the events table must not hold a decoded copy of every
    event. When an index leads with the column, the mirror is built from it without decoding a row.

    A log-shaped table grouped by its partition column (the events table under a row-level security join) keeps no
    copy at all: its rows live in one buffer per partition, so a copy would be a new bytes object per event (~460
    bytes each). Its bucket is read from the store's partition as it is now, with the transactions applied after the
    mirror's offset undone (`changes_after`: rows they inserted left out, rows they deleted put back). The default
    `changes_after` says none were: for callers that deliver each transaction as soon as it is applied.
    """

    def __init__(
        self, store: TableStore, position: int, offset: int, changes_after: ChangesAfter = _nothing_after
    ) -> None:
        self.position = position
        self.offset = offset
        self.by_value: dict[Any, dict[bytes, None]] = {}
        self._rows = store.rows
        self._decode = store.decode
        self._table = store.table.name
        self._changes_after = changes_after
        self._log: LogRows | None = None
        if store.table.event:
            return
        if store.log and position == 0 and isinstance(store.rows, LogRows):
            self._log = store.rows
            return
        column = store.table.columns[position][0]
        # An index on the column alone has one entry per value (the resume's `stream_id`), not one per row.
        indexes = sorted(store.indexes.values(), key=lambda i: len(i.columns))
        index = next((i for i in indexes if i.columns[0] == column), None)
        if index is None:
            for row_bytes, row in store.rows.items():
                self.by_value.setdefault(_hashable(row[position]), {})[row_bytes] = None
            return
        for key, found in index.entries.items():
            bucket = self.by_value.setdefault(_hashable(key[0]), {})
            if type(found) is bytes:
                bucket[found] = None
            else:
                bucket.update(dict.fromkeys(found))

    def _log_bucket(self, log: LogRows, value: Any) -> dict[bytes, None]:
        """A log partition's row bytes as of `offset`: as stored now, the later transactions undone (newest first)."""
        part = log.partitions.get(value) if isinstance(value, str) else None
        bucket = dict.fromkeys(part.rows_between(part.head, len(part.seqs))) if part else {}
        position = self.position
        for inserts, deletes in reversed(self._changes_after(self._table, self.offset)):
            for row_bytes, row in inserts:
                if row[position] == value:
                    bucket.pop(row_bytes, None)
            for row_bytes, row in deletes:
                if row[position] == value:
                    bucket[row_bytes] = None
        return bucket

    def bucket(self, value: Any) -> dict[bytes, None]:
        """The bytes of the rows whose column equals `value`, not decoded (empty when there are none)."""
        if self._log is not None:
            return self._log_bucket(self._log, value) or _NO_BYTES
        return self.by_value.get(_hashable(value)) or _NO_BYTES

    def row(self, row_bytes: bytes) -> Row:
        """One row of a bucket, decoded (from the datastore's cache when it still holds it)."""
        return self._rows.get(row_bytes) or self._decode(row_bytes)

    def get(self, value: Any) -> dict[bytes, Row]:
        """Rows whose column equals `value`, decoded (from the datastore's cache when it still holds them)."""
        bucket = self.bucket(value)
        if not bucket:
            return _EMPTY
        rows, decode = self._rows, self._decode
        return {row_bytes: rows.get(row_bytes) or decode(row_bytes) for row_bytes in bucket}

    def apply(self, offset: int, inserts: Iterable[tuple[bytes, Row]], deletes: Iterable[tuple[bytes, Row]]) -> None:
        """Advance to `offset` by one transaction's change to this table (a no-op for offsets already included)."""
        if offset <= self.offset:
            return
        self.offset = offset
        if self._log is not None:
            return  # read from the store, the transactions after `offset` undone
        position = self.position
        for row_bytes, row in deletes:
            value = _hashable(row[position])
            bucket = self.by_value.get(value)
            if bucket is not None:
                bucket.pop(row_bytes, None)
                if not bucket:
                    del self.by_value[value]
        for row_bytes, row in inserts:
            self.by_value.setdefault(_hashable(row[position]), {})[row_bytes] = None


_EMPTY: dict[bytes, Row] = {}
_NO_BYTES: dict[bytes, None] = {}


def has_partner(plan: SelectPlan, row: Row, joined: JoinMirror) -> bool:
    """Whether a row of the projected table joins some row of `joined` satisfying the WHERE clause."""
    assert plan.join is not None
    return any(plan.matches(row + partner) for partner in joined.get(row[plan.join.left_position]).values())


#: partner verdicts one `JoinTest` remembers before it starts over (a subscriber's grants on its streams are few)
MAX_PARTNER_VERDICTS = 64


class JoinTest:
    """`has_partner` for one join query, with its WHERE clause split by side: what a commit asks per changed row.

    Why: the subscription engine asks on every commit whether a changed row of the projected table has a partner.
    `has_partner` walks the predicate tree on `row + partner` for every partner, decoding each one. When the WHERE
    clause is a conjunction of comparisons (every row-level security join is: `t.stream_id = 'x' AND ... AND
    reader.reader_identity = :sender`), the projected row's terms are tested on it once, and the joined row's terms
    depend on that row alone, so their verdict is remembered by the joined row's bytes (its identity: equal bytes,
    equal row), bounded by `MAX_PARTNER_VERDICTS`. Any other WHERE clause takes `has_partner` as it is.
    The answer is the same as `has_partner`'s in every case (tests/host/test_subscription_joins.py).
    """

    __slots__ = ("_left", "_own", "_plan", "_split", "_theirs", "_verdicts", "fixed")

    def __init__(self, plan: SelectPlan, fixed: tuple[int, Any] | None) -> None:
        """`fixed`: the query's top-level `column = literal` on its projected table, if any (the caller's to find)."""
        assert plan.join is not None
        self.fixed = fixed
        self._plan = plan
        self._left = plan.join.left_position
        width = len(plan.table.columns)
        terms = conjuncts(plan.predicate)
        self._split = all(isinstance(t, Comparison) for t in terms)
        comparisons = [t for t in terms if isinstance(t, Comparison)]
        self._own = tuple(t for t in comparisons if t.position < width)
        self._theirs = tuple(
            dataclasses.replace(t, position=t.position - width) for t in comparisons if t.position >= width
        )
        self._verdicts: dict[bytes, bool] = {}

    def has_partner(self, row: Row, joined: JoinMirror) -> bool:
        """Whether `row` (of the projected table) joins some row of `joined` satisfying the WHERE clause."""
        if not self._split:
            return has_partner(self._plan, row, joined)
        for term in self._own:
            if not term.test(row):
                return False
        bucket = joined.bucket(row[self._left])
        if not self._theirs:
            return bool(bucket)
        verdicts = self._verdicts
        for row_bytes in bucket:
            verdict = verdicts.get(row_bytes)
            if verdict is None:
                if len(verdicts) >= MAX_PARTNER_VERDICTS:
                    verdicts.clear()
                partner = joined.row(row_bytes)
                verdict = verdicts[row_bytes] = all(term.test(partner) for term in self._theirs)
            if verdict:
                return True
        return False
