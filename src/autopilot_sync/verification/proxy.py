"""A fault-injecting TCP proxy (in the spirit of Toxiproxy), placed between every pair of components in the suites.

Each `FaultProxy` listens on 127.0.0.1, forwards every accepted connection to one upstream address, and applies the
toxics active at that moment to each chunk in each direction: latency with jitter, a bandwidth limit, a blackhole
(data silently dropped while the TCP connection stays open: a half-open link), slicing into small pieces, and a
timeout (data dropped, connection closed later). `reset_all()` ends every live connection with a TCP RST, like a
NAT box or a crashed middlebox. Toxics can be switched while connections are live. Random choices (jitter, slice
sizes) come from one seeded `random.Random`, so a scenario's faults follow from its seed.

The proxy also keeps a request log: the head of every plain HTTP request that passes upstream (method and path;
WebSocket traffic after the upgrade is opaque). The suites use it to prove no legacy route was ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024
_METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS")


class Direction(enum.Enum):
    """Which way a toxic acts: upstream is client → server, downstream server → client."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"

    def covers(self, flow: Direction) -> bool:
        """True when a toxic with this direction acts on data flowing `flow`."""
        return self is Direction.BOTH or self is flow


@dataclass(frozen=True, slots=True)
class Latency:
    """Delay each chunk by `seconds` ± uniform `jitter`."""

    seconds: float
    jitter: float = 0.0
    direction: Direction = Direction.BOTH


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Let at most `bytes_per_second` through (each chunk waits for its share)."""

    bytes_per_second: int
    direction: Direction = Direction.BOTH


@dataclass(frozen=True, slots=True)
class Blackhole:
    """Drop every byte while keeping the connection open: the peer sees a silent, half-open link."""

    direction: Direction = Direction.BOTH


@dataclass(frozen=True, slots=True)
class Slicer:
    """Cut each chunk into pieces of `average` ± `variation` bytes, `delay` seconds apart (frames split on the wire)."""

    average: int = 16
    variation: int = 8
    delay: float = 0.0
    direction: Direction = Direction.BOTH


@dataclass(frozen=True, slots=True)
class Timeout:
    """Drop data, and close (RST) a connection `seconds` after data first met this toxic on it."""

    seconds: float
    direction: Direction = Direction.BOTH


Toxic = Latency | Bandwidth | Blackhole | Slicer | Timeout


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault the proxy applied (toxics switched, connections reset), for the run's journal."""

    at: float
    proxy: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class RequestSeen:
    """One plain HTTP request head that went through a proxy."""

    proxy: str
    method: str
    path: str
    upgrade: str


@dataclass
class ProxyStats:
    """Counters of one proxy."""

    connections: int = 0
    resets: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    dropped_bytes: int = 0
    upstream_refused: int = 0


class _HttpTap:
    """Parses request heads out of one connection's upstream bytes until it upgrades or becomes unparseable."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._buffer = b""
        self._skip = 0
        self.active = True

    def feed(self, data: bytes) -> None:
        if not self.active:
            return
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        self._buffer += data
        while self.active and self._buffer and not self._skip:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    self.active = False
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or parts[0] not in _METHODS:
                self.active = False
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            upgrade = headers.get(b"upgrade", b"").decode("latin-1").lower()
            self._proxy.requests.append(
                RequestSeen(self._proxy.name, parts[0].decode("latin-1"), parts[1].decode("latin-1"), upgrade)
            )
            if upgrade or headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                self.active = False
                return
            length = int(headers.get(b"content-length", b"0") or 0)
            taken = min(length, len(self._buffer))
            self._buffer = self._buffer[taken:]
            self._skip = length - taken


@dataclass(eq=False)
class _Link:
    """One proxied connection: both stream pairs and the tasks pumping between them."""

    client_writer: asyncio.StreamWriter
    server_writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closing: asyncio.Task[None] | None = None

    def abort(self, reset: bool) -> None:
        for writer in (self.client_writer, self.server_writer):
            transport = writer.transport
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()


class FaultProxy:
    """A TCP proxy from `127.0.0.1:<port>` to `upstream_host:upstream_port` with switchable toxics."""

    def __init__(
        self,
        name: str,
        upstream_host: str,
        upstream_port: int,
        *,
        rng: random.Random,
        listen_port: int = 0,
        on_fault: Callable[[FaultRecord], None] | None = None,
    ) -> None:
        self.name = name
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_port = listen_port
        self.rng = rng
        self.stats = ProxyStats()
        self.requests: list[RequestSeen] = []
        self.faults: list[FaultRecord] = []
        self._on_fault = on_fault
        self._toxics: tuple[Toxic, ...] = ()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    # ----- lifecycle -----

    @property
    def port(self) -> int:
        """The port it listens on (known after `start`)."""
        return self.listen_port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: what a component is told instead of the real address."""
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def live_connections(self) -> int:
        """Connections currently proxied."""
        return len(self._links)

    async def start(self) -> FaultProxy:
        """Listen (on `listen_port`, or a free port when 0)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port, reuse_address=True)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            link.abort(reset=False)
            for task in link.tasks:
                task.cancel()
        self._links.clear()

    # ----- faults -----

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        """The toxics active now."""
        return self._toxics

    def set_toxics(self, *toxics: Toxic) -> None:
        """Replace the active toxics (affects live connections from their next chunk)."""
        self._toxics = tuple(toxics)
        self._record("toxics", ", ".join(repr(t) for t in toxics) or "none")

    def clear(self) -> None:
        """Remove every toxic."""
        self.set_toxics()

    def reset_all(self) -> int:
        """End every live connection with a TCP RST on both sides; returns how many were reset."""
        links = list(self._links)
        for link in links:
            self._reset(link)
        self._record("reset", f"{len(links)} connections")
        return len(links)

    def _reset(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.stats.resets += 1
            link.abort(reset=True)

    def _record(self, action: str, detail: str) -> None:
        record = FaultRecord(time.time(), self.name, action, detail)
        self.faults.append(record)
        if self._on_fault is not None:
            self._on_fault(record)

    # ----- forwarding -----

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            self.stats.upstream_refused += 1
            client_writer.transport.abort()
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        tap = _HttpTap(self)
        up = asyncio.create_task(self._pump(client_reader, server_writer, Direction.UPSTREAM, link, tap))
        down = asyncio.create_task(self._pump(server_reader, client_writer, Direction.DOWNSTREAM, link, None))
        link.tasks = [up, down]
        try:
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            if link in self._links:
                self._links.discard(link)
                link.abort(reset=False)
            if link.closing is not None:
                link.closing.cancel()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        flow: Direction,
        link: _Link,
        tap: _HttpTap | None,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError, RuntimeError):
                            writer.write_eof()
                    return
                if tap is not None:
                    tap.feed(data)
                if flow is Direction.UPSTREAM:
                    self.stats.bytes_upstream += len(data)
                else:
                    self.stats.bytes_downstream += len(data)
                await self._forward(data, writer, flow, link)
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            # One side vanished (reset, abort): end the whole link so the other side learns at once.
            if link in self._links:
                self._links.discard(link)
                link.abort(reset=True)

    async def _forward(self, data: bytes, writer: asyncio.StreamWriter, flow: Direction, link: _Link) -> None:
        toxics = [toxic for toxic in self._toxics if toxic.direction.covers(flow)]
        for toxic in toxics:
            if isinstance(toxic, Blackhole):
                self.stats.dropped_bytes += len(data)
                return
            if isinstance(toxic, Timeout):
                self.stats.dropped_bytes += len(data)
                if link.closing is None:
                    link.closing = asyncio.create_task(self._reset_later(link, toxic.seconds))
                return
        pieces = [data]
        delay_between = 0.0
        rate = 0
        for toxic in toxics:
            if isinstance(toxic, Latency):
                wait = toxic.seconds + self.rng.uniform(-toxic.jitter, toxic.jitter)
                if wait > 0:
                    await asyncio.sleep(wait)
            elif isinstance(toxic, Slicer):
                pieces = self._slice(data, toxic)
                delay_between = toxic.delay
            elif isinstance(toxic, Bandwidth):
                rate = toxic.bytes_per_second
        for piece in pieces:
            if rate:
                await asyncio.sleep(len(piece) / rate)
            writer.write(piece)
            await writer.drain()
            if delay_between:
                await asyncio.sleep(delay_between)

    def _slice(self, data: bytes, slicer: Slicer) -> list[bytes]:
        pieces: list[bytes] = []
        offset = 0
        while offset < len(data):
            size = max(1, slicer.average + self.rng.randint(-slicer.variation, slicer.variation))
            pieces.append(data[offset : offset + size])
            offset += size
        return pieces

    async def _reset_later(self, link: _Link, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._reset(link)
