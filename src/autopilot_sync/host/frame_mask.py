"""Client WebSocket frames must be masked (RFC 6455 §5.1): an unmasked one closes the socket with 1002.

aiohttp's frame reader unmasks a masked frame and accepts an unmasked one alike, so a client could skip masking and
be served as normal. `MaskCheck` is a sans-I/O tracker of frame boundaries that only reads each frame's first bytes
(mask bit and payload length) and skips the payload; `MaskEnforcingResponse` puts it in front of aiohttp's reader,
and on the first unmasked frame stops feeding the reader and fails the socket with a 1002 protocol error, which
aiohttp answers with a close frame as it does for its own protocol errors. Frames before the unmasked one are handled.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_websocket import WebSocketError, WSCloseCode

#: The error's text (logged; aiohttp's close frame for a protocol error carries no reason).
UNMASKED_FRAME_TEXT = "client frames must be masked"


class MaskCheck:
    """Feed it a client's bytes as they arrive; it says where the first unmasked frame starts."""

    def __init__(self) -> None:
        self._head = bytearray()  # the current frame's header bytes seen so far
        self._skip = 0  # payload bytes of the current frame still to pass over

    def feed(self, data: bytes) -> int | None:
        """The offset in `data` at which an unmasked frame starts (0 when it started in an earlier chunk), or None.

        A header that arrives whole (the usual case: one frame per read) is read straight from `data`; one split
        across reads is gathered in `_head` first. Both read the same bits (tests/security, property-tested).
        """
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            if not self._head and i + 2 <= n:
                second = data[i + 1]
                if not second & 0x80:
                    return i
                short = second & 0x7F
                extended = 0 if short < 126 else 2 if short == 126 else 8
                end = i + 6 + extended
                if end <= n:
                    self._skip = int.from_bytes(data[i + 2 : i + 2 + extended], "big") if extended else short
                    i = end
                    continue
            need = self._header_length()
            take = min(need - len(self._head), n - i)
            self._head += data[i : i + take]
            i += take
            if len(self._head) >= 2 and not self._head[1] & 0x80:
                return max(0, i - len(self._head))
            if len(self._head) == self._header_length():
                self._skip = self._payload_length()
                self._head.clear()
        return None

    def _header_length(self) -> int:
        if len(self._head) < 2:
            return 2
        short = self._head[1] & 0x7F
        return 6 if short < 126 else 8 if short == 126 else 14

    def _payload_length(self) -> int:
        short = self._head[1] & 0x7F
        if short == 126:
            return int.from_bytes(self._head[2:4], "big")
        if short == 127:
            return int.from_bytes(self._head[2:10], "big")
        return short


class _MaskCheckingParser:
    """Stands in for aiohttp's frame reader on the connection: checks masking before handing bytes on."""

    def __init__(self, inner: Any, queue: Any) -> None:
        self._inner = inner
        self._queue = queue
        self._check = MaskCheck()
        self._failed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        bad = self._check.feed(bytes(data))
        if bad is None:
            result: tuple[bool, bytes] = self._inner.feed_data(data)
            return result
        if bad:
            self._inner.feed_data(data[:bad])
        self._fail()
        return True, b""

    def feed_tail(self, tail: bytes) -> None:
        """Bytes that arrived with the handshake and were handed to the inner reader before this guard existed."""
        if tail and self._check.feed(tail) is not None:
            self._fail()

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def _fail(self) -> None:
        self._failed = True
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, UNMASKED_FRAME_TEXT))


class MaskEnforcingResponse(web.WebSocketResponse):
    """A `WebSocketResponse` that closes with 1002 on the first unmasked client frame.

    It reaches into aiohttp's connection (the frame reader it installs after the handshake); the tests pin the
    behaviour so an aiohttp upgrade that moves these parts fails loudly rather than silently accepting frames.
    """

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        connection = request.protocol
        tail = bytes(getattr(connection, "_message_tail", b""))
        super()._post_start(request, protocol, writer)
        guard = _MaskCheckingParser(connection._payload_parser, self._reader)
        connection._payload_parser = guard
        guard.feed_tail(tail)
