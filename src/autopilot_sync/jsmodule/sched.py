"""A short scheduler slice for the two ends of a module call (Linux EEVDF, kernel 6.12 and later).

Why: a TypeScript module's syscall is a round trip between two processes, and on a busy machine each hand-off waits in
the run queue behind other work. EEVDF lets a task ask for a shorter slice (`sched_attr.sched_runtime` of a
SCHED_OTHER task): it gets no more CPU, but an earlier deadline, so when it wakes it runs sooner. The runner asks for it
for its life, and so does the host's thread that calls the module (`short_slice_for_this_thread`, on its first call).
Best effort: on another kernel, platform or without permission nothing changes (docs/performance.md "(i)").
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import threading

#: The slice asked for, in ns: EEVDF's minimum (a hand-off should cost a wake-up, not a time slice).
SHORT_SLICE_NS = 100_000

_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(platform.machine())
_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}.get(platform.machine())
#: `struct sched_attr` up to `sched_util_max` (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice, priority, runtime,
#: deadline, period, util_min, util_max.
_ATTR = struct.Struct("<IIQiIQQQII")
_SCHED_OTHER = 0
_libc: ctypes.CDLL | None = None
_asked: set[int] = set()


def _syscall(number: int, *args: object) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return bool(_libc.syscall(number, *args) == 0)


def _plain(tid: int) -> bool:
    """Whether the thread runs under SCHED_OTHER with no flags (the only case a slice request is made for)."""
    if _SCHED_GETATTR is None:
        return False
    buf = ctypes.create_string_buffer(_ATTR.size)
    if not _syscall(_SCHED_GETATTR, tid, buf, _ATTR.size, 0):
        return False
    _, policy, flags, *_ = _ATTR.unpack(buf.raw)
    return bool(policy == _SCHED_OTHER and flags == 0)


def slice_of(tid: int) -> int | None:
    """The slice the kernel reports for thread or process `tid` (ns), or None where it cannot be read."""
    if _SCHED_GETATTR is None:
        return None
    buf = ctypes.create_string_buffer(_ATTR.size)
    if not _syscall(_SCHED_GETATTR, tid, buf, _ATTR.size, 0):
        return None
    return int(_ATTR.unpack(buf.raw)[5])


def set_slice(tid: int, slice_ns: int) -> bool:
    """Ask for `slice_ns` (0: the kernel's default) for thread or process `tid` (0: the caller); whether it took."""
    if _SCHED_SETATTR is None or not _plain(tid):
        return False
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return False
    attr = _ATTR.pack(_ATTR.size, _SCHED_OTHER, 0, nice, 0, slice_ns, 0, 0, 0, 0)
    return _syscall(_SCHED_SETATTR, tid, ctypes.create_string_buffer(attr, _ATTR.size), 0)


def short_slice_for_this_thread() -> None:
    """The calling thread asks for `SHORT_SLICE_NS` once and keeps it (the engine's thread that calls modules).

    Once, not per call: four scheduler syscalls through ctypes cost ~40 µs on the dev VM, as much as a crossing.
    Only a plain SCHED_OTHER thread is touched (a real-time or batch policy is left exactly as it is).
    """
    tid = threading.get_native_id()
    if tid in _asked:
        return
    _asked.add(tid)
    set_slice(0, SHORT_SLICE_NS)


def default_slice_for_this_thread() -> None:
    """Undo `short_slice_for_this_thread` (a runner whose limits say no short slice; the bench's A/B)."""
    tid = threading.get_native_id()
    if tid in _asked:
        _asked.discard(tid)
        set_slice(0, 0)
