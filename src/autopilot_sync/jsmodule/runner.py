"""`JsModuleRunner`: the host side of one Node child process running one TypeScript module (issue 18).

Why a child process: containment by construction. The module's exception is answered as a typed error; a call over
its time limit gets the runner SIGKILLed (Python never has to interrupt V8 from another thread); a runaway
allocation hits `--max-old-space-size` and aborts only the child. Any death is seen as EOF on the pipe, reported as
a typed error, and the next call starts a fresh runner. Syscalls are synchronous round trips on the same pipes,
answered by a `SyscallHandler` (the host's is `host.js_syscalls.EngineSyscalls`, over the engine's transaction);
console output arrives as one-way `log` frames, handed to the same handler as `console_log` and never answered.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autopilot_sync.jsmodule.errors import (
    JsCallTimeoutError,
    JsHeapLimitError,
    JsModuleError,
    JsModuleLoadError,
    JsProtocolError,
    JsReducerPanicError,
    JsReplayNeededError,
    JsRunnerCrashedError,
    JsSenderError,
    SyscallRefusedError,
)
from autopilot_sync.jsmodule.frames import (
    FrameEofError,
    FrameMalformedError,
    FrameReader,
    FrameTimeoutError,
    Header,
    encode_frame,
)
from autopilot_sync.jsmodule.sched import (
    SHORT_SLICE_NS,
    default_slice_for_this_thread,
    set_slice,
    short_slice_for_this_thread,
)

log = logging.getLogger(__name__)

RUNNER_JS = Path(__file__).parent / "js" / "runner.mjs"
_HEAP_LIMIT_MARKERS = ("Reached heap limit", "JavaScript heap out of memory")
_STDERR_TAIL_BYTES = 4096
#: Most index ids remembered as not to be looked up one way (a bound against a runner that sends arbitrary ids).
_NO_SPECULATE_MAX = 4096
#: How long each side polls the pipe before it blocks, when it waits for the other's next frame (µs). A crossing
#: whose answer arrives within this costs no scheduler wake-up; the bound caps the CPU a waiting side burns.
#: Off: measured in docs/performance.md "(i)" Round 3, 200 µs made the twin slower on a busy machine (a spinning
#: waiter takes the core the other end needs) and only a little faster with both processes on a core of their own.
SPIN_US = 0
#: A scan's last argument asking for its rows in the reply (host `js_syscalls.WITH_ROWS`; runner.mjs `WITH_ROWS`).
_WITH_ROWS = "rows"
#: The syscalls a `sysn` frame carries, by their kind number (runner.mjs `OP_INSERT`, `OP_EMPTY_SCAN`, `OP_UPDATE`):
#: the name, how many ids it takes, and whether it is a point lookup the module was told found nothing (so it asks
#: for its rows, to check that).
_ONE_WAY_OPS: dict[int, tuple[str, int, bool]] = {
    0: ("datastore_insert_bsatn", 1, False),
    1: ("datastore_index_scan_point_bsatn", 1, True),
    2: ("datastore_update_bsatn", 2, False),
}


class SyscallHandler(Protocol):
    """Answers the module's syscalls during a call: returns (value for the header, body bytes)."""

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]: ...


@dataclass(frozen=True)
class RunnerLimits:
    """Bounds of one runner: V8 old-space heap, time to import the module, default time per call, and how long each
    side of the pipe polls before it blocks (`SPIN_US`), and whether both ends ask for a short scheduler slice."""

    heap_mb: int = 64
    load_timeout_s: float = 20.0
    call_timeout_s: float = 2.0
    spin_us: int = SPIN_US
    short_slice: bool = True
    """Both ends ask the scheduler for a short slice (`jsmodule.sched`); False only to measure what that buys."""


class _Doorbell:
    """A 4-byte counter in a shared-memory file, bumped after every frame sent to the runner.

    Why: Node has no non-blocking pipe poll that does not throw (an EAGAIN costs ~20 µs), but it can `pread` a
    file cheaply; the runner spins on this counter before its blocking read (see `SPIN_US`).
    """

    def __init__(self) -> None:
        shm = "/dev/shm"
        self.file = tempfile.TemporaryFile(dir=shm if os.path.isdir(shm) else None)  # noqa: SIM115 - closed by close()
        self.file.truncate(4)
        self._map = mmap.mmap(self.file.fileno(), 4)
        self._rung = 0

    def ring(self) -> None:
        self._rung = (self._rung + 1) & 0xFFFFFFFF
        struct.pack_into("<I", self._map, 0, self._rung)

    def close(self) -> None:
        self._map.close()
        self.file.close()


class _Child:
    """One live runner process with its pipes and a file collecting its stderr (for the crash reason)."""

    def __init__(self, node: str, module_path: Path, limits: RunnerLimits) -> None:
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed by _discard
        self.bell = _Doorbell() if limits.spin_us > 0 else None
        bell_fd = self.bell.file.fileno() if self.bell is not None else -1
        # `ulimit -c 0`: V8's heap-limit abort must not leave a core dump of module memory (and the rows in it)
        # on disk; `exec` keeps the pid, so the runner is the process we time out and kill.
        argv = [
            "/bin/sh",
            "-c",
            'ulimit -c 0 && exec "$@"',
            "sh",
            node,
            f"--max-old-space-size={limits.heap_mb}",
            str(RUNNER_JS),
            str(module_path),
            str(to_child_r),
            str(from_child_w),
            str(limits.spin_us),
            str(bell_fd),
        ]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self.stderr,
                stderr=self.stderr,
                pass_fds=(to_child_r, from_child_w) if bell_fd < 0 else (to_child_r, from_child_w, bell_fd),
                start_new_session=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        if limits.short_slice:
            set_slice(self.proc.pid, SHORT_SLICE_NS)  # best effort; Node's threads, started later, inherit it
        self.reader = FrameReader(self._from_child_r, spin_s=limits.spin_us / 1e6)

    def send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            written = os.write(self._to_child_w, view)
            view = view[written:]
        if self.bell is not None:
            self.bell.ring()

    def stderr_tail(self) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        return self.stderr.read().decode(errors="replace")

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        for fd in (self._to_child_w, self._from_child_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.bell is not None:
            self.bell.close()
            self.bell = None
        return code


class JsModuleRunner:
    """Runs one ES-module file in a Node child: `describe()` and `call_reducer()`, each failure typed and contained.

    Not thread-safe: one call at a time, as the engine runs one transaction at a time.
    """

    def __init__(
        self,
        module_path: Path,
        syscalls: SyscallHandler,
        *,
        limits: RunnerLimits | None = None,
        node: str | None = None,
    ) -> None:
        found = node or shutil.which("node")
        if found is None:
            raise JsModuleLoadError("node is not installed (needed to run TypeScript modules)")
        self._node = found
        self._module_path = module_path.resolve()
        self._syscalls = syscalls
        self.limits = limits or RunnerLimits()
        self._child: _Child | None = None
        self.restarts = 0
        """How many times a dead or killed runner was replaced (first start not counted)."""
        self.round_trips = 0
        """Syscalls the runner waited for an answer to (one-way frames not counted): what a crossing costs."""
        self._one_way_failed: str | None = None
        self._no_speculate: set[int] = set()
        """Indexes where a point lookup the runner sent one way as empty found a row: always answered from then on."""

    @property
    def pid(self) -> int | None:
        """The current runner's process id, if one is running."""
        return self._child.proc.pid if self._child is not None else None

    def alive(self) -> bool:
        """Whether a runner process is running now (a health check; a dead one is replaced at the next call)."""
        return self._child is not None and self._child.proc.poll() is None

    def start(self) -> None:
        """Start the runner and wait until the module is imported and its hooks are registered."""
        if self._child is not None and self._child.proc.poll() is None:
            return
        if self._child is not None:
            self._discard(self._child)
        child = _Child(self._node, self._module_path, self.limits)
        self._child = child
        deadline = time.monotonic() + self.limits.load_timeout_s
        try:
            header, _ = child.reader.read(deadline)
            while header.get("t") == "log":  # the module may log while it is imported
                self._log(header)
                header, _ = child.reader.read(deadline)
        except (FrameTimeoutError, FrameEofError, FrameMalformedError) as exc:
            self._child = None
            child.kill()
            raise JsModuleLoadError(f"module runner did not start: {child.stderr_tail().strip()[-500:]}") from exc
        if header.get("t") != "ready":
            self._child = None
            child.kill()
            raise JsModuleLoadError(f"module failed to load: {header.get('msg', header)}")

    def close(self) -> None:
        """Stop the runner (idempotent)."""
        if self._child is not None:
            self._child.kill()
            self._child.stderr.close()
            self._child = None

    def __enter__(self) -> JsModuleRunner:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def describe(self) -> bytes:
        """The module's `__describe_module__()` bytes: a BSATN `RawModuleDef` (V10 from library 2.x)."""
        _, body = self._exchange({"t": "describe"}, b"", self.limits.load_timeout_s)
        return body

    def ping(self) -> None:
        """One empty round trip (for the bench)."""
        self._exchange({"t": "ping"}, b"", self.limits.call_timeout_s)

    def call_reducer(
        self,
        reducer_id: int,
        args: bytes,
        *,
        sender: int = 0,
        connection_id: int = 0,
        timestamp_us: int = 0,
        timeout_s: float | None = None,
        one_way_tables: tuple[int, ...] = (),
        jwt_payload: bytes = b"",
    ) -> None:
        """Run reducer `reducer_id` with BSATN `args`; raises a `JsModuleError` subclass on any failure.

        `one_way_tables`: table ids whose inserts the runner sends without waiting for an answer (tables without
        generated columns: the library reads nothing back). Half the round trips of an insert-heavy call; if one
        of them fails, `JsReplayNeededError` says the call's outcome is void (the caller rolls back and runs it
        again without one-way tables, so the module sees the error where it inserted, as SpacetimeDB's would). In
        such a call the runner also sends one way, as if empty, point lookups of an index whose recent lookups were
        all empty (runner.mjs `pointScan`); one that finds a row voids the run the same way. A run
        with one-way tables that times out or crashes is void too (its queued inserts were never seen), so a runaway
        call of that kind holds the host for up to twice its time limit.

        `jwt_payload`: what `get_jwt_payload` answers for the caller's own connection (UTF-8 JSON, empty for none),
        sent with the call so the runner answers it without a round trip (the sync module reads its caller's claims
        once per call).
        """
        header: Header = {
            "t": "call",
            "id": reducer_id,
            "sender": str(sender),
            "conn": str(connection_id),
            "ts": str(timestamp_us),
        }
        if jwt_payload:
            header["jwt"] = jwt_payload.decode()
        if one_way_tables:
            header["ow"] = list(one_way_tables)
            if self._no_speculate:
                header["ns"] = sorted(self._no_speculate)
        self._one_way_failed = None
        try:
            self._exchange(header, args, timeout_s if timeout_s is not None else self.limits.call_timeout_s)
        except (JsCallTimeoutError, JsRunnerCrashedError) as exc:
            # Inserts still queued in a runner that was killed or died were never seen: one of them might have
            # failed, and the module would have taken another path. Exact means running it again, answered.
            if not one_way_tables:
                raise
            self._one_way_failed = self._one_way_failed or f"the run ended before its queued inserts were seen: {exc}"
        except JsModuleError:
            if self._one_way_failed is None:
                raise  # else the failure belongs to a void run: it is run again
        finally:
            failed, self._one_way_failed = self._one_way_failed, None
        if failed is not None:
            raise JsReplayNeededError(f"a one-way insert failed ({failed}); the call is run again")

    def call_procedure(
        self,
        procedure_id: int,
        args: bytes,
        *,
        sender: int = 0,
        connection_id: int = 0,
        timestamp_us: int = 0,
        timeout_s: float | None = None,
    ) -> bytes:
        """Run procedure `procedure_id` with BSATN `args`: its BSATN return value, or a `JsModuleError` subclass."""
        header = {
            "t": "proc",
            "id": procedure_id,
            "sender": str(sender),
            "conn": str(connection_id),
            "ts": str(timestamp_us),
        }
        _, body = self._exchange(header, args, timeout_s if timeout_s is not None else self.limits.call_timeout_s)
        return body

    def call_view(self, view_index: int, args: bytes, *, sender: int | None, timeout_s: float | None = None) -> bytes:
        """Run view `view_index` (its index among the module's views of its kind): `__call_view__` for `sender`, or
        `__call_view_anon__` when `sender` is None. Returns the library's `ViewResultHeader` and rows as BSATN."""
        header: Header = {"t": "view", "id": view_index, "anon": sender is None}
        if sender is not None:
            header["sender"] = str(sender)
        _, body = self._exchange(header, args, timeout_s if timeout_s is not None else self.limits.call_timeout_s)
        return body

    def _exchange(self, request: Header, body: bytes, timeout_s: float) -> tuple[Header, bytes]:
        self.start()
        child = self._child
        assert child is not None
        deadline = time.monotonic() + timeout_s
        try:
            if self.limits.short_slice:
                short_slice_for_this_thread()
            else:
                default_slice_for_this_thread()
            return self._serve(child, request, body, deadline)
        except FrameTimeoutError:
            self._discard(child)
            raise JsCallTimeoutError(f"module call exceeded its time limit of {timeout_s:g} s; runner killed") from None
        except (FrameEofError, BrokenPipeError):
            raise self._crashed(child) from None
        except FrameMalformedError:
            self._discard(child)
            raise JsProtocolError("runner sent a malformed frame; runner killed") from None

    def _serve(self, child: _Child, request: Header, body: bytes, deadline: float) -> tuple[Header, bytes]:
        """Send `request`, answer the runner's syscalls and console lines, and return its final answer."""
        child.send(encode_frame(request, body))
        while True:
            header, reply_body = child.reader.read(deadline)
            kind = header.get("t")
            if kind == "sys":
                self.round_trips += 1
                child.send(self._answer(header, reply_body))
                continue
            if kind == "sysn":
                self._answer_one_way(header, reply_body)
                continue
            if kind == "log":
                self._log(header)
                continue
            if kind == "ok":
                return header, reply_body
            if kind == "err":
                message = str(header.get("msg", ""))
                if header.get("kind") == "sender":
                    raise JsSenderError(message)
                if header.get("kind") == "panic":
                    raise JsReducerPanicError(message)
                raise JsProtocolError(message)
            raise JsProtocolError(f"unexpected frame from runner: {kind!r}")

    def _answer_one_way(self, header: Header, body: bytes) -> None:
        """One-way syscalls (inserts sent without waiting, lookups sent as empty), many in one `sysn` frame: each
        acted on in order, never answered; a failure voids the call, and nothing after it is done.

        `ops` is flat, per syscall its kind, its ids (two for an update) and body length, the bodies back to back
        (runner.mjs `queueOp`): one frame read and one header parsed for all the syscalls a module made between two
        answered ones, instead of one per syscall. A batch that does not add up is the runner's fault: the call is
        void too.
        """
        ops = header.get("ops")
        if not isinstance(ops, list):
            self._one_way_failed = self._one_way_failed or "malformed one-way frame from the runner"
            return
        if self._one_way_failed is not None:
            return  # the call is void already: nothing more it asks for is done
        handle = self._syscalls.handle
        malformed = "malformed one-way frame from the runner"
        end = len(ops)
        room = len(body)
        at = 0
        i = 0
        # Per syscall, the checks inline (no id slice, no generator): this loop runs ~200 times per 100-event call.
        while i < end:
            kind = ops[i]
            op = _ONE_WAY_OPS.get(kind) if type(kind) is int else None
            if op is None or i + op[1] + 2 > end:
                self._one_way_failed = malformed
                return
            fn, width, with_rows = op
            first = ops[i + 1]
            if width == 1:
                size = ops[i + 2]
                i += 3
                if type(first) is not int:
                    self._one_way_failed = malformed
                    return
                ids: list[Any] = [first, _WITH_ROWS] if with_rows else [first]
            else:
                second = ops[i + 2]
                size = ops[i + 3]
                i += 4
                if type(first) is not int or type(second) is not int:
                    self._one_way_failed = malformed
                    return
                ids = [first, second]
            if type(size) is not int or not 0 <= size <= room - at:
                self._one_way_failed = malformed
                return
            op_body = body[at : at + size]
            at += size
            try:
                value, _ = handle(fn, ids, op_body)
            except SyscallRefusedError as refusal:
                self._one_way_failed = f"errno {refusal.code}: {refusal}"
                return
            except Exception:
                log.exception("one-way syscall %s failed in the host", fn)
                self._one_way_failed = f"host failed to answer syscall {fn}"
                return
            if with_rows and value != {"rows": []}:
                # A lookup the module was told was empty is not: what it did next is void (see `call_reducer`).
                if len(self._no_speculate) < _NO_SPECULATE_MAX:
                    self._no_speculate.add(ids[0])
                self._one_way_failed = f"a lookup of index {ids[0]} sent as empty found rows"
                return
        if at != len(body) and self._one_way_failed is None:
            self._one_way_failed = "malformed one-way frame from the runner"

    def _answer(self, header: Header, body: bytes) -> bytes:
        fn = str(header.get("fn"))
        args = header.get("a")
        if self._one_way_failed is not None:
            # The call is void (see `call_reducer`): refuse at once, so the module ends soon; it runs again anyway.
            return encode_frame({"t": "errno", "code": 1, "msg": "the call is run again (a one-way insert failed)"})
        try:
            value, reply = self._syscalls.handle(fn, args if isinstance(args, list) else [], body)
        except SyscallRefusedError as refusal:
            return encode_frame({"t": "errno", "code": refusal.code, "msg": str(refusal)})
        except Exception:
            # A handler bug must still answer, or the runner would wait for this reply forever and read the next
            # request as one. The module sees HOST_CALL_FAILURE (errno 1), as SpacetimeDB reports a host fault.
            log.exception("syscall %s failed in the host", fn)
            return encode_frame({"t": "errno", "code": 1, "msg": f"host failed to answer syscall {fn}"})
        return encode_frame({"t": "ret", "v": value}, reply)

    def _log(self, header: Header) -> None:
        """A one-way console line: handed to the handler as `console_log`, never answered."""
        try:
            self._syscalls.handle("console_log", [header.get("lvl", 2), str(header.get("msg", ""))], b"")
        except Exception:
            log.exception("console_log failed in the host")

    def _discard(self, child: _Child) -> tuple[int | None, str]:
        """Kill `child` (if still alive) and return its exit code and the tail of what it printed."""
        code = child.kill()
        tail = child.stderr_tail()
        child.stderr.close()
        self._child = None
        self.restarts += 1
        return code, tail

    def _crashed(self, child: _Child) -> JsRunnerCrashedError:
        code, tail = self._discard(child)
        if any(marker in tail for marker in _HEAP_LIMIT_MARKERS):
            return JsHeapLimitError(
                f"module exceeded its heap limit of {self.limits.heap_mb} MiB; runner restarted",
                returncode=code,
                stderr_tail=tail,
            )
        return JsRunnerCrashedError(
            f"module runner died (exit {code}); runner restarted", returncode=code, stderr_tail=tail
        )
