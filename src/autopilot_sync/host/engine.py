"""The host engine: runs reducers as transactions, makes them durable, and tells subscribers in commit order.

Everything the network layers need goes through here: `connect`/`disconnect` run the lifecycle hooks, `call_reducer`
runs one reducer, `add_commit_listener` receives every committed transaction after it is durable (the subscription
engine's input), `add_apply_listener` each one as it is applied (what must read the state of that very commit).
Reducers execute one at a time on the event loop; only the disk flush leaves it.

`HostEngine` coordinates one database; each of its other jobs has its own module: `recovery.py` (start-up from
disk), `durability.py` (which commits are durable, commit listeners, `durable_future`), `snapshot_scheduler.py`
(snapshots and retention), `scheduler.py` (scheduled reducers) and `tx_record.py` (the commit-log record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerError, StartInfo
from autopilot_sync.host import module_log
from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import (
    DEFAULT_INLINE_FSYNC_MAX_SECONDS,
    DEFAULT_SEGMENT_MAX_BYTES,
    CommitLog,
    StorageFailedError,
)
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.durability import ApplyListener, CommitListener, DurableCommits
from autopilot_sync.host.hosted_module import BadArgumentsError, HostedModule, hosted
from autopilot_sync.host.procedure_call import (
    NO_SUCH_PROCEDURE,
    ProcedureArgumentsError,
    ProcedureCallError,
    ProcedureOutcome,
    ProcedureStatus,
    ProcedureTxError,
)
from autopilot_sync.host.recovery import DiscardedHistoryMarker, RecoveryReport, recover
from autopilot_sync.host.scheduler import ReducerScheduler
from autopilot_sync.host.snapshot_scheduler import SnapshotScheduler
from autopilot_sync.host.sql import check_visibility_filters_at_start
from autopilot_sync.host.system_tables import ST_CLIENT, SYSTEM_TABLES
from autopilot_sync.host.transaction import (
    CommittedTx,
    DbView,
    HostReducerContext,
    Transaction,
)
from autopilot_sync.host.tx_record import encode_record
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

log = logging.getLogger(__name__)


#: Outcomes of calls refused before the reducer ran (not reported to `on_call`, as they never were).
_REFUSED_BEFORE_RUNNING = frozenset(
    {CallStatus.NO_SUCH_REDUCER, CallStatus.LIFECYCLE_REDUCER, CallStatus.BAD_ARGUMENTS}
)


def _log_scheduled_procedure(name: str, outcome: ProcedureOutcome) -> None:
    if outcome.status is not ProcedureStatus.RETURNED:
        log.warning("scheduled procedure %s failed: %s", name, outcome.error)


def _storage_failure(outcome: CallOutcome, error: BaseException) -> CallOutcome:
    """What a call that ran but could not be made durable reports instead of its own outcome."""
    return CallOutcome(CallStatus.INTERNAL_ERROR, outcome.timestamp, f"storage failed: {error}", offset=outcome.offset)


class ConnectionRejectedError(Exception):
    """`client_connected` refused the caller (its message says why) or the host cannot record the connection."""


class StorageUnavailableError(ConnectionRejectedError):
    """The commit log failed earlier: the host refuses every write, connections included, until restarted."""


@dataclass(slots=True)
class EngineConfig:
    """Storage knobs (from the host's settings)."""

    fsync: bool = True
    #: fsyncs at most this long let the next flushes run on the event loop (`CommitLog`); 0: always the thread.
    inline_fsync_max_seconds: float = DEFAULT_INLINE_FSYNC_MAX_SECONDS
    snapshot_every: int = 10_000
    #: Also snapshot once this many bytes of log records were written since the last one (few, large commits).
    snapshot_every_bytes: int = 64 * 1024 * 1024
    #: With a log table: an incremental snapshot (what it appended since the previous one) this often, in log bytes.
    snapshot_delta_every_bytes: int = 4 * 1024 * 1024
    #: Incremental snapshots between two whole ones (0: every snapshot whole).
    snapshot_deltas_max: int = 15
    #: Snapshots kept on disk; log segments older than the oldest kept one are deleted.
    snapshots_kept: int = 2
    #: Size bound of one commit-log segment.
    segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES
    owner_identity: Identity = field(default_factory=lambda: Identity(0))
    #: Identities that read as the owner does (private tables, past row-level security) but call as anyone else.
    observer_identities: frozenset[Identity] = frozenset()
    #: Where start-up verdicts shared across data directories are kept (`host/sql/verdict.py`); None: nowhere.
    cache_dir: Path | None = None


class HostEngine:
    """One database: a module, its tables, its commit log.

    The module is a `HostedModule` (`hosted_module.py`): the engine reads tables, reducers and lifecycle hooks from its
    definition and runs reducers through `call_reducer` with BSATN arguments; an authored Python `bindings.Module` is
    wrapped in `PythonModule` on the way in.
    """

    def __init__(
        self, module: HostedModule | Module, data_dir: Path, database_name: str, config: EngineConfig | None = None
    ) -> None:
        module = hosted(module)
        self.module: HostedModule = module
        definition = module.definition()
        self._reducers: dict[str, md.ReducerDef] = {r.name: r for r in definition.reducers}
        self._lifecycle: dict[md.Lifecycle, str] = {
            r.lifecycle: r.name for r in definition.reducers if r.lifecycle is not None
        }
        self.data_dir = data_dir
        self.database_name = database_name
        self.config = config or EngineConfig()
        self.owner_identity = self.config.owner_identity
        self.datastore = Datastore(module, SYSTEM_TABLES)
        # Row-level security is checked when the module loads (SpacetimeDB checks it at publish): a filter that does
        # not compile refuses the module here (`VisibilityFilterError` names the table) instead of failing each read.
        # A restart with the same filters and tables skips the compile (and sqlglot's import): host/sql/verdict.py.
        check_visibility_filters_at_start(self.datastore, data_dir, self.config.cache_dir)
        self.commitlog = CommitLog(
            data_dir / "commitlog",
            fsync=self.config.fsync,
            segment_max_bytes=self.config.segment_max_bytes,
            inline_fsync_max_seconds=self.config.inline_fsync_max_seconds,
        )
        self.offset = 0
        self._last_timestamp = 0
        self._durability = DurableCommits(self.commitlog)
        self._snapshots = SnapshotScheduler(
            data_dir / "snapshots",
            module,
            self.datastore,
            self.commitlog,
            every=self.config.snapshot_every,
            every_bytes=self.config.snapshot_every_bytes,
            delta_every_bytes=self.config.snapshot_delta_every_bytes,
            deltas_max=self.config.snapshot_deltas_max,
            kept=self.config.snapshots_kept,
        )
        self._scheduler = ReducerScheduler(module, self.datastore, self._run_scheduled, self.commitlog.wait_durable)
        self._scheduler.run_procedure = self._run_scheduled_procedure
        self._started = False
        self.recovery = RecoveryReport()
        self.commits_total = 0
        self.on_call: Callable[[str, CallOutcome], None] | None = None
        self._procedures: dict[str, md.ProcedureDef] = {p.name: p for p in definition.procedures}
        self._args_codecs: dict[str, tuple[md.ReducerDef, bsatn.Codec]] = {}
        self._failure_listeners: list[Callable[[BaseException], None]] = []
        self._module_listeners: list[Callable[[], None]] = []
        self._replaced_listeners: list[Callable[[], None]] = []
        self._apply_listeners: list[ApplyListener] = []
        #: while a procedure runs: the commits it made, told to the apply listeners once it returns
        self._procedure_applied: list[CommittedTx] | None = None
        self.commitlog.on_failure = self._storage_failed
        bind_host = getattr(module, "bind_host", None)
        if bind_host is not None:  # a JavaScript module's `volatile_nonatomic_schedule_immediate` and `identity`
            bind_host(schedule_immediate=self._schedule_immediate, identity=self.owner_identity)

    def reads_everything(self, identity: Identity) -> bool:
        """Whether `identity` reads private tables past row-level security: the owner and the observers."""
        return identity == self.owner_identity or identity in self.config.observer_identities

    @property
    def durable_offset(self) -> int:
        """Every commit up to this offset is on disk and was handed to the commit listeners."""
        return self._durability.durable_offset

    def undelivered_after(self, offset: int) -> list[CommittedTx]:
        """The commits after `offset` applied to the datastore but not yet durable (nor told to commit listeners)."""
        return self._durability.undelivered_after(offset)

    # ----- lifecycle -----

    async def start(self) -> RecoveryReport:
        """Recover from disk, run `init` on a fresh database, and disconnect connections a crash left behind."""
        started = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        recovered = recover(self.data_dir, self.module, self.database_name, self.datastore, self.commitlog)
        self.offset = recovered.offset
        self._last_timestamp = recovered.last_timestamp
        self._durability.durable_offset = self.offset
        self._snapshots.resume(recovered.report)
        self.recovery = recovered.report
        self._started = True
        if self.recovery.fresh:
            await self._run_init()
        await self._run_start_hook()
        self.recovery.cleaned_connections = await self._disconnect_orphans()
        self._scheduler.arm_all()
        self.recovery.seconds = time.perf_counter() - started
        log.info(
            "database %s ready at offset %d (snapshot %d, %d segment(s) read, replayed %d, %.3fs)",
            self.database_name,
            self.offset,
            self.recovery.snapshot_offset,
            self.recovery.segments_read,
            self.recovery.replayed,
            self.recovery.seconds,
        )
        return self.recovery

    async def _run_init(self) -> None:
        """Run the module's `init` reducer as the owner: on a fresh database, and after a publish that cleared it."""
        init = self._lifecycle.get(md.Lifecycle.INIT)
        if init is not None:
            outcome = await self._run_and_wait(init, Caller(self.owner_identity), None)
            if outcome.status is not CallStatus.COMMITTED:
                raise RuntimeError(f"init reducer failed: {outcome.message}")

    # ----- publish (host/publish.py decides and records; the engine swaps what runs) -----

    def add_module_listener(self, listener: Callable[[], None]) -> None:
        """Hear, synchronously, that the module's schema changed (the WebSocket hub drops every subscription)."""
        self._module_listeners.append(listener)

    def add_module_replaced_listener(self, listener: Callable[[], None]) -> None:
        """Hear, synchronously, that a publish replaced the module and kept the schema (live subscriptions stay, but
        their views are the new module's from now on)."""
        self._replaced_listeners.append(listener)

    def install(self, module: HostedModule, *, clear: bool, schema_changed: bool) -> None:
        """Run `module` from now on, synchronously, so no transaction sees half of the swap.

        Called by `publish.ModulePublisher` once the record naming the new module is durable. Rows move into the new
        module's tables through `TableStore.stored` (the path recovery reads older rows with: columns added at the end
        get their defaults); `clear` starts every table empty (delete-data), system tables included. The listeners
        hear of a schema change before any later commit is fanned out.
        """
        module = hosted(module)
        definition = module.definition()
        bind_host = getattr(module, "bind_host", None)
        if bind_host is not None:
            bind_host(schedule_immediate=self._schedule_immediate, identity=self.owner_identity)
        self._scheduler.stop()
        self.module = module
        self._reducers = {r.name: r for r in definition.reducers}
        self._procedures = {p.name: p for p in definition.procedures}
        self._lifecycle = {r.lifecycle: r.name for r in definition.reducers if r.lifecycle is not None}
        self._args_codecs.clear()
        if schema_changed or clear:
            fresh = Datastore(module, SYSTEM_TABLES)
            if not clear:
                for name, store in fresh.tables.items():
                    old = self.datastore.tables.get(name)
                    for row_bytes in old.rows if old is not None else ():
                        store.put(*store.stored(row_bytes))
            self.datastore.tables = fresh.tables
            self._snapshots.whole_next()  # new partitions: nothing for an incremental snapshot to build on
        self.datastore.module = module
        self._snapshots.module = module
        self._scheduler.module = module
        if schema_changed or clear:
            for listener in self._module_listeners:
                listener()
        else:
            for listener in self._replaced_listeners:
                listener()
        self._scheduler.arm_all()

    async def after_install(self, *, clear: bool) -> None:
        """What a start would run for the new module: `init` after a clear, then the start hook (durable)."""
        if clear:
            await self._run_init()
        await self._run_start_hook()
        await self.wait_durable_offset(self.offset)

    async def _run_start_hook(self) -> None:
        """Let the module react to this start (migrated rows, a discarded tail) as the owner, before any client.

        That history was discarded is remembered (`DiscardedHistoryMarker`) until the hook's transaction is durable.
        """
        if not self.module.has_start_hook:
            return
        marker = DiscardedHistoryMarker(self.data_dir)
        info = StartInfo(fresh=self.recovery.fresh, history_discarded=marker.remember(self.recovery.tail))
        outcome = await self._durable(
            *self._transact("on_start", lambda ctx: self.module.on_start(ctx, info), Caller(self.owner_identity), None)
        )
        if outcome.status is not CallStatus.COMMITTED:
            raise RuntimeError(f"module start hook failed: {outcome.message}")
        marker.clear()

    async def snapshot_written(self) -> None:
        """Wait for the snapshot being written, if any (tests and benchmarks that need a known set of snapshots)."""
        await self._snapshots.stop()

    async def stop(self) -> None:
        """Wait for in-flight flushes and snapshots, then close the log."""
        self._scheduler.stop()
        await self._snapshots.stop()
        last = self._durability.last_sequence
        if last is not None:
            with contextlib.suppress(StorageFailedError):
                await self.commitlog.wait_durable(last)
        self.commitlog.close()

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

    def add_apply_listener(self, listener: ApplyListener) -> None:
        """Hear, synchronously, each transaction just applied: before it is durable and before any later one runs.

        The datastore is then exactly the state after it, so what must read that state (the differences of subscribed
        views, kept until the commit's own delivery) reads it here. A procedure's commits are told together once it
        returns (the module cannot run a view while it runs; no other call interleaves); the state is after the last.
        """
        self._apply_listeners.append(listener)

    def _applied(self, tx: CommittedTx) -> None:
        if self._procedure_applied is None:
            txs = (tx,)
            for listener in self._apply_listeners:
                try:
                    listener(txs)
                except Exception:
                    log.exception("apply listener failed on offset %d", tx.offset)
        else:
            self._procedure_applied.append(tx)

    def _tell_applied(self, txs: Sequence[CommittedTx]) -> None:
        for listener in self._apply_listeners:
            try:
                listener(txs)
            except Exception:
                log.exception("apply listener failed on offset %d", txs[-1].offset)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Receive every committed transaction, after it is durable, in commit order."""
        self._durability.add_listener(listener)

    def reducer(self, name: str) -> md.ReducerDef | None:
        """A reducer's definition by name (from the module's own description)."""
        return self._reducers.get(name)

    def _args_codec(self, reducer: md.ReducerDef) -> bsatn.Codec:
        decoder = self._args_codecs.get(reducer.name)
        if decoder is None or decoder[0] is not reducer:
            params = md.resolve_deep(reducer.params, self.module.definition().typespace)
            decoder = self._args_codecs[reducer.name] = (reducer, bsatn.codec(params))
        return decoder[1]

    async def call_reducer(self, name: str, args: Sequence[Any], caller: Caller, origin: Any = None) -> CallOutcome:
        """Run a client-callable reducer and return once its transaction is durable (or it failed)."""
        outcome = await self._durable(*self._begin_call(name, args, caller, origin))
        self._report_call(name, outcome)
        return outcome

    def start_call(
        self,
        name: str,
        args: Sequence[Any] | bytes,
        caller: Caller,
        origin: Any,
        on_done: Callable[[CallOutcome], None],
    ) -> None:
        """`call_reducer` without a coroutine: the transaction runs now, `on_done` gets the outcome.

        For the WebSocket read loop: the call's effects are visible to the next message at once, and no task is
        created per call. A call that wrote reaches `on_done` once its commit is durable, on the event loop, after
        the commit listeners saw it. A call that wrote nothing reaches `on_done` at once: the caller holds its answer
        until `outcome.offset` is durable, in order with its other answers (the WebSocket's `send_at`).
        BSATN `args` (as a WebSocket `CallReducer` carries them) take the same checks as values: unknown and
        lifecycle reducers and undecodable arguments are refused at once with offset 0, revealing no state.
        """
        outcome, sequence = self._begin_call(name, args, caller, origin)
        if sequence is not None:

            def durable(error: BaseException | None) -> None:
                self._finish_call(name, outcome if error is None else _storage_failure(outcome, error), on_done)

            try:
                if self._durability.when_durable(outcome.offset, durable):
                    return
            except StorageFailedError as exc:
                outcome = _storage_failure(outcome, exc)
        self._finish_call(name, outcome, on_done)

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
        return self._durability.durable_future(offset)

    async def wait_durable_offset(self, offset: int) -> None:
        """Return once every commit up to `offset` is durable (see `durable_future`)."""
        future = self.durable_future(offset)
        if future is not None:
            await future

    def _begin_call(
        self, name: str, args: Sequence[Any] | bytes, caller: Caller, origin: Any
    ) -> tuple[CallOutcome, int | None]:
        """Refuse what must not run (unknown, lifecycle, values that do not fit), else run the call with BSATN bytes.

        Values are encoded here against the definition's parameters (a value that does not fit is refused before the
        module runs); bytes go to the module as they came, and the module refuses undecodable ones with
        `BadArgumentsError` (decoding them here too cost a second decode per call).
        """
        reducer = self._reducers.get(name)
        if reducer is None:
            return CallOutcome(CallStatus.NO_SUCH_REDUCER, self._now(), f"no such reducer: {name}"), None
        if reducer.lifecycle is not None:
            # SpacetimeDB's `ReducerCallError::LifecycleReducer` text (crates/core/src/host/module_host.rs).
            message = f"can't directly call special {reducer.lifecycle.value} lifecycle reducer"
            return CallOutcome(CallStatus.LIFECYCLE_REDUCER, self._now(), message), None
        if isinstance(args, bytes):
            data = args
        else:
            if len(args) != len(reducer.params.elements):
                message = f"reducer {name} takes {len(reducer.params.elements)} arguments, got {len(args)}"
                return CallOutcome(CallStatus.BAD_ARGUMENTS, self._now(), message), None
            try:
                data = self._args_codec(reducer).encode(tuple(args))
            except (TypeError, ValueError, OverflowError) as exc:
                message = f"invalid arguments for reducer {name}: {exc}"
                return CallOutcome(CallStatus.BAD_ARGUMENTS, self._now(), message), None
        return self._run_reducer(name, data, caller, origin)

    async def connect(self, caller: Caller, origin: Any = None) -> None:
        """Record a connection and run `client_connected`; ConnectionRejectedError when it refuses."""
        if self.commitlog.failure is not None:
            raise StorageUnavailableError(f"storage failed: {self.commitlog.failure}")
        outcome = await self._run_and_wait(
            self._lifecycle.get(md.Lifecycle.ON_CONNECT), caller, origin, connecting=True
        )
        if outcome.status is not CallStatus.COMMITTED:
            raise ConnectionRejectedError(outcome.message)

    async def disconnect(self, caller: Caller, origin: Any = None) -> None:
        """Run `client_disconnected` and forget the connection (even when the hook fails)."""
        outcome = await self._run_and_wait(
            self._lifecycle.get(md.Lifecycle.ON_DISCONNECT), caller, origin, disconnecting=True
        )
        if outcome.status is not CallStatus.COMMITTED:
            log.warning("client_disconnected failed for %s: %s", caller.identity, outcome.message)
            await self._run_and_wait(None, caller, origin, disconnecting=True)

    async def _run_and_wait(
        self,
        reducer: str | None,
        caller: Caller,
        origin: Any,
        *,
        connecting: bool = False,
        disconnecting: bool = False,
    ) -> CallOutcome:
        """Run a lifecycle reducer (no arguments), or with None only the connection bookkeeping, and wait for it."""
        return await self._durable(
            *self._run_reducer(reducer, b"", caller, origin, connecting=connecting, disconnecting=disconnecting)
        )

    def run_transaction(
        self,
        reducer: str | None,
        args: Sequence[Any] | bytes = b"",
        caller: Caller | None = None,
        origin: Any = None,
        *,
        extra: Callable[[Transaction], None] | None = None,
    ) -> tuple[CallOutcome, int | None]:
        """Run the reducer named (None: only `extra`) in one transaction, without the client-call checks.

        `args` are BSATN bytes or values (encoded with the reducer's parameters). Returns the outcome and the log
        sequence to wait for, if any; an answer reporting the outcome waits for `outcome.offset` instead
        (`durable_future`): that also covers a transaction that wrote nothing but saw commits not durable yet.
        """
        caller = caller if caller is not None else Caller(self.owner_identity)
        data = args
        if reducer is not None and not isinstance(args, bytes):
            definition = self._reducers.get(reducer)
            if definition is None:
                raise KeyError(f"no such reducer: {reducer}")
            data = self._args_codec(definition).encode(tuple(args))
        return self._run_reducer(reducer, bytes(data), caller, origin, extra=extra)

    def _run_reducer(
        self,
        reducer: str | None,
        args: bytes,
        caller: Caller,
        origin: Any = None,
        *,
        connecting: bool = False,
        disconnecting: bool = False,
        extra: Callable[[Transaction], None] | None = None,
    ) -> tuple[CallOutcome, int | None]:
        """One transaction calling the module's reducer (if any) with BSATN `args`; see `_transact`."""
        name = reducer if reducer else ("client_disconnected" if disconnecting else "client_connected")
        module = self.module

        def body(ctx: HostReducerContext) -> None:
            if reducer is not None:
                module.call_reducer(ctx, reducer, args)

        return self._transact(
            name, body, caller, origin, connecting=connecting, disconnecting=disconnecting, extra=extra
        )

    def _transact(
        self,
        name: str,
        body: Callable[[HostReducerContext], None],
        caller: Caller,
        origin: Any,
        *,
        connecting: bool = False,
        disconnecting: bool = False,
        extra: Callable[[Transaction], None] | None = None,
    ) -> tuple[CallOutcome, int | None]:
        """Run `body` (then the connection bookkeeping and `extra`) in one transaction, synchronously.

        Returns the outcome and the log sequence to wait for, if it wrote. `ReducerError` is the module's refusal
        (USER_ERROR); any other exception a panic (INTERNAL_ERROR); both roll back.
        """
        if not self._started:
            raise RuntimeError("engine not started")
        timestamp = self._now()
        if self.commitlog.failure is not None:
            message = f"storage failed: {self.commitlog.failure}"
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, message, offset=self.offset), None
        tx = Transaction(self.datastore)
        ctx = HostReducerContext(caller, timestamp, DbView(tx), tx)
        started = time.perf_counter_ns()
        try:
            with module_log.running(self.database_name, name):  # what the module logs meanwhile is its log
                body(ctx)
            if connecting or disconnecting:
                self._record_client(tx, caller, connecting)
            if extra is not None:
                extra(tx)
        except BadArgumentsError as exc:
            tx.rollback()  # raised before the reducer ran: nothing to undo, nothing revealed (offset 0)
            return CallOutcome(CallStatus.BAD_ARGUMENTS, timestamp, str(exc)), None
        except ReducerError as exc:
            tx.rollback()
            message = str(exc) or type(exc).__name__
            module_log.reducer_failed(self.database_name, name, message)
            return CallOutcome(CallStatus.USER_ERROR, timestamp, message, offset=self.offset), None
        except Exception as exc:
            tx.rollback()
            log.exception("reducer %s panicked", name)
            module_log.reducer_panicked(self.database_name, name, exc)
            message = f"reducer {name} panicked: {exc!r}"
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, message, offset=self.offset), None
        duration = (time.perf_counter_ns() - started) // 1000
        return self._commit(tx, name, timestamp, caller, origin, duration)

    def _commit(
        self, tx: Transaction, name: str, timestamp: Timestamp, caller: Caller, origin: Any, duration: int
    ) -> tuple[CallOutcome, int | None]:
        """Append `tx` to the log when it wrote (a reducer's or a procedure's): the outcome and the log sequence."""
        changes = tx.changes()
        committed = CommittedTx(self.offset + 1 if changes else self.offset, timestamp, name, caller, changes, origin)
        if not changes:
            outcome = CallOutcome(
                CallStatus.COMMITTED, timestamp, tx=committed, duration_micros=duration, offset=committed.offset
            )
            return outcome, None
        try:
            record = encode_record(committed)
            sequence = self.commitlog.append(record)
        except StorageFailedError as exc:
            tx.rollback()
            return CallOutcome(CallStatus.INTERNAL_ERROR, timestamp, f"storage failed: {exc}", offset=self.offset), None
        self.offset = committed.offset
        self.commits_total += 1
        self._durability.written(sequence, committed)
        if self._apply_listeners:
            self._applied(committed)
        self._scheduler.after_commit(committed)
        self._snapshots.after_commit(committed, sequence, len(record))
        outcome = CallOutcome(
            CallStatus.COMMITTED, timestamp, tx=committed, duration_micros=duration, offset=committed.offset
        )
        return outcome, sequence

    def procedure(self, name: str) -> md.ProcedureDef | None:
        """A procedure's definition by name (TypeScript modules only)."""
        return self._procedures.get(name)

    def start_procedure(
        self, name: str, args: bytes, caller: Caller, on_done: Callable[[ProcedureOutcome], None]
    ) -> None:
        """Run a procedure now; `on_done` gets its outcome once every commit it saw or made is durable.

        The procedure runs synchronously on the event loop, as reducers do: its transactions (`ctx.withTx`) commit one
        by one through `_commit`, so subscribers hear of each in commit order, and no other call interleaves.
        """
        outcome = self._run_procedure(name, args, caller)
        try:
            future = self.durable_future(outcome.offset)
        except StorageFailedError as exc:
            outcome = ProcedureOutcome(outcome.timestamp, error=f"storage failed: {exc}", offset=outcome.offset)
            future = None
        if future is None:
            on_done(outcome)
            return

        def durable(done: asyncio.Future[None]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                on_done(outcome)
            else:
                on_done(ProcedureOutcome(outcome.timestamp, error=f"storage failed: {error}", offset=outcome.offset))

        future.add_done_callback(durable)

    async def call_procedure(self, name: str, args: bytes, caller: Caller) -> ProcedureOutcome:
        """`start_procedure` awaited (for the HTTP call route)."""
        done: asyncio.Future[ProcedureOutcome] = asyncio.get_running_loop().create_future()
        self.start_procedure(name, args, caller, done.set_result)
        return await done

    def _run_procedure(self, name: str, args: bytes, caller: Caller) -> ProcedureOutcome:
        timestamp = self._now()
        run = getattr(self.module, "call_procedure", None)
        if name not in self._procedures or run is None:
            return ProcedureOutcome(timestamp, ProcedureStatus.NO_SUCH_PROCEDURE, error=NO_SUCH_PROCEDURE)
        if self.commitlog.failure is not None:
            return ProcedureOutcome(timestamp, error=f"storage failed: {self.commitlog.failure}", offset=self.offset)
        started = time.perf_counter_ns()
        self._procedure_applied = [] if self._apply_listeners else None
        try:
            with module_log.running(self.database_name, name):
                returned = run(name, args, caller, timestamp, _ProcedureTxs(self, name, caller))
        except ProcedureArgumentsError as exc:
            return ProcedureOutcome(timestamp, ProcedureStatus.BAD_ARGUMENTS, error=str(exc))
        except ProcedureCallError as exc:
            module_log.reducer_failed(self.database_name, name, str(exc))
            return ProcedureOutcome(timestamp, error=str(exc), offset=self.offset)
        finally:
            applied, self._procedure_applied = self._procedure_applied, None
            if applied:
                self._tell_applied(applied)
        duration = (time.perf_counter_ns() - started) // 1000
        return ProcedureOutcome(
            timestamp, ProcedureStatus.RETURNED, returned=returned, duration_micros=duration, offset=self.offset
        )

    def _run_scheduled_procedure(self, name: str, args: bytes) -> None:
        """A scheduled procedure (the scheduler's `run_procedure`): run as the owner; a failure is logged."""
        self.start_procedure(
            name, args, Caller(self.owner_identity), lambda outcome: _log_scheduled_procedure(name, outcome)
        )

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

    def _schedule_immediate(self, reducer: str, args: bytes) -> None:
        """Run `reducer` as the owner soon after the current transaction (a volatile, non-atomic schedule)."""
        if self._reducers.get(reducer) is None:
            log.warning("module scheduled unknown reducer %s", reducer)
            return

        def run() -> None:
            failure, sequence = self._run_scheduled(reducer, args, lambda _tx: None)
            if failure is not None:
                log.warning("immediately scheduled reducer %s failed: %s", reducer, failure)
            if sequence is not None:
                self._scheduler.flush_later(sequence)

        asyncio.get_running_loop().call_soon(run)

    def _run_scheduled(
        self, reducer: str | None, args: bytes, extra: Callable[[Transaction], None]
    ) -> tuple[str | None, int | None]:
        """A scheduled reducer's transaction, run as the owner (`scheduler.RunScheduled`)."""
        outcome, sequence = self._run_reducer(reducer, args, Caller(self.owner_identity), extra=extra)
        return (None if outcome.status is CallStatus.COMMITTED else outcome.message), sequence


class _ProcedureTxs:
    """The transactions one procedure call opens, committed through the engine like a reducer's (`_commit`)."""

    def __init__(self, engine: HostEngine, name: str, caller: Caller) -> None:
        self._engine = engine
        self._name = name
        self._caller = caller

    def begin(self) -> HostReducerContext:
        tx = Transaction(self._engine.datastore)
        return HostReducerContext(self._caller, self._engine._now(), DbView(tx), tx)

    def commit(self, ctx: HostReducerContext) -> None:
        engine = self._engine
        if engine.commitlog.failure is not None:
            ctx.transaction.rollback()
            raise ProcedureTxError(f"storage failed: {engine.commitlog.failure}")
        outcome, _sequence = engine._commit(ctx.transaction, self._name, ctx.timestamp, self._caller, None, 0)
        if outcome.status is not CallStatus.COMMITTED:
            raise ProcedureTxError(outcome.message)

    def abort(self, ctx: HostReducerContext) -> None:
        ctx.transaction.rollback()


def new_connection_id() -> ConnectionId:
    """A random connection id for clients that do not bring one."""
    return ConnectionId(secrets.randbits(128) or 1)
