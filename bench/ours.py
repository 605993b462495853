"""Our system as the benchmark drives it: a real host (sync module) and a real control service as child processes.

Publishers get a `sync.append` token from control with an allowlisted Nostr key, readers a `sync.subscribe` token,
exactly as the runtime and the desktop do; every client talks to the host through the SDK over the WebSocket.
`LightSubscriber` is the one shortcut: a raw WebSocket that subscribes and counts frames without decoding them,
so a thousand subscribers fit in the benchmark process (they load the host the same way; they measure nothing).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.client.auth import exchange_websocket_token
from autopilot_sync.client.connection import Connection, connect, subscribe_url
from autopilot_sync.client.results import ReducerCommitted
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.client.session import PROTOCOL_V2
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_service
from autopilot_sync.module.canonical import hash_value
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Timestamp

DATABASE = "autopilot-sync"
APPEND = "append_sync_events"
GRANT = "grant_stream_readers"
TOKEN_TTL_SECONDS = 900
#: What the table says about this system's durability.
DURABILITY = "commit log fsync before ack (group commit)"


def event_tuple(stream_id: str, seq: int, payload: dict[str, Any]) -> tuple[Any, ...]:
    """One `SYNC_EVENT_INPUT`: canonical payload, its hash, key `<stream>:<seq>`, `expected_seq = seq`."""
    text, digest = hash_value(payload)
    return (stream_id, f"{stream_id}:{seq}", "bench.event", text, digest, seq, Timestamp(time.time_ns() // 1000))


@dataclass
class Ours:
    """Host + control; tokens cached until 2/3 of their lifetime."""

    root: Path
    host_env: dict[str, str] = field(default_factory=dict)
    key: SecretKey = field(default_factory=SecretKey.generate)
    reader_key: SecretKey = field(default_factory=SecretKey.generate)
    host_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    host: ServiceProcess | None = None
    control: ServiceProcess | None = None
    schema: ClientSchema | None = None
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _granted: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "host"

    def start(self) -> None:
        """Start the host, then control (which trusts nothing but is trusted by the host as an OIDC issuer)."""
        self.start_host()
        self.control = start_service(
            "control",
            ["--log-level", "WARNING"],
            env={
                "AUTOPILOT_SYNC_CONTROL_LISTEN": f"127.0.0.1:{self.control_port}",
                "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": self.control_url,
                "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(self.root / "control" / "signing.pem"),
                "AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL": self.url,
                "AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": self.key.public_key().hex,
                "AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_MAX_SECONDS": str(TOKEN_TTL_SECONDS),
                # Thousands of bench connections share two keys and may ask for tokens at once: lift the per-key
                # admission limits that protect a real deployment (docs/control.md).
                "AUTOPILOT_SYNC_CONTROL_TOKEN_REQUESTS_PER_MINUTE_PER_KEY": "1000000",
                "AUTOPILOT_SYNC_CONTROL_TOKEN_BURST_PER_KEY": "100000",
                "AUTOPILOT_SYNC_CONTROL_REPLAY_MEMORY_PER_KEY": "100000",
            },
        )

    def start_host(self, env: dict[str, str] | None = None) -> ServiceProcess:
        """(Re)start the host on its port and data directory."""
        self.host = self.spawn_host(self.data_dir, self.host_port, env)
        return self.host

    def spawn_host(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> ServiceProcess:
        """Another host process (sync module, trusting this control) on `port` and `data_dir`; waits until ready."""
        return start_service(
            "host",
            ["--log-level", "WARNING"],
            env={
                "AUTOPILOT_SYNC_HOST_LISTEN": f"127.0.0.1:{port}",
                "AUTOPILOT_SYNC_HOST_DATA_DIR": str(data_dir),
                "AUTOPILOT_SYNC_HOST_MODULE": "autopilot_sync.module",
                "AUTOPILOT_SYNC_HOST_DATABASE": DATABASE,
                "AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": self.control_url,
                # every reader shares one key: the storm and idle workloads open thousands of sockets with it
                "AUTOPILOT_SYNC_HOST_MAX_CONNECTIONS_PER_IDENTITY": "100000",
                **self.host_env,
                **(env or {}),
            },
            timeout=600,
        )

    def stop(self) -> None:
        """SIGTERM both (SIGKILL after a grace period)."""
        for service in (self.control, self.host):
            if service is not None:
                service.stop()

    @property
    def host_pid(self) -> int:
        assert self.host is not None
        return self.host.process.pid

    async def token(self, producer: bool) -> str:
        """A control-issued session token: `sync.append` for the producer, `sync.subscribe` for readers."""
        role = "producer" if producer else "reader"
        cached = self._tokens.get(role)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        grant = await fetch_session_token(
            self.control_url,
            self.key if producer else self.reader_key,
            ("sync.append", "sync.subscribe") if producer else ("sync.subscribe",),
            ("*",),
            TOKEN_TTL_SECONDS,
            "runtime" if producer else "desktop",
        )
        self._tokens[role] = (grant.token, time.monotonic() + TOKEN_TTL_SECONDS * 2 / 3)
        return grant.token

    async def connect(
        self, producer: bool = False, session: aiohttp.ClientSession | None = None, url: str | None = None
    ) -> Connection:
        """An SDK connection (no compression, the schema fetched once and reused)."""
        conn = await connect(
            url or self.url,
            DATABASE,
            token=await self.token(producer),
            compression=Compression.NONE,
            schema=self.schema,
            session=session,
        )
        self.schema = conn.schema
        return conn

    async def append(self, conn: Connection, events: list[tuple[Any, ...]]) -> None:
        """One `append_sync_events` call; raises unless it committed.

        A stream's first append is preceded by `grant_stream_readers` for the producer and the reader key, as the
        runtime does: reading is row-level (a stream's events are visible to its readers only).
        """
        for stream_id in {str(event[0]) for event in events} - self._granted:
            readers = [identity_from_claims(self.control_url, k.public_key().hex) for k in (self.key, self.reader_key)]
            granted = await conn.call(GRANT, stream_id, readers)
            if not isinstance(granted, ReducerCommitted):
                raise RuntimeError(f"grant refused: {granted}")
            self._granted.add(stream_id)
        result = await conn.call(APPEND, events)
        if not isinstance(result, ReducerCommitted):
            raise RuntimeError(f"append refused: {result}")

    async def fill(self, stream_id: str, count: int, payload: dict[str, Any], batch: int = 500) -> None:
        """Append `count` events to a fresh stream in batches (setup, not measured)."""
        conn = await self.connect(producer=True)
        try:
            for start in range(1, count + 1, batch):
                stop = min(count + 1, start + batch)
                await self.append(conn, [event_tuple(stream_id, s, payload) for s in range(start, stop)])
        finally:
            await conn.close()


def resume_query(stream_id: str, after_seq: int) -> str:
    """The resume subscription of docs/architecture.md."""
    return f"SELECT * FROM sync_event WHERE stream_id = '{stream_id}' AND seq > {after_seq}"


class LightSubscriber:
    """A raw v2 WebSocket subscriber that counts binary frames without decoding them (load only)."""

    def __init__(self) -> None:
        self.frames = 0
        #: set by the first frame after `Subscribe` (the `SubscribeApplied`)
        self.answered = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, ours: Ours, session: aiohttp.ClientSession, query: str) -> None:
        """Trade the token, open the socket, wait for `InitialConnection`, send one `Subscribe`."""
        token = await exchange_websocket_token(session, ours.url, await ours.token(False))
        self._ws = await session.ws_connect(
            subscribe_url(ours.url, DATABASE),
            params={"compression": Compression.NONE.value, "token": token},
            protocols=(PROTOCOL_V2,),
            max_msg_size=0,
        )
        first = await self._ws.receive()
        if first.type is not aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"no InitialConnection: {first.type}")
        await self._ws.send_bytes(m.encode_client_message(m.Subscribe(1, 1, (query,))))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type is aiohttp.WSMsgType.BINARY:
                self.frames += 1
                self.answered.set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
