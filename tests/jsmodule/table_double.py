"""`TableDouble`: a unit-test double answering a module's syscalls from an in-memory table map. NOT the engine.

The runner tests use it to prove the runner's own protocol and containment without an engine; the host answers the
same syscalls from its transaction (`host.js_syscalls.EngineSyscalls`, tested in `test_engine_syscalls.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autopilot_sync.jsmodule import SyscallRefusedError

# Error codes as SpacetimeDB's module ABI numbers them (bindings `errno`): NO_SUCH_TABLE, NO_SUCH_INDEX, NO_SUCH_ITER.
ERRNO_NO_SUCH_TABLE = 4
ERRNO_NO_SUCH_INDEX = 5
ERRNO_NO_SUCH_ITER = 6


@dataclass
class TableDouble:
    """Tables are named up front; rows are kept as the BSATN bytes the module sent, in insert order."""

    table_names: list[str]
    rows: dict[int, list[bytes]] = field(default_factory=dict)
    logs: list[tuple[int, str]] = field(default_factory=list)
    _iters: dict[int, list[bytes]] = field(default_factory=dict)
    _next_iter: int = 1

    def table_id(self, name: str) -> int:
        """The id the double gives `name` (its index in `table_names`)."""
        return self.table_names.index(name)

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        """Answer one syscall; unknown ones are refused so the module sees an error, never a hang."""
        if fn == "table_id_from_name":
            name = str(args[0])
            if name not in self.table_names:
                raise SyscallRefusedError(ERRNO_NO_SUCH_TABLE, f"no such table: {name}")
            return self.table_names.index(name), b""
        if fn == "index_id_from_name":
            raise SyscallRefusedError(ERRNO_NO_SUCH_INDEX, f"no such index: {args[0]}")
        if fn == "datastore_insert_bsatn":
            self.rows.setdefault(self._table(args[0]), []).append(body)
            return None, b""  # no generated columns in the double
        if fn == "datastore_table_row_count":
            return str(len(self.rows.get(self._table(args[0]), []))), b""
        if fn == "datastore_table_scan_bsatn":
            iter_id = self._next_iter
            self._next_iter += 1
            self._iters[iter_id] = list(self.rows.get(self._table(args[0]), []))
            return iter_id, b""
        if fn == "row_iter_bsatn_advance":
            return self._advance(int(args[0]), int(args[1]))
        if fn == "row_iter_bsatn_close":
            self._iters.pop(int(args[0]), None)
            return None, b""
        if fn == "console_log":
            self.logs.append((int(args[0]), str(args[1])))
            return None, b""
        if fn == "datastore_clear":
            cleared = self.rows.pop(self._table(args[0]), [])
            return str(len(cleared)), b""
        if fn == "console_timer_start":
            self._next_iter += 1
            return self._next_iter, b""
        if fn == "console_timer_end":
            return None, b""
        if fn == "identity":
            return "0", b""
        raise SyscallRefusedError(1, f"syscall {fn} is not answered by the test double")

    def _table(self, table_id: Any) -> int:
        if not isinstance(table_id, int) or not 0 <= table_id < len(self.table_names):
            raise SyscallRefusedError(ERRNO_NO_SUCH_TABLE, f"no such table id: {table_id}")
        return table_id

    def _advance(self, iter_id: int, capacity: int) -> tuple[Any, bytes]:
        pending = self._iters.get(iter_id)
        if pending is None:
            raise SyscallRefusedError(ERRNO_NO_SUCH_ITER, f"no such iterator: {iter_id}")
        if pending and len(pending[0]) > capacity:
            return {"too_small": len(pending[0])}, b""
        out = bytearray()
        while pending and len(out) + len(pending[0]) <= capacity:
            out += pending.pop(0)
        done = not pending
        if done:
            del self._iters[iter_id]
        return {"done": done}, bytes(out)
