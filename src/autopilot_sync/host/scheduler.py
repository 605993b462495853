"""Scheduled reducers: a timer per row of a scheduled table, firing its reducer at the row's `ScheduleAt` column.

As on SpacetimeDB, inserting a row into a table declared with a scheduled reducer schedules a call: at a
`Timestamp` once (the row is deleted in the same transaction as the call), every `TimeDuration` for an interval
(the row stays). Deleting the row cancels it. Timers are re-armed from the rows at every start. The engine runs the
transactions (`RunScheduled`); this module only decides when, and what happens to the row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.transaction import CommittedTx, TableChange, Transaction
from autopilot_sync.spacetime.values import SumValue, TimeDuration, Timestamp

log = logging.getLogger(__name__)

#: Runs the reducer named (or, with None, only `extra`) with BSATN arguments as the database owner in one
#: transaction, `extra` included; returns why it failed (None when it committed) and the log sequence to flush, if any.
RunScheduled = Callable[[str | None, bytes, Callable[[Transaction], None]], tuple[str | None, int | None]]
#: Waits until the log record numbered by a sequence is durable.
WaitDurable = Callable[[int], Coroutine[Any, Any, None]]


class ReducerScheduler:
    """The armed timers of every scheduled table's rows, kept in step with each committed change to those tables."""

    def __init__(
        self, module: HostedModule, datastore: Datastore, run: RunScheduled, wait_durable: WaitDurable
    ) -> None:
        self.module = module
        self._datastore = datastore
        self._run = run
        self._wait_durable = wait_durable
        self._timers: dict[tuple[str, bytes], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Runs a scheduled procedure (TypeScript modules) with the row's bytes as its argument, as the owner.
        self.run_procedure: Callable[[str, bytes], None] | None = None

    def arm_all(self) -> None:
        """Arm a timer for every row of every scheduled table (at start, after recovery)."""
        for store in self._datastore.tables.values():
            if store.table.scheduled_reducer:
                for row_bytes, row in list(store.rows.items()):
                    self._arm_timer(store.table.name, row_bytes, row)

    def after_commit(self, tx: CommittedTx) -> None:
        """Cancel the timers of deleted rows and arm the inserted ones, for every scheduled table the commit changed."""
        for change in tx.changes:
            if self._datastore[change.table].table.scheduled_reducer:
                self._reschedule(change)

    def stop(self) -> None:
        """Cancel every timer."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _reschedule(self, change: TableChange) -> None:
        for row_bytes, _ in change.deletes:
            handle = self._timers.pop((change.table, row_bytes), None)
            if handle is not None:
                handle.cancel()
        for row_bytes, row in change.inserts:
            self._arm_timer(change.table, row_bytes, row)

    def _arm_timer(self, table: str, row_bytes: bytes, row: tuple[Any, ...]) -> None:
        store = self._datastore[table]
        at_value = row[store.table.column_index(store.table.schedule_column)]
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
        store = self._datastore[table]
        row = store.rows.get(row_bytes)
        reducer = store.table.scheduled_reducer or ""
        if row is None:
            return
        one_shot = isinstance(row[store.table.column_index(store.table.schedule_column)].value, Timestamp)

        def remove_row(tx: Transaction) -> None:
            if one_shot:
                tx.delete_bytes(store, row_bytes)

        if not any(r.name == reducer for r in self.module.definition().reducers):
            if self.run_procedure is not None and any(p.name == reducer for p in self.module.definition().procedures):
                self._fire_procedure(table, row_bytes, row, reducer, one_shot, remove_row)
            return

        # The reducer's one argument is the row: its BSATN arguments are the row's bytes.
        failure, sequence = self._run(reducer, row_bytes, remove_row)
        if failure is not None:
            log.warning("scheduled reducer %s failed: %s", reducer, failure)
            if one_shot:
                _, sequence = self._run(None, b"", remove_row)
        if sequence is not None:
            self.flush_later(sequence)
        if not one_shot and row_bytes in store.rows and (table, row_bytes) not in self._timers:
            self._arm_timer(table, row_bytes, row)

    def _fire_procedure(
        self,
        table: str,
        row_bytes: bytes,
        row: tuple[Any, ...],
        procedure: str,
        one_shot: bool,
        remove_row: Callable[[Transaction], None],
    ) -> None:
        """A procedure runs outside any transaction: a one-shot row is deleted first (its own commit), then it runs."""
        if one_shot:
            _, sequence = self._run(None, b"", remove_row)
            if sequence is not None:
                self.flush_later(sequence)
        assert self.run_procedure is not None
        self.run_procedure(procedure, row_bytes)
        store = self._datastore[table]
        if not one_shot and row_bytes in store.rows and (table, row_bytes) not in self._timers:
            self._arm_timer(table, row_bytes, row)

    def flush_later(self, sequence: int) -> None:
        """Flush a transaction nobody awaits (scheduled): subscribers hear of it only once it is durable."""
        self._background(self._wait_durable(sequence))

    def _background(self, awaitable: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
