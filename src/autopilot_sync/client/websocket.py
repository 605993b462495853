"""A WebSocket client (RFC 6455) on asyncio's protocols: every frame is handled in `data_received`, where it arrives.

Why not aiohttp's client: it hands each frame to a reader task through a queue, so every answer and every update costs
one event-loop turn more (the queue's waiter wakes the reader task, which then resolves the caller's future) plus a
heartbeat-reset callback per frame; at one call in flight those turns were most of the SDK's CPU per call
(docs/performance.md "Round 5 — sdkcall", "Round 7 — sdkside"). Here the read path is `data_received` → frame parse →
the handler (`Connection.ws_message`) → the caller's future, with no task in between.

What it does, and no more than the SDK needs: the HTTP/1.1 upgrade (`Sec-WebSocket-Key`/`Accept` checked, the
subprotocol offered and read back, no extensions), masked client frames, binary and text messages, fragmentation,
ping → pong, the closing handshake with its code and reason, a bound on every message (1009 beyond it), and a heartbeat
kept by a timer (a ping only when nothing arrived for a whole interval; no pong within half an interval ends it).
Every protocol fault closes with the RFC's code and reaches the handler as an error, never as a half-read message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import os
import ssl
from collections import deque
from typing import Protocol, cast
from urllib.parse import urlencode, urlsplit

from aiohttp._websocket.helpers import websocket_mask

#: RFC 6455 §1.3: appended to the client's key before hashing it into `Sec-WebSocket-Accept`.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The response head (status line and headers) is read up to this many bytes.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: Close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The server did not upgrade: its status and reason phrase (101 when it upgraded wrongly)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class WebSocketError(Exception):
    """The connection broke the WebSocket protocol (or went silent): the close code sent and why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (close code {code})")
        self.code = code


class MessageHandler(Protocol):
    """Where a `WebSocket` delivers what arrives, from `data_received` (so it must not block)."""

    def ws_message(self, data: bytes, binary: bool) -> None:
        """One whole message (a text message arrives as its raw bytes)."""

    def ws_closed(self, code: int | None, error: BaseException | None) -> None:
        """The connection ended: the close code (1006 when it just dropped) and the error, if any; called once."""


def mask_payload(data: bytes, key: int) -> bytes:
    """`data` XOR the 4-byte key repeated (RFC 6455 §5.3), as one big-integer XOR (no per-byte Python loop).

    The readable form of the masking: tests unmask what the client sent with it, and check `client_frame`'s
    compiled masking against it."""
    n = len(data)
    if not n:
        return b""
    pad = key.to_bytes(4, "big") * ((n + 3) >> 2)
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad[:n], "big")).to_bytes(n, "big")


class MaskKeys:
    """Masking keys for one connection's frames, four bytes at a time from a block of `os.urandom`.

    RFC 6455 §5.3 asks for keys an intermediary cannot predict, from a strong source of entropy (a seeded PRNG's is
    not): every key is still the kernel's random bytes, but one `getrandom` call serves `BLOCK // 4` frames instead of
    each frame making its own (docs/performance.md "Round 8 — sdkcall3").
    """

    BLOCK = 1024

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def next(self) -> bytes:
        """The next unused 4-byte key."""
        at = self._at
        if at >= len(self._block):
            self._block, at = os.urandom(self.BLOCK), 0
        self._at = at + 4
        return self._block[at : at + 4]


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final client frame masked with the 4-byte `key` (RFC 6455 §5.2-5.3).

    The XOR is aiohttp's compiled one (`websocket_mask`, the same code its own client masks with; aiohttp is already
    the SDK's HTTP client): ~0.2 µs for a one-event call's ~390 bytes against ~1.3 µs as a big-integer XOR.
    """
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    body = bytearray(payload)
    websocket_mask(key, body)
    return head + key + body


class WebSocket(asyncio.Protocol):
    """One client connection: the upgrade, then frames parsed as they arrive and handed to the attached handler.

    Until `attach`, whole messages wait in a queue for `receive()` (the session's first message is read that way).
    """

    def __init__(self, key: bytes, max_message_bytes: int) -> None:
        self._key = key
        self.max_message_bytes = max_message_bytes
        self.protocol: str | None = None
        #: the close code the connection ended with (None while open)
        self.close_code: int | None = None
        self._transport: asyncio.Transport | None = None
        self._upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head = bytearray()  # the response head while upgrading
        self._buffer = bytearray()  # an incomplete frame's bytes
        self._need = 0  # how many bytes `_buffer` must hold before parsing again
        self._fragments: list[bytes] | None = None
        self._fragment_binary = True
        self._fragment_size = 0
        self._handler: MessageHandler | None = None
        self._queued: deque[tuple[bytes, bool]] = deque()
        self._queued_end: tuple[int | None, BaseException | None] | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._close_sent = False
        self._ended = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._heard = False  # anything arrived since the last heartbeat tick
        self._mask_keys = MaskKeys()
        #: why the connection ended, when it was a fault (None for a clean close)
        self.error: BaseException | None = None
        #: the reason text of the server's close frame, if it sent one
        self.close_reason = ""

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if not self._upgraded.done():
            data = self._read_head(data)
            if not data:
                return
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._need:
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        self._parse(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        if not self._upgraded.done():
            self._upgraded.set_exception(ConnectionResetError(f"connection lost during the upgrade: {exc}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._end(CLOSE_ABNORMAL, exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # ----- the upgrade -----

    def request_upgrade(self, request: bytes) -> None:
        """Write the upgrade request (built by `open_websocket`)."""
        assert self._transport is not None
        self._transport.write(request)

    async def upgraded(self) -> None:
        """Wait for the server's `101 Switching Protocols` (HandshakeError otherwise)."""
        await self._upgraded

    def _read_head(self, data: bytes) -> bytes:
        """Gather the response head; once whole, check it and return the bytes after it (frames already sent)."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HANDSHAKE_BYTES:
                self._refuse(HandshakeError(0, f"response head longer than {MAX_HANDSHAKE_BYTES} bytes"))
            return b""
        head, rest = bytes(self._head[:end]), bytes(self._head[end + 4 :])
        self._head.clear()
        try:
            self.protocol = self._check_head(head)
        except HandshakeError as exc:
            self._refuse(exc)
            return b""
        self._upgraded.set_result(None)
        return rest

    def _check_head(self, head: bytes) -> str | None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HandshakeError(0, f"not an HTTP response: {lines[0][:80]!r}")
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        if status != 101:
            raise HandshakeError(status, reason or "Invalid response status")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            raise HandshakeError(101, "Invalid upgrade header")
        if "upgrade" not in headers.get("connection", "").lower():
            raise HandshakeError(101, "Invalid connection header")
        expected = base64.b64encode(hashlib.sha1(self._key + _ACCEPT_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise HandshakeError(101, "Invalid challenge response")
        if headers.get("sec-websocket-extensions"):
            raise HandshakeError(101, "the server chose an extension that was not offered")
        return headers.get("sec-websocket-protocol")

    def _refuse(self, exc: HandshakeError) -> None:
        if not self._upgraded.done():
            self._upgraded.set_exception(exc)
        self._ended = True
        if self._transport is not None:
            self._transport.close()

    # ----- frames in -----

    def _parse(self, data: bytes) -> None:
        """Every whole frame in `data`; the incomplete rest waits in `_buffer` until `_need` bytes are there."""
        i, n, limit = 0, len(data), self.max_message_bytes
        while n - i >= 2 and not self._ended:
            b0, b1 = data[i], data[i + 1]
            if b1 & 0x80:
                self._fail(CLOSE_PROTOCOL_ERROR, "the server masked a frame")
                return
            if b0 & 0x70:
                self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
                return
            length, start = b1 & 0x7F, i + 2
            if length == 126:
                if n - i < 4:
                    break
                length, start = int.from_bytes(data[i + 2 : i + 4], "big"), i + 4
            elif length == 127:
                if n - i < 10:
                    break
                length, start = int.from_bytes(data[i + 2 : i + 10], "big"), i + 10
            opcode = b0 & 0x0F
            if opcode >= _OP_CLOSE and (length > 125 or not b0 & 0x80):
                self._fail(CLOSE_PROTOCOL_ERROR, "a control frame fragmented or longer than 125 bytes")
                return
            if length > limit or (opcode == _OP_CONTINUATION and self._fragment_size + length > limit):
                self._fail(CLOSE_TOO_BIG, f"a message larger than {limit} bytes")
                return
            end = start + length
            if end > n:
                self._need = end - i
                self._buffer += data[i:]
                return
            self._frame(bool(b0 & 0x80), opcode, data[start:end])
            i = end
        if i < n and not self._ended:
            self._need = 0  # a header split across reads: parse again when anything more arrives
            self._buffer += data[i:]

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (_OP_BINARY, _OP_TEXT):
            if self._fragments is not None:
                self._fail(CLOSE_PROTOCOL_ERROR, "a new message before the last one's final fragment")
            elif fin:
                self._deliver(payload, opcode == _OP_BINARY)
            else:
                self._fragments, self._fragment_binary = [payload], opcode == _OP_BINARY
                self._fragment_size = len(payload)
        elif opcode == _OP_CONTINUATION:
            if self._fragments is None:
                self._fail(CLOSE_PROTOCOL_ERROR, "a continuation frame with no message started")
                return
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if fin:
                whole, self._fragments, self._fragment_size = b"".join(self._fragments), None, 0
                self._deliver(whole, self._fragment_binary)
        elif opcode == _OP_PING:
            self._write(_OP_PONG, payload)
        elif opcode == _OP_PONG:
            pass  # `_heard` is already set: the heartbeat only needs to know something arrived
        elif opcode == _OP_CLOSE:
            self._on_close_frame(payload)
        else:
            self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")

    def _on_close_frame(self, payload: bytes) -> None:
        if len(payload) == 1:
            self._fail(CLOSE_PROTOCOL_ERROR, "a close frame with a one-byte body")
            return
        code = int.from_bytes(payload[:2], "big") if payload else CLOSE_NO_STATUS
        if not self._close_sent:
            self._write(_OP_CLOSE, payload[:2])
            self._close_sent = True
        self.close_reason = payload[2:].decode("utf-8", "replace")
        if self._transport is not None:
            self._transport.close()
        self._end(code, None)

    def _deliver(self, data: bytes, binary: bool) -> None:
        handler = self._handler
        if handler is not None:
            handler.ws_message(data, binary)
            return
        self._queued.append((data, binary))
        self._wake()

    def _fail(self, code: int, message: str) -> None:
        """A protocol fault: send the close code (1006, a silent peer, is never sent: RFC 6455 §7.4.1), drop the
        connection, tell the handler."""
        error = WebSocketError(code, message)
        sendable = code != CLOSE_ABNORMAL
        if sendable and not self._close_sent and self._transport is not None and not self._transport.is_closing():
            self._write(_OP_CLOSE, code.to_bytes(2, "big"))
            self._close_sent = True
        if self._transport is not None:
            self._transport.close()
        self._end(code, error)

    def _end(self, code: int | None, error: BaseException | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self.close_code is not None:
            return
        self._ended = True
        self.close_code = code
        self.error = error
        if self._handler is not None:
            self._handler.ws_closed(code, error)
        else:
            self._queued_end = (code, error)
            self._wake()

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    # ----- the caller's side -----

    async def receive(self) -> tuple[bytes, bool] | None:
        """The next queued message before `attach` (None once the connection ended: see `close_code`, `error`)."""
        while not self._queued:
            if self._queued_end is not None:
                return None
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived
        return self._queued.popleft()

    def attach(self, handler: MessageHandler) -> None:
        """From now on hand every message straight to `handler` (what was queued first, in order)."""
        self._handler = handler
        while self._queued:
            handler.ws_message(*self._queued.popleft())
        if self._queued_end is not None:
            handler.ws_closed(*self._queued_end)

    def start_heartbeat(self, interval: float | None) -> None:
        """Ping when nothing arrived for `interval` s; end with 1006 when still nothing arrived `interval / 2` later."""
        if interval is None or interval <= 0 or self._ended:
            return
        loop = asyncio.get_running_loop()

        def settled() -> bool:
            """Ended, or something arrived since the last look (then the next whole interval starts now)."""
            if self._ended:
                return True
            if self._heard:
                self._heard = False
                self._heartbeat = loop.call_later(interval, tick)
                return True
            return False

        def tick() -> None:
            if not settled():
                self._write(_OP_PING, b"")
                self._heartbeat = loop.call_later(interval / 2, overdue)

        def overdue() -> None:
            if not settled():
                self._fail(CLOSE_ABNORMAL, f"no pong within {interval / 2:g} s")

        self._heard = False
        self._heartbeat = loop.call_later(interval, tick)

    def send(self, data: bytes) -> None:
        """Write one binary message as one frame (ConnectionResetError once the connection is closing)."""
        transport = self._transport
        if transport is None or self._ended or self._close_sent or transport.is_closing():
            raise ConnectionResetError("the WebSocket is closed")
        transport.write(client_frame(_OP_BINARY, data, self._mask_keys.next()))

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark of unwritten bytes."""
        if self._write_paused and not self._ended:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(client_frame(opcode, payload, self._mask_keys.next()))

    async def close(self, code: int = CLOSE_NORMAL, message: bytes = b"", wait: float = 5.0) -> None:
        """The closing handshake: send a close frame, wait up to `wait` s for the server's, then drop the socket."""
        transport = self._transport
        if transport is None:
            return
        if not self._close_sent and not self._ended and not transport.is_closing():
            self._write(_OP_CLOSE, code.to_bytes(2, "big") + message[:123])
            self._close_sent = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await asyncio.shield(self._lost)
        if not transport.is_closing():
            transport.close()
        self._end(code, None)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's default client TLS context, built once: loading the CA store costs ~0.1 s of CPU with OpenSSL 3
    (docs/performance.md "Round 4 — startup"), too much to pay per reconnect."""
    return ssl.create_default_context()


async def open_websocket(
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    protocols: tuple[str, ...] = (),
    max_message_bytes: int,
    within: float,
) -> WebSocket:
    """Connect to `ws(s)://…` and upgrade; `HandshakeError` when the server answers anything but 101, OSError when
    the socket cannot be opened, TimeoutError when the upgrade is not done `within` s."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
    if query:
        target += "?" + query
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}" if parts.port else f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    context = _tls_context() if secure else None
    async with asyncio.timeout(within):
        _, ws = await loop.create_connection(
            lambda: WebSocket(key, max_message_bytes), host, port, ssl=context, server_hostname=host if secure else None
        )
        try:
            ws.request_upgrade(request)
            await ws.upgraded()
        except BaseException:
            if ws._transport is not None:
                ws._transport.close()
            raise
    return ws
