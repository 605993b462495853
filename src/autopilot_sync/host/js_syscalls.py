"""`EngineSyscalls`: a TypeScript module's `spacetime:sys@2.x` syscalls, answered from the engine's transaction.

The byte-level ABI of SpacetimeDB's V8 host (`crates/core/src/host/v8/syscall/`), as the pinned library
(`spacetimedb` 2.10.1, `src/server/runtime.ts`) uses it: tables and indexes by id, rows as BSATN, scans through row
iterators, errors as the ABI's errno numbers (the runner turns them into the library's error classes). Ids are
positions in the module's own definition: table id = index in `definition.tables`, index id = position in the list
of every table's indexes, in definition order. Names resolve by the canonical name or by the source name the library
knows a table or index by (`chatMessage`, `chatMessage_sentBy_idx_btree`). Every write goes through the engine's
`Transaction`, so a failed call rolls back like a Python reducer's.

Between calls there is no transaction: a syscall then answers `NOT_IN_TRANSACTION`, as SpacetimeDB's does.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import TOP, Datastore, TableIndex, TableStore, UniqueConstraintError
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.jsmodule.errors import SyscallRefusedError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import Identity

#: Module output goes here (the `cli` helper's logs route reads this logger), with `extra={"reducer": name}`.
MODULE_LOG = logging.getLogger("autopilot_sync.module_log")

# Errno numbers of SpacetimeDB's module ABI (`crates/primitives/src/errno.rs`; the library's `errors.ts`).
HOST_CALL_FAILURE = 1
NOT_IN_TRANSACTION = 2
BSATN_DECODE_ERROR = 3
NO_SUCH_TABLE = 4
NO_SUCH_INDEX = 5
NO_SUCH_ITER = 6
WRONG_INDEX_ALGO = 10
UNIQUE_ALREADY_EXISTS = 12
INDEX_NOT_UNIQUE = 14
NO_SUCH_ROW = 15
WOULD_BLOCK_TRANSACTION = 17
HTTP_ERROR = 21

#: SpacetimeDB's `LogLevel` (error 0 … trace 4, panic 101) as Python logging levels.
_LOG_LEVELS = {
    0: logging.ERROR,
    1: logging.WARNING,
    2: logging.INFO,
    3: logging.DEBUG,
    4: logging.DEBUG,
    101: logging.CRITICAL,
}
#: Bound tags of the library's range encoding (`Bound`: included, excluded, unbounded).
_INCLUDED, _EXCLUDED, _UNBOUNDED = 0, 1, 2
#: Most live row iterators one call may hold (a module that never closes them cannot grow the host without bound).
MAX_ITERATORS = 4096
#: A scan whose last argument is this asks for its rows in the reply when they are few (see `_scan_reply`).
WITH_ROWS = "rows"
#: Most bytes of rows a scan reply carries inline; a bigger result opens a host iterator as before.
INLINE_ROWS_MAX = 64 * 1024

ScheduleImmediate = Callable[[str, bytes], None]
"""Runs a reducer by name with BSATN arguments after the current transaction (`volatile_nonatomic_schedule_immediate`).
"""


@dataclass(frozen=True, slots=True)
class _IndexSlot:
    """One index of the definition: its table, the datastore index, key codecs and whether it is unique."""

    table_id: int
    store: TableStore
    index: TableIndex
    key_types: tuple[at.AlgebraicType, ...]
    ranged: bool

    @property
    def unique(self) -> bool:
        return self.index.unique


@dataclass(slots=True)
class _Call:
    """What one reducer call's syscalls act on: its transaction, caller, reducer name and open iterators."""

    tx: Transaction
    caller: Caller
    reducer: str
    iterators: dict[int, list[bytes]]
    next_iterator: int = 1
    #: a view's call: writes are refused and the tables it reads are recorded here (None for a reducer's call)
    reads: set[str] | None = None


class EngineSyscalls:
    """Answers one module's syscalls; `begin`/`end` bracket each reducer call with the engine's transaction."""

    def __init__(
        self,
        definition: md.ModuleDef,
        datastore: Datastore,
        *,
        table_source_names: tuple[str, ...] = (),
        index_source_names: tuple[str, ...] = (),
        identity: Identity | None = None,
    ) -> None:
        self.identity = identity if identity is not None else Identity(0)
        self.datastore = datastore
        self.schedule_immediate: ScheduleImmediate | None = None
        self._stores: list[TableStore] = [datastore[table.name] for table in definition.tables]
        self._table_ids: dict[str, int] = {}
        for table_id, table in enumerate(definition.tables):
            self._table_ids.setdefault(table.name, table_id)
        for table_id, source in enumerate(table_source_names):
            self._table_ids.setdefault(source, table_id)
        self._indexes: list[_IndexSlot] = []
        self._index_ids: dict[str, int] = {}
        for table_id, (table, store) in enumerate(zip(definition.tables, self._stores, strict=True)):
            names = store.table.column_names
            for index_def in table.indexes:
                group = tuple(names[c] for c in index_def.columns)
                slot = _IndexSlot(
                    table_id,
                    store,
                    store.index_for(group),
                    tuple(store.table.columns[c][1] for c in index_def.columns),
                    index_def.kind is not md.IndexKind.HASH,
                )
                if index_def.name:
                    self._index_ids.setdefault(index_def.name, len(self._indexes))
                self._indexes.append(slot)
        for index_id, source in enumerate(index_source_names[: len(self._indexes)]):
            if source:
                self._index_ids.setdefault(source, index_id)
        self._key_decoders: dict[tuple[int, int, int], bsatn.Decoder] = {}
        self._call: _Call | None = None
        self._held: list[Callable[[], None]] | None = None
        #: tables whose inserts may go one way (no generated columns: the library reads nothing back)
        self.one_way_tables = tuple(i for i, store in enumerate(self._stores) if not store.table.auto_inc)

    # ----- call bracketing -----

    def begin(self, tx: Transaction, caller: Caller, reducer: str, *, read_only: bool = False) -> None:
        """Syscalls from now on act on `tx` for `caller` (one call at a time, as transactions are).

        `read_only` (a view's call): every write is refused, and the tables the call reads are recorded in `reads`
        (the subscription engine re-runs a view only after a commit that touched one of them).
        """
        self._call = _Call(tx, caller, reducer, {}, reads=set() if read_only else None)

    @property
    def reads(self) -> frozenset[str]:
        """The tables the current read-only call has read so far (empty for a reducer's call)."""
        call = self._call
        return frozenset(call.reads) if call is not None and call.reads is not None else frozenset()

    def end(self) -> None:
        """The call is over: its iterators are dropped and syscalls answer `NOT_IN_TRANSACTION`."""
        self._call = None

    def hold_effects(self) -> None:
        """From now on console lines and immediate schedules wait for `release_effects` instead of happening.

        Why: a call whose one-way insert failed is run again (`JsModule.call_reducer`); what its void first run
        logged or scheduled must not happen twice. Refusals are still answered at once (nothing else depends on
        the effect itself), so the module sees the same answers either way.
        """
        self._held = []

    def release_effects(self, *, run: bool) -> None:
        """Stop holding; the held effects happen now, in order, when `run` (else they are dropped with the run)."""
        held, self._held = self._held, None
        if run and held:
            for effect in held:
                effect()

    @property
    def reducer(self) -> str | None:
        """The reducer being run, if any (for log records)."""
        return self._call.reducer if self._call is not None else None

    # ----- dispatch -----

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        """Answer one syscall: (value for the reply header, reply body); `SyscallRefusedError` carries an errno."""
        if fn == "console_log":
            self._console_log(args)
            return None, b""
        if fn == "identity":  # the module's identity needs no transaction
            return str(self.identity.value), b""
        method = _DISPATCH.get(fn)
        if method is None:
            raise SyscallRefusedError(HOST_CALL_FAILURE, f"unknown syscall {fn}")
        call = self._call
        if call is None:
            raise SyscallRefusedError(NOT_IN_TRANSACTION, f"{fn} called outside of a transaction")
        if call.reads is not None:
            self._note_read_only_call(call, fn, args)
        return method(self, call, args, body)

    def _note_read_only_call(self, call: _Call, fn: str, args: list[Any]) -> None:
        """A view's syscall: refuse a write (the view's `ctx.db` is read-only; a module reaching the raw syscall gets
        the host-call failure), and record the table a read touches."""
        assert call.reads is not None
        if fn in _WRITES:
            raise SyscallRefusedError(HOST_CALL_FAILURE, f"{fn}: a view is read-only and cannot write")
        if fn in _TABLE_READS and args:
            call.reads.add(self._store(args).table.name)
        elif fn in _INDEX_READS and args:
            call.reads.add(self._slot(args[0]).store.table.name)

    # ----- names and ids -----

    def _table_id_from_name(self, _call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        name = str(args[0]) if args else ""
        found = self._table_ids.get(name)
        if found is None:
            raise SyscallRefusedError(NO_SUCH_TABLE, f"no such table: {name}")
        return found, b""

    def _index_id_from_name(self, _call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        name = str(args[0]) if args else ""
        found = self._index_ids.get(name)
        if found is None:
            raise SyscallRefusedError(NO_SUCH_INDEX, f"no such index: {name}")
        return found, b""

    def _store(self, args: list[Any]) -> TableStore:
        table_id = args[0] if args else None
        if not isinstance(table_id, int) or not 0 <= table_id < len(self._stores):
            raise SyscallRefusedError(NO_SUCH_TABLE, f"no such table id: {table_id}")
        return self._stores[table_id]

    def _slot(self, index_id: Any) -> _IndexSlot:
        if not isinstance(index_id, int) or not 0 <= index_id < len(self._indexes):
            raise SyscallRefusedError(NO_SUCH_INDEX, f"no such index id: {index_id}")
        return self._indexes[index_id]

    # ----- reads -----

    def _row_count(self, _call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        return str(len(self._store(args))), b""

    def _table_scan(self, call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        return self._scan_reply(call, args, list(self._store(args).rows))

    def _index_scan_point(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        slot = self._slot(args[0] if args else None)
        return self._scan_reply(call, args, self._point_rows(slot, body))

    def _index_scan_range(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        slot = self._slot(args[0] if args else None)
        return self._scan_reply(call, args, self._range_rows(slot, args, body))

    def _scan_reply(self, call: _Call, args: list[Any], rows: list[bytes]) -> tuple[Any, bytes]:
        """A host iterator id; or, when the runner asked `WITH_ROWS` and the rows are small, the rows themselves.

        Why: a point scan (the sync module's idempotency and head lookups) is followed by `row_iter_bsatn_advance`,
        a second pipe round trip for usually zero or one row. Inline, the runner answers the library's iterator
        calls itself with the same whole-row, buffer-too-small and final-batch rules, and no host iterator exists.
        """
        if len(args) > 1 and args[-1] == WITH_ROWS and sum(map(len, rows)) <= INLINE_ROWS_MAX:
            return {"rows": [len(row) for row in rows]}, b"".join(rows)
        return self._open_iterator(call, rows), b""

    def _open_iterator(self, call: _Call, rows: list[bytes]) -> int:
        if len(call.iterators) >= MAX_ITERATORS:
            raise SyscallRefusedError(HOST_CALL_FAILURE, f"too many open row iterators (limit {MAX_ITERATORS})")
        iterator = call.next_iterator
        call.next_iterator += 1
        call.iterators[iterator] = rows
        return iterator

    def _advance(self, call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        """Fill up to `capacity` bytes with whole rows; the last batch is flagged `done` (the library negates it)."""
        iterator, capacity = [*args, None, 0][:2]
        pending = call.iterators.get(iterator) if isinstance(iterator, int) else None
        if pending is None:
            raise SyscallRefusedError(NO_SUCH_ITER, f"no such iterator: {iterator}")
        capacity = int(capacity) if isinstance(capacity, int) else 0
        out = bytearray()
        taken = 0
        while taken < len(pending) and len(out) + len(pending[taken]) <= capacity:
            out += pending[taken]
            taken += 1
        if taken == 0 and pending:
            return {"too_small": len(pending[0])}, b""
        del pending[:taken]
        done = not pending
        if done:
            del call.iterators[iterator]
        return {"done": done}, bytes(out)

    def _close(self, call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        iterator = args[0] if args else None
        if not isinstance(iterator, int) or call.iterators.pop(iterator, None) is None:
            raise SyscallRefusedError(NO_SUCH_ITER, f"no such iterator: {iterator}")
        return None, b""

    # ----- writes -----

    def _insert(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        store = self._store(args)
        row = self._insert_row(call.tx, store, _decode_row(store, body), body)
        return None, _generated(store, row)

    def _update(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        """Replace the row whose key in the unique index equals the new row's; NO_SUCH_ROW when there is none."""
        store = self._store(args)
        slot = self._slot(args[1] if len(args) > 1 else None)
        if slot.store is not store:
            raise SyscallRefusedError(NO_SUCH_INDEX, f"index {args[1]} is not an index of table {store.table.name}")
        if not slot.unique:
            raise SyscallRefusedError(INDEX_NOT_UNIQUE, f"index {args[1]} of {store.table.name} is not unique")
        values = _decode_row(store, body)
        old_bytes = next(iter(slot.index.lookup(slot.index.key_of(values))), None)
        if old_bytes is None:
            raise SyscallRefusedError(NO_SUCH_ROW, f"no row of {store.table.name} has that key")
        old = store.rows[old_bytes]
        call.tx.delete_bytes(store, old_bytes)
        try:
            row = self._insert_row(call.tx, store, values, body)
        except SyscallRefusedError:
            call.tx.insert(store, old)
            raise
        return None, _generated(store, row)

    @staticmethod
    def _insert_row(tx: Transaction, store: TableStore, values: tuple[Any, ...], body: bytes) -> tuple[Any, ...]:
        try:
            return tx.insert(store, values, body)
        except UniqueConstraintError as exc:
            raise SyscallRefusedError(UNIQUE_ALREADY_EXISTS, str(exc)) from None
        except ReducerError as exc:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, str(exc)) from None

    def _delete_point(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        slot = self._slot(args[0] if args else None)
        return _delete_rows(call.tx, slot.store, self._point_rows(slot, body)), b""

    def _delete_range(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        slot = self._slot(args[0] if args else None)
        return _delete_rows(call.tx, slot.store, self._range_rows(slot, args, body)), b""

    def _delete_all_by_eq(self, call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        """`relation` is a u32 count then that many BSATN rows; each equal row present is deleted."""
        store = self._store(args)
        if len(body) < 4:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "relation too short for its row count")
        (count,) = struct.unpack_from("<I", body, 0)
        offset = 4
        rows = []
        decode = store.codec.decode_prefix
        try:
            for _ in range(count):
                values, offset = decode(body, offset)
                rows.append(store.encode(store.make_row(values)))
        except (DecodeError, TypeError, ValueError) as exc:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, f"relation for {store.table.name}: {exc}") from None
        return _delete_rows(call.tx, store, rows), b""

    def _clear(self, call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        store = self._store(args)
        return str(_delete_rows(call.tx, store, list(store.rows))), b""

    # ----- the rest -----

    def _schedule_immediate(self, _call: _Call, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        if self.schedule_immediate is None:
            raise SyscallRefusedError(HOST_CALL_FAILURE, "this host cannot schedule reducers from here")
        if self._held is not None:
            self._held.append(functools.partial(self.schedule_immediate, str(args[0]) if args else "", body))
        else:
            self.schedule_immediate(str(args[0]) if args else "", body)
        return None, b""

    def _jwt_payload(self, call: _Call, args: list[Any], _body: bytes) -> tuple[Any, bytes]:
        """The caller's claims as JSON when asked for the caller's own connection; empty otherwise (internal calls)."""
        connection = call.caller.connection_id
        asked = args[0] if args else None
        if connection is None or str(asked) != str(connection.value):
            return None, b""
        return None, caller_jwt_payload(call.caller)

    def _console_log(self, args: list[Any]) -> None:
        level = args[0] if args and isinstance(args[0], int) else 2
        message = str(args[1]) if len(args) > 1 else ""
        reducer = self.reducer
        effect = functools.partial(
            MODULE_LOG.log, _LOG_LEVELS.get(level, logging.INFO), "%s", message, extra={"reducer": reducer}
        )
        if self._held is not None:
            self._held.append(effect)
        else:
            effect()

    # ----- keys -----

    def _key_decoder(self, slot: _IndexSlot, start: int, count: int) -> bsatn.Decoder:
        """Decodes `count` key columns from `start` (compiled once per slot and width: a lookup per scan syscall)."""
        cache_key = (id(slot), start, count)
        decode = self._key_decoders.get(cache_key)
        if decode is None:
            types = slot.key_types[start : start + count]
            key_type = at.product(*((f"{i}", t) for i, t in enumerate(types)))
            decode = bsatn.codec(key_type).decode_prefix
            self._key_decoders[cache_key] = decode
        return decode

    def _decode_key(self, slot: _IndexSlot, data: bytes, start: int, count: int) -> tuple[Any, ...]:
        decode = self._key_decoder(slot, start, count)
        try:
            values, end = decode(data, 0)
        except (DecodeError, ValueError) as exc:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, f"index key: {exc}") from None
        if end != len(data):
            raise SyscallRefusedError(BSATN_DECODE_ERROR, f"index key: {len(data) - end} trailing bytes")
        return tuple(values)

    def _point_rows(self, slot: _IndexSlot, body: bytes) -> list[bytes]:
        key = self._decode_key(slot, body, 0, len(slot.key_types))
        return list(slot.index.lookup(key))

    def _range_rows(self, slot: _IndexSlot, args: list[Any], body: bytes) -> list[bytes]:
        """Rows whose first `prefix_elems` key columns equal the prefix and whose next one is within the bounds."""
        if not slot.ranged:
            raise SyscallRefusedError(WRONG_INDEX_ALGO, "a hash index answers point scans only")
        try:
            prefix_len, prefix_elems, rstart_len, rend_len = (int(a) for a in args[1:5])
        except (TypeError, ValueError):
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "range scan arguments are not integers") from None
        if prefix_elems >= len(slot.key_types) or min(prefix_len, prefix_elems, rstart_len, rend_len) < 0:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "prefix length leaves no room for a range in ranged scan")
        if prefix_len + rstart_len + rend_len > len(body):
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "range scan lengths exceed the buffer")
        prefix = self._decode_key(slot, body[:prefix_len], 0, prefix_elems) if prefix_elems else ()
        if not prefix_elems and prefix_len:
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "a prefix was provided but `prefix_elems = 0`")
        start = self._bound(slot, prefix_elems, body[prefix_len : prefix_len + rstart_len])
        rend = body[prefix_len + rstart_len : prefix_len + rstart_len + rend_len]
        # The library sends an empty end for a scalar last term (`[x, y]` on a longer index): start and end agree.
        end = start if not rend else self._bound(slot, prefix_elems, rend)
        low: tuple[Any, ...] | None
        high: tuple[Any, ...] | None
        if start is None:
            low, low_inclusive = prefix, True
        elif start[0] == _INCLUDED:
            low, low_inclusive = (*prefix, start[1]), True
        else:
            low, low_inclusive = (*prefix, start[1], TOP), False
        if end is None:
            high, high_inclusive = (*prefix, TOP), True
        elif end[0] == _INCLUDED:
            high, high_inclusive = (*prefix, end[1], TOP), True
        else:
            high, high_inclusive = (*prefix, end[1]), False
        if not prefix and start is None:
            low = None
        if not prefix and end is None:
            high = None
        return list(slot.index.range(low, high, (low_inclusive, high_inclusive)))

    def _bound(self, slot: _IndexSlot, column: int, data: bytes) -> tuple[int, Any] | None:
        """A `Bound` of the key column at `column`: None when unbounded, else (tag, value)."""
        if not data or data[0] not in (_INCLUDED, _EXCLUDED, _UNBOUNDED):
            raise SyscallRefusedError(BSATN_DECODE_ERROR, "range bound: not a Bound")
        if data[0] == _UNBOUNDED:
            if len(data) != 1:
                raise SyscallRefusedError(BSATN_DECODE_ERROR, "range bound: trailing bytes after Unbounded")
            return None
        (value,) = self._decode_key(slot, data[1:], column, 1)
        return data[0], value


def caller_jwt_payload(caller: Caller) -> bytes:
    """What `get_jwt_payload` answers for the caller's own connection: its claims as JSON, or empty without any.

    `JsModule` sends it with each reducer call, so the runner answers that question without a round trip.
    """
    if caller.connection_id is None or not caller.claims:
        return b""
    return json.dumps(dict(caller.claims), separators=(",", ":")).encode()


def _decode_row(store: TableStore, body: bytes) -> tuple[Any, ...]:
    try:
        values, end = store.codec.decode_prefix(body, 0)
    except (DecodeError, ValueError) as exc:
        raise SyscallRefusedError(BSATN_DECODE_ERROR, f"row of {store.table.name}: {exc}") from None
    if end != len(body):
        raise SyscallRefusedError(BSATN_DECODE_ERROR, f"row of {store.table.name}: {len(body) - end} trailing bytes")
    return tuple(values)


def _generated(store: TableStore, row: tuple[Any, ...]) -> bytes:
    """The values of the table's sequence columns, in column order, as BSATN (what the library reads back)."""
    table = store.table
    if not table.auto_inc:
        return b""
    out = bytearray()
    for column in sorted(table.auto_inc, key=table.column_index):
        position = table.column_index(column)
        bsatn.codec(table.columns[position][1]).encode_into(out, row[position])
    return bytes(out)


def _delete_rows(tx: Transaction, store: TableStore, rows: Iterator[bytes] | list[bytes]) -> int:
    return sum(1 for row_bytes in list(rows) if tx.delete_bytes(store, row_bytes))


_DISPATCH: dict[str, Callable[[EngineSyscalls, _Call, list[Any], bytes], tuple[Any, bytes]]] = {
    "table_id_from_name": EngineSyscalls._table_id_from_name,
    "index_id_from_name": EngineSyscalls._index_id_from_name,
    "datastore_table_row_count": EngineSyscalls._row_count,
    "datastore_table_scan_bsatn": EngineSyscalls._table_scan,
    "datastore_index_scan_point_bsatn": EngineSyscalls._index_scan_point,
    "datastore_index_scan_range_bsatn": EngineSyscalls._index_scan_range,
    "row_iter_bsatn_advance": EngineSyscalls._advance,
    "row_iter_bsatn_close": EngineSyscalls._close,
    "datastore_insert_bsatn": EngineSyscalls._insert,
    "datastore_update_bsatn": EngineSyscalls._update,
    "datastore_delete_by_index_scan_point_bsatn": EngineSyscalls._delete_point,
    "datastore_delete_by_index_scan_range_bsatn": EngineSyscalls._delete_range,
    "datastore_delete_all_by_eq_bsatn": EngineSyscalls._delete_all_by_eq,
    "datastore_clear": EngineSyscalls._clear,
    "volatile_nonatomic_schedule_immediate": EngineSyscalls._schedule_immediate,
    "get_jwt_payload": EngineSyscalls._jwt_payload,
}

#: Syscalls that write (refused in a view's read-only call).
_WRITES = frozenset(
    {
        "datastore_insert_bsatn",
        "datastore_update_bsatn",
        "datastore_delete_by_index_scan_point_bsatn",
        "datastore_delete_by_index_scan_range_bsatn",
        "datastore_delete_all_by_eq_bsatn",
        "datastore_clear",
        "volatile_nonatomic_schedule_immediate",
    }
)
#: Reads naming a table id (first argument) or an index id: what a view's read set is made of.
_TABLE_READS = frozenset({"datastore_table_row_count", "datastore_table_scan_bsatn"})
_INDEX_READS = frozenset({"datastore_index_scan_point_bsatn", "datastore_index_scan_range_bsatn"})
