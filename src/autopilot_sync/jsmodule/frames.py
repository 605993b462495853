"""Length-prefixed frames between the host and the module runner.

A frame is: u32 LE length of the rest, u32 LE header length, a UTF-8 JSON header, raw body bytes (BSATN rows and
reducer arguments travel as bodies, untouched). Bounded: a frame larger than `MAX_FRAME_BYTES` is a protocol error.

Waiting for a frame first spins for up to `spin_s` on a non-blocking read, then blocks in `select`: a syscall's
answer or the module's next syscall usually comes within tens of µs, and catching it while still on the CPU saves the
scheduler wake-up that dominates a crossing on a busy machine (docs/performance.md "(i)").
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

import orjson

MAX_FRAME_BYTES = 64 * 1024 * 1024

Header = dict[str, Any]


class FrameTimeoutError(Exception):
    """No complete frame arrived before the deadline."""


class FrameEofError(Exception):
    """The runner closed its end of the pipe (it exited or was killed)."""


class FrameMalformedError(Exception):
    """The runner sent a frame above the bound or with a header that is not a JSON object."""


def encode_frame(header: Header, body: bytes = b"") -> bytes:
    """One frame ready to write. Headers go through orjson (a frame per syscall: ~2x cheaper than `json` both ways);
    an integer beyond 64 bits, which orjson refuses, falls back to `json` (the runner's `JSON.parse` reads both)."""
    try:
        head = orjson.dumps(header)
    except TypeError:
        head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<II", 4 + len(head) + len(body), len(head)) + head + body


class FrameReader:
    """Reads whole frames from a pipe fd, each under a deadline (monotonic seconds)."""

    def __init__(self, fd: int, *, spin_s: float = 0.0) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._spin_s = spin_s
        os.set_blocking(fd, False)

    def _fill(self, need: int, deadline: float) -> None:
        if len(self._buf) < need and self._spin_s > 0:
            self._spin(need)
        while len(self._buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FrameTimeoutError
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                raise FrameTimeoutError
            try:
                chunk = os.read(self._fd, max(65536, need - len(self._buf)))
            except BlockingIOError:  # select said readable, another reader took it: wait again
                continue
            if not chunk:
                raise FrameEofError
            self._buf += chunk

    def _spin(self, need: int) -> None:
        """Try non-blocking reads for up to `spin_s` (bounded CPU); whatever is still missing is waited for."""
        stop = time.perf_counter() + self._spin_s
        while True:
            try:
                chunk = os.read(self._fd, max(65536, need - len(self._buf)))
            except BlockingIOError:
                if time.perf_counter() >= stop:
                    return
                continue
            if not chunk:
                raise FrameEofError
            self._buf += chunk
            if len(self._buf) >= need:
                return

    def read(self, deadline: float) -> tuple[Header, bytes]:
        """The next frame's header and body."""
        self._fill(8, deadline)
        total, head_len = struct.unpack_from("<II", self._buf, 0)
        if total > MAX_FRAME_BYTES or head_len > total - 4:
            raise FrameMalformedError
        self._fill(4 + total, deadline)
        head = bytes(self._buf[8 : 8 + head_len])
        body = bytes(self._buf[8 + head_len : 4 + total])
        del self._buf[: 4 + total]
        try:
            header = orjson.loads(head)
        except ValueError:  # orjson.JSONDecodeError (invalid JSON or UTF-8) is one
            raise FrameMalformedError from None
        if not isinstance(header, dict):
            raise FrameMalformedError
        return header, body
