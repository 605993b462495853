"""The host engine: runs reducers as transactions, makes them durable, and tells subscribers in commit order.

Everything the network layers need goes through here: `connect`/`disconnect` run the lifecycle hooks, `call_reducer`
runs one reducer, `add_commit_listener` receives every committed transaction after it is durable (the subscription
engine's input). Reducers execute one at a time on the event loop; only the disk flush leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import DEFAULT_SEGMENT_MAX_BYTES, CommitLog, StorageFailedError, TailReport
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.module_api import Lifecycle, Module, ReducerDef, ReducerError, StartInfo
from autopilot_sync.host.snapshot import Snapshot, latest_snapshot, prune_snapshots, write_snapshot
from autopilot_sync.host.system_tables import ST_CLIENT, SYSTEM_TABLES
from autopilot_sync.host.transaction import (
    CommittedTx,
    DbView,
    ReducerContext,
    TableChange,
    Transaction,
)
from autopilot_sync.ops.drift import compare as compare_schemas
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

log = logging.getLogger(__name__)

_TX_RECORD = bsatn.codec(
    at.product(
        ("offset", at.U64),
        ("timestamp", at.TIMESTAMP),
        ("reducer", at.STRING),
        ("caller", at.IDENTITY),
        (
            "changes",
            at.array(
                at.product(("table", at.STRING), ("inserts", at.array(at.BYTES)), ("deletes", at.array(at.BYTES)))
            ),
        ),
    )
)

CommitListener = Callable[[CommittedTx], None]

HISTORY_DISCARDED_MARKER = "history-discarded"
"""File in the data dir saying recovery set history aside and the module's start hook has not yet committed."""


def record_offset(payload: bytes) -> int:
    """The transaction offset of a commit-log record, read without decoding the rest of it.

    BSATN encodes a product as its fields in order, so a `_TX_RECORD`'s first 8 bytes are its offset (u64 LE).
    """
    return int.from_bytes(payload[:8], "little")


class CallStatus(enum.Enum):
    """How a reducer call ended; the HTTP and WebSocket layers map each to their own wire form."""

    COMMITTED = "committed"
    USER_ERROR = "user_error"
    INTERNAL_ERROR = "internal_error"
    NO_SUCH_REDUCER = "no_such_reducer"
    BAD_ARGUMENTS = "bad_arguments"
    LIFECYCLE_REDUCER = "lifecycle_reducer"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The result of one reducer call.

    `offset` is the engine offset the outcome observed: its own commit's when it wrote, else the newest commit the
    reducer could see (a no-op success such as a duplicate append, or an error whose text reveals state). An answer
    reporting the outcome must not leave the host before that offset is durable (`HostEngine.durable_future`).
    """

    status: CallStatus
    timestamp: Timestamp
    message: str = ""
    tx: CommittedTx | None = None
    duration_micros: int = 0
    offset: int = 0


#: Outcomes of calls refused before the reducer ran (not reported to `on_call`, as they never were).
_REFUSED_BEFORE_RUNNING = frozenset(
    {CallStatus.NO_SUCH_REDUCER, CallStatus.LIFECYCLE_REDUCER, CallStatus.BAD_ARGUMENTS}
)


def _storage_failure(outcome: CallOutcome, error: BaseException) -> CallOutcome:
    """What a call that ran but could not be made durable reports instead of its own outcome."""
    return CallOutcome(CallStatus.INTERNAL_ERROR, outcome.timestamp, f"storage failed: {error}", offset=outcome.offset)


class ConnectionRejectedError(Exception):
    """`client_connected` refused the caller (its message says why) or the host cannot record the connection."""


class StorageUnavailableError(ConnectionRejectedError):
    """The commit log failed earlier: the host refuses every write, connections included, until restarted."""


class SchemaMismatchError(RuntimeError):
    """The data directory was written by a module with a different schema."""


@dataclass(slots=True)
class RecoveryReport:
    """What start-up found on disk: for logs, status pages and the recovery benchmark."""

    snapshot_offset: int = 0
    replayed: int = 0
    offset: int = 0
    seconds: float = 0.0
    #: Set exactly when this start set aside a tail of the log (acknowledged or not): history was discarded.
    tail: TailReport | None = None
    #: Log segments read (segments the snapshot wholly covers are never opened).
    segments_read: int = 0
    #: Log records read, including records of a read segment that the snapshot already covered.
    records_read: int = 0
    #: Damaged records skipped because the snapshot covers them (harmless, logged).
    covered_damage: int = 0
    cleaned_connections: int = 0
    fresh: bool = False


@dataclass(slots=True)
class _Pending:
    sequence: int
    tx: CommittedTx


@dataclass(slots=True)
class EngineConfig:
    """Storage knobs (from the host's settings)."""

    fsync: bool = True
    snapshot_every: int = 10_000
    #: Snapshots kept on disk; log segments older than the oldest kept one are deleted.
    snapshots_kept: int = 2
    #: Size bound of one commit-log segment.
    segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES
    owner_identity: Identity = field(default_factory=lambda: Identity(0))


class HostEngine:
    """One database: a module, its tables, its commit log."""

    def __init__(self, module: Module, data_dir: Path, database_name: str, config: EngineConfig | None = None) -> None:
        self.module = module
        self.data_dir = data_dir
        self.database_name = database_name
        self.config = config or EngineConfig()
        self.owner_identity = self.config.owner_identity
        self.datastore = Datastore(module, SYSTEM_TABLES)
        self.commitlog = CommitLog(
            data_dir / "commitlog", fsync=self.config.fsync, segment_max_bytes=self.config.segment_max_bytes
        )
        self.commitlog.on_durable = self._deliver  # type: ignore[method-assign]
        self.offset = 0
        self.durable_offset = 0
        self._last_timestamp = 0
        self._pending: deque[_Pending] = deque()
        self._listeners: list[CommitListener] = []
        self._snapshot_offset = 0
        self._snapshot_task: asyncio.Task[None] | None = None
        self._timers: dict[tuple[str, bytes], asyncio.TimerHandle] = {}
        self._started = False
        self.recovery = RecoveryReport()
        self.commits_total = 0
        self.on_call: Callable[[str, CallOutcome], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted_schema_hashes: frozenset[str] = frozenset()
        self._args_codecs: dict[str, tuple[ReducerDef, bsatn.Codec]] = {}
        self._failure_listeners: list[Callable[[BaseException], None]] = []
        self.commitlog.on_failure = self._storage_failed

    # ----- lifecycle -----

    async def start(self) -> RecoveryReport:
        """Recover from disk, run `init` on a fresh database, and disconnect connections a crash left behind."""
        started = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_meta()
        snapshot = latest_snapshot(self.data_dir / "snapshots")
        if snapshot is not None:
            self._load_snapshot(snapshot)
        scan = self.commitlog.recover(self.offset, record_offset)
        replayed = self._replay(scan.payloads)
        self.durable_offset = self.offset
        # Appends never continue an old segment: it may span the snapshot, and it may have been written by a host
        # that did not rotate.
        self.commitlog.open_segment(self.offset + 1)
        self.recovery = RecoveryReport(
            snapshot_offset=snapshot.offset if snapshot else 0,
            replayed=replayed,
            offset=self.offset,
            tail=scan.tail,
            segments_read=scan.segments_read,
            records_read=scan.records_read,
            covered_damage=scan.covered_damage,
            fresh=self.offset == 0,
        )
        self._started = True
        if self.offset == 0:
            init = self.module.lifecycle_reducer(Lifecycle.INIT)
            if init is not None:
                outcome = await self._run_and_wait(init, (), Caller(self.owner_identity), None)
                if outcome.status is not CallStatus.COMMITTED:
                    raise RuntimeError(f"init reducer failed: {outcome.message}")
        await self._run_start_hook()
        self.recovery.cleaned_connections = await self._disconnect_orphans()
        for store in self.datastore.tables.values():
            if store.table.scheduled_reducer:
                for row_bytes, row in list(store.rows.items()):
                    self._arm_timer(store.table.name, row_bytes, row)
        self.recovery.seconds = time.perf_counter() - started
        log.info(
            "database %s ready at offset %d (snapshot %d, %d segment(s) read, replayed %d, %.3fs)",
            self.database_name,
            self.offset,
            self.recovery.snapshot_offset,
            scan.segments_read,
            replayed,
            self.recovery.seconds,
        )
        return self.recovery

    async def _run_start_hook(self) -> None:
        """Let the module react to this start (migrated rows, a discarded tail) as the owner, before any client.

        That history was discarded is remembered in `<data_dir>/history-discarded` until the hook's transaction is
        durable: recovery sets the tail aside at once, so a crash before the hook committed would otherwise start
        the next time with nothing left to say so.
        """
        hook = self.module.start_hook
        if hook is None:
            return
        marker = self.data_dir / HISTORY_DISCARDED_MARKER
        if self.recovery.tail is not None:
            write_atomically(marker, self.recovery.tail.reason.encode("utf-8"))
        info = StartInfo(fresh=self.recovery.fresh, history_discarded=marker.exists())
        reducer = ReducerDef("on_start", at.UNIT, lambda ctx: hook(ctx, info))
        outcome = await self._run_and_wait(reducer, (), Caller(self.owner_identity), None)
        if outcome.status is not CallStatus.COMMITTED:
            raise RuntimeError(f"module start hook failed: {outcome.message}")
        marker.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Wait for in-flight flushes and snapshots, then close the log."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if self._pending:
            with contextlib.suppress(StorageFailedError):
                await self.commitlog.wait_durable(self._pending[-1].sequence)
        self.commitlog.close()

    def _check_meta(self) -> None:
        """Refuse data written by an incompatible schema; accept and record compatible additions.

        `meta.json` keeps the schema the data was written with and every schema hash it has been served under, so
        a module that only adds tables, reducers or indexes starts on existing data (snapshots written under an
        earlier accepted schema stay readable), while anything breaking is refused with a readable diff.
        """
        meta_path = self.data_dir / "meta.json"
        schema = self.module.schema_json()
        schema_hash = self.module.schema_hash()
        meta: dict[str, Any] = {"database": self.database_name, "module": self.module.name, "schema_hashes": []}
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            previous = meta.get("schema")
            if meta.get("schema_hash") != schema_hash:
                if previous is None:
                    raise SchemaMismatchError(
                        f"data directory {self.data_dir} was written by a module with schema "
                        f"{str(meta.get('schema_hash', '?'))[:12]} (no schema recorded to compare with); the module "
                        f"now has schema {schema_hash[:12]}: start with an empty data directory"
                    )
                diff = compare_schemas(previous, schema)
                if diff.breaking:
                    raise SchemaMismatchError(
                        f"data directory {self.data_dir} holds database {meta.get('database')!r} written by schema "
                        f"{str(meta.get('schema_hash'))[:12]}; the module's schema {schema_hash[:12]} breaks it:\n"
                        + diff.render(base_label="stored", head_label="module")
                    )
                log.warning("schema %s -> %s: compatible additions accepted", meta.get("schema_hash"), schema_hash)
        hashes = [h for h in meta.get("schema_hashes", [meta.get("schema_hash")]) if h]
        if schema_hash not in hashes:
            hashes.append(schema_hash)
        meta.update(schema_hash=schema_hash, schema=schema, schema_hashes=hashes)
        write_atomically(meta_path, json.dumps(meta, sort_keys=True).encode("utf-8"))
        self._accepted_schema_hashes = frozenset(hashes)

    def _load_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.schema_hash not in self._accepted_schema_hashes:
            raise SchemaMismatchError(f"snapshot at offset {snapshot.offset} was written by an unknown schema")
        for name, rows in snapshot.tables.items():
            store = self.datastore[name]
            for stored in rows:
                store.put(*store.stored(stored))
        self.offset = snapshot.offset
        self._snapshot_offset = snapshot.offset

    def _replay(self, payloads: list[bytes]) -> int:
        replayed = 0
        for payload in payloads:
            try:
                offset, timestamp, _reducer, _caller, changes = _TX_RECORD.decode(payload)
            except DecodeError as exc:
                raise RuntimeError(f"commit log record after offset {self.offset} undecodable: {exc}") from exc
            if offset <= self.offset:
                continue
            if offset != self.offset + 1:
                raise RuntimeError(f"commit log gap: expected offset {self.offset + 1}, found {offset}")
            for table, inserts, deletes in changes:
                store = self.datastore[table]
                for row_bytes in deletes:
                    if store.take(row_bytes) is None and store.migrates:
                        store.take(store.stored(row_bytes)[0])
                for row_bytes in inserts:
                    store.put(*store.stored(row_bytes))
            self.offset = offset
            self._last_timestamp = timestamp.micros
            replayed += 1
        return replayed

    async def _disconnect_orphans(self) -> int:
        store = self.datastore[ST_CLIENT.name]
        orphans = list(store.rows.values())
        for connection_id, identity in orphans:
            await self.disconnect(Caller(identity, connection_id))
        return len(orphans)

    # ----- calls -----

    def add_failure_listener(self, listener: Callable[[BaseException], None]) -> None:
        """Hear once when the commit log fails and the host turns fail-stop (e.g. to close every socket)."""
        self._failure_listeners.append(listener)

    def _storage_failed(self, error: BaseException) -> None:
        for listener in self._failure_listeners:
            try:
                listener(error)
            except Exception:
                log.exception("failure listener raised")

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Receive every committed transaction, after it is durable, in commit order."""
        self._listeners.append(listener)

    def reducer(self, name: str) -> ReducerDef | None:
        """A reducer definition by name."""
        return self.module.reducers.get(name)

    def decode_args(self, reducer: ReducerDef, data: bytes) -> tuple[Any, ...]:
        """Decode BSATN arguments of a reducer (DecodeError when they do not match its parameters).

        Bytes after the arguments are ignored, as SpacetimeDB does: `FunctionArgs::_into_tuple` in
        `crates/core/src/host/mod.rs` deserializes the parameters from the front and never checks for the end.
        """
        decoder = self._args_codecs.get(reducer.name)
        if decoder is None or decoder[0] is not reducer:
            decoder = self._args_codecs[reducer.name] = (reducer, bsatn.codec(reducer.params))
        return tuple(decoder[1].decode_prefix(data, 0)[0])

    async def call_reducer(self, name: str, args: Sequence[Any], caller: Caller, origin: Any = None) -> CallOutcome:
        """Run a client-callable reducer and return once its transaction is durable (or it failed)."""
        outcome = await self._durable(*self._begin_call(name, args, caller, origin))
        self._report_call(name, outcome)
        return outcome

    def start_call(
        self, name: str, args: Sequence[Any], caller: Caller, origin: Any, on_done: Callable[[CallOutcome], None]
    ) -> None:
        """`call_reducer` without a coroutine: the transaction runs now, `on_done` gets the outcome.

        For the WebSocket read loop: the call's effects are visible to the next message at once, and no task is
        created per call. A call that wrote reaches `on_done` once its commit is durable, on the event loop, after
        the commit listeners saw it. A call that wrote nothing reaches `on_done` at once: the caller holds its answer
        until `outcome.offset` is durable, in order with its other answers (the WebSocket's `send_at`).
        """
        outcome, sequence = self._begin_call(name, args, caller, origin)
        future = None
        if sequence is not None:
            try:
                future = self.durable_future(outcome.offset)
            except StorageFailedError as exc:
                outcome = _storage_failure(outcome, exc)
        if future is None:
            self._finish_call(name, outcome, on_done)
            return

        def durable(done: asyncio.Future[None]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            self._finish_call(name, outcome if error is None else _storage_failure(outcome, error), on_done)

        future.add_done_callback(durable)

    def _finish_call(self, name: str, outcome: CallOutcome, on_done: Callable[[CallOutcome], None]) -> None:
        self._report_call(name, outcome)
        on_done(outcome)

    def _report_call(self, name: str, outcome: CallOutcome) -> None:
        """Tell `on_call` (metrics) about a call that ran; refusals before running were never reported."""
        if self.on_call is not None and outcome.status not in _REFUSED_BEFORE_RUNNING:
            self.on_call(name, outcome)

    async def _durable(self, outcome: CallOutcome, sequence: int | None) -> CallOutcome:
        """The outcome once every commit it observed is on disk, or the storage failure that prevented it.

        Not only the call's own transaction (`sequence`): a call that wrote nothing still saw the commits before it
        (a duplicate append answered with the original's seq, a conflict naming the head), so it waits for those.
        """
        del sequence  # the outcome's offset covers its own transaction too
        try:
            await self.wait_durable_offset(outcome.offset)
        except StorageFailedError as exc:
            return _storage_failure(outcome, exc)
        return outcome

    def durable_future(self, offset: int) -> asyncio.Future[None] | None:
        """A future resolved once every commit up to `offset` is durable (None when they already are).

        The one rule for answers: whatever reveals or depends on the state at `offset` — a reducer result, a query's
        rows, a subscription's initial or dropped rows — leaves the host only after this. The future resolves after
        the commit listeners have seen the transaction at `offset`. Raises StorageFailedError when the log failed.
        """
        if offset <= self.durable_offset:
            return None
        if self.commitlog.failure is not None:
            raise StorageFailedError(f"commit log failed: {self.commitlog.failure}")
        # `_pending` holds the not-yet-durable commits with consecutive offsets, oldest first.
        first = self._pending[0].tx.offset
        return self.commitlog.durable_future(self._pending[min(offset, self.offset) - first].sequence)

    async def wait_durable_offset(self, offset: int) -> None:
        """Return once every commit up to `offset` is durable (see `durable_future`)."""
        future = self.durable_future(offset)
        if future is not None:
            await future

    def _begin_call(
        self, name: str, args: Sequence[Any], caller: Caller, origin: Any
    ) -> tuple[CallOutcome, int | None]:
        reducer = self.module.reducers.get(name)
        if reducer is None:
            return CallOutcome(CallStatus.NO_SUCH_REDUCER, self._now(), f"no such reducer: {name}"), None
        if reducer.lifecycle is not None:
            message = f"lifecycle reducer {name} cannot be called by clients"
            return CallOutcome(CallStatus.LIFECYCLE_REDUCER, self._now(), message), None
        if len(args) != len(reducer.params.elements):
            message = f"reducer {name} takes {len(reducer.params.elements)} arguments, got {len(args)}"
            return CallOutcome(CallStatus.BAD_ARGUMENTS, self._now(), message), None
        return self.run_transaction(reducer, tuple(args), caller, origin)

    async def connect(self, caller: Caller, origin: Any = None) -> None:
        """Record a connection and run `client_connected`; ConnectionRejectedError when it refuses."""
        if self.commitlog.failure is not None:
            raise StorageUnavailableError(f"storage failed: {self.commitlog.failure}")
        outcome = await self._run_and_wait(
            self.module.lifecycle_reducer(Lifecycle.CLIENT_CONNECTED), (), caller, origin, connecting=True
        )
        if outcome.status is not CallStatus.COMMITTED:
            raise ConnectionRejectedError(outcome.message)

    async def disconnect(self, caller: Caller, origin: Any = None) -> None:
        """Run `client_disconnected` and forget the connection (even when the hook fails)."""
        outcome = await self._run_and_wait(
            self.module.lifecycle_reducer(Lifecycle.CLIENT_DISCONNECTED), (), caller, origin, disconnecting=True
        )
        if outcome.status is not CallStatus.COMMITTED:
            log.warning("client_disconnected failed for %s: %s", caller.identity, outcome.message)
            await self._run_and_wait(None, (), caller, origin, disconnecting=True)

    async def _run_and_wait(
        self,
        reducer: ReducerDef | None,
        args: tuple[Any, ...],
        caller: Caller,
        origin: Any,
        *,
        connecting: bool = False,
        disconnecting: bool = False,
    ) -> CallOutcome:
        return await self._durable(
            *self.run_transaction(reducer, args, caller, origin, connecting=connecting, disconnecting=disconnecting)
        )

    def run_transaction(
        self,
        reducer: ReducerDef | None,
        args: tuple[Any, ...],
        caller: Caller,
        origin: Any = None,
        *,
        connecting: bool = False,
        disconnecting: bool = False,
        extra: Callable[[Transaction], None] | None = None,
    ) -> tuple[CallOutcome, int | None]:
        """Run one transaction synchronously; returns the outcome and the log sequence to wait for, if any.

        An answer reporting the outcome waits for `outcome.offset` instead (`durable_future`): that also covers a
        transaction that wrote nothing but saw commits that are not durable yet.
        """
        if not self._started:
            raise RuntimeError("engine not started")
        timestamp = self._now()
        name = reducer.name if reducer else ("client_disconnected" if disconnecting else "client_connected")
        if self.commitlog.failure is not None:
            message = f"storage failed: {self.commitlog.failure}"
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, message, offset=self.offset), None
        tx = Transaction(self.datastore)
        ctx = ReducerContext(caller, timestamp, DbView(tx))
        started = time.perf_counter_ns()
        try:
            if reducer is not None:
                reducer.function(ctx, *args)
            if connecting or disconnecting:
                self._record_client(tx, caller, connecting)
            if extra is not None:
                extra(tx)
        except ReducerError as exc:
            tx.rollback()
            message = str(exc) or type(exc).__name__
            return CallOutcome(CallStatus.USER_ERROR, timestamp, message, offset=self.offset), None
        except Exception as exc:
            tx.rollback()
            log.exception("reducer %s panicked", name)
            message = f"reducer {name} panicked: {exc!r}"
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, message, offset=self.offset), None
        duration = (time.perf_counter_ns() - started) // 1000
        changes = tx.changes()
        committed = CommittedTx(self.offset + 1 if changes else self.offset, timestamp, name, caller, changes, origin)
        if not changes:
            outcome = CallOutcome(
                CallStatus.COMMITTED, timestamp, tx=committed, duration_micros=duration, offset=committed.offset
            )
            return outcome, None
        payload = _TX_RECORD.encode(
            (
                committed.offset,
                timestamp,
                name,
                caller.identity,
                [(c.table, [b for b, _ in c.inserts], [b for b, _ in c.deletes]) for c in changes],
            )
        )
        try:
            sequence = self.commitlog.append(payload)
        except StorageFailedError as exc:
            tx.rollback()
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, f"storage failed: {exc}", offset=self.offset), None
        self.offset = committed.offset
        self.commits_total += 1
        self._pending.append(_Pending(sequence, committed))
        self._after_commit(committed)
        outcome = CallOutcome(
            CallStatus.COMMITTED, timestamp, tx=committed, duration_micros=duration, offset=committed.offset
        )
        return outcome, sequence

    def _record_client(self, tx: Transaction, caller: Caller, connecting: bool) -> None:
        if caller.connection_id is None:
            return
        store = self.datastore[ST_CLIENT.name]
        if connecting:
            tx.insert(store, (caller.connection_id, caller.identity))
        else:
            for row_bytes in list(store.indexes[("connection_id",)].lookup((caller.connection_id,))):
                tx.delete_bytes(store, row_bytes)

    def _now(self) -> Timestamp:
        micros = max(time.time_ns() // 1000, self._last_timestamp + 1)
        self._last_timestamp = micros
        return Timestamp(micros)

    def _deliver(self, sequence: int) -> None:
        """Called by the commit log after a flush: hand durable transactions to listeners, in order."""
        while self._pending and self._pending[0].sequence <= sequence:
            tx = self._pending.popleft().tx
            self.durable_offset = tx.offset
            for listener in self._listeners:
                try:
                    listener(tx)
                except Exception:
                    log.exception("commit listener failed on offset %d", tx.offset)

    # ----- snapshots -----

    def _after_commit(self, tx: CommittedTx) -> None:
        for change in tx.changes:
            if self.datastore[change.table].table.scheduled_reducer:
                self._reschedule(change)
        if tx.offset - self._snapshot_offset >= self.config.snapshot_every and (
            self._snapshot_task is None or self._snapshot_task.done()
        ):
            self._snapshot_offset = tx.offset
            captured = Snapshot(
                tx.offset,
                self.module.schema_hash(),
                {name: list(store.rows) for name, store in self.datastore.tables.items() if not store.table.event},
            )
            sequence = self._pending[-1].sequence
            self.commitlog.rotate_at(tx.offset + 1)
            self._snapshot_task = asyncio.get_running_loop().create_task(self._write_snapshot(captured, sequence))

    async def _write_snapshot(self, snapshot: Snapshot, sequence: int) -> None:
        try:
            await self.commitlog.wait_durable(sequence)
            directory = self.data_dir / "snapshots"
            await asyncio.get_running_loop().run_in_executor(None, write_snapshot, directory, snapshot)
            kept = prune_snapshots(directory, keep=self.config.snapshots_kept)
            if kept:
                # Segments the oldest kept snapshot wholly covers are needed by no start, even one that must fall
                # back to that snapshot because the newer ones are damaged.
                self.commitlog.drop_segments_before(kept[-1] + 1)
            log.info("snapshot at offset %d written", snapshot.offset)
        except Exception:
            log.exception("snapshot at offset %d failed; the commit log still holds everything", snapshot.offset)

    # ----- scheduled reducers -----

    def _reschedule(self, change: TableChange) -> None:
        for row_bytes, _ in change.deletes:
            handle = self._timers.pop((change.table, row_bytes), None)
            if handle is not None:
                handle.cancel()
        for row_bytes, row in change.inserts:
            self._arm_timer(change.table, row_bytes, row)

    def _arm_timer(self, table: str, row_bytes: bytes, row: tuple[Any, ...]) -> None:
        store = self.datastore[table]
        at_value = row[store.table.column_index("scheduled_at")]
        if not isinstance(at_value, SumValue):
            return
        now = time.time_ns() // 1000
        if isinstance(at_value.value, TimeDuration):
            delay = max(at_value.value.micros, 0) / 1e6
        elif isinstance(at_value.value, Timestamp):
            delay = max(at_value.value.micros - now, 0) / 1e6
        else:
            return
        loop = asyncio.get_running_loop()
        self._timers[(table, row_bytes)] = loop.call_later(delay, self._fire, table, row_bytes)

    def _fire(self, table: str, row_bytes: bytes) -> None:
        self._timers.pop((table, row_bytes), None)
        store = self.datastore[table]
        row = store.rows.get(row_bytes)
        reducer = self.module.reducers.get(store.table.scheduled_reducer or "")
        if row is None or reducer is None:
            return
        one_shot = isinstance(row[store.table.column_index("scheduled_at")].value, Timestamp)

        def remove_row(tx: Transaction) -> None:
            if one_shot:
                tx.delete_bytes(store, row_bytes)

        outcome, sequence = self.run_transaction(reducer, (row,), Caller(self.owner_identity), extra=remove_row)
        if outcome.status is not CallStatus.COMMITTED:
            log.warning("scheduled reducer %s failed: %s", reducer.name, outcome.message)
            if one_shot:
                _, sequence = self.run_transaction(None, (), Caller(self.owner_identity), extra=remove_row)
        if sequence is not None:
            # Nobody awaits a scheduled transaction, so flush it here: subscribers hear of it only once durable.
            self._background(self.commitlog.wait_durable(sequence))
        if not one_shot and row_bytes in store.rows and (table, row_bytes) not in self._timers:
            self._arm_timer(table, row_bytes, row)

    def _background(self, awaitable: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def new_connection_id() -> ConnectionId:
    """A random connection id for clients that do not bring one."""
    return ConnectionId(secrets.randbits(128) or 1)
