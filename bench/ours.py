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

from autopilot_sync.client.connection import Connection, ConnectOptions, connect, subscribe_url
from autopilot_sync.client.results import ReducerCommitted
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.client.session import PROTOCOL_V2
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import ServiceProcess, start_service
from autopilot_sync.devtools.stack import DATABASE, MODULE, LocalStack
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, Reducers

TOKEN_TTL_SECONDS = 900
#: What the table says about this system's durability.
DURABILITY = "commit log fsync before ack (group commit)"


def event_input(stream_id: str, seq: int, payload: dict[str, Any]) -> AppendSyncEventsBatchItem:
    """One `append_sync_events` input: canonical payload, its hash, key `<stream>:<seq>`, `expected_seq = seq`."""
    text, digest = hash_value(payload)
    return AppendSyncEventsBatchItem(
        stream_id=stream_id,
        idempotency_key=f"{stream_id}:{seq}",
        kind="bench.event",
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp(time.time_ns() // 1000),
    )


#: Every reader shares one key: the storm and idle workloads open thousands of sockets with it, and the storm's
#: 2,000 clients connect at once (more than the host's default cap of 1,024 connections waiting for a request head,
#: which protects a real deployment from half-sent requests, docs/security.md).
HOST_FIELDS = {"max_connections_per_identity": 100000, "http_max_pending_connections": 100000}
#: The issuer of the claims engine-level benches call with; each names it trusted on its engine (the sync module
#: refuses every claim until its owner names an issuer: docs/security.md "The trusted issuer").
ENGINE_ISSUER = "https://control.bench"


async def trust_engine(engine: HostEngine) -> None:
    """Name `ENGINE_ISSUER` trusted on an engine a bench runs itself, as its owner (inline rather than through
    `devtools/trust.py`, so `--old` trees of the A/B benches that predate that module still run)."""
    outcome = await engine.call_reducer("set_trusted_issuer", (ENGINE_ISSUER,), Caller(engine.owner_identity))
    if outcome.status is not CallStatus.COMMITTED:
        raise RuntimeError(f"set_trusted_issuer: {outcome.message}")


#: Thousands of bench connections share two keys and may ask for tokens at once: lift the per-key admission limits
#: that protect a real deployment (docs/control.md).
CONTROL_FIELDS = {
    "token_ttl_max_seconds": TOKEN_TTL_SECONDS,
    "token_requests_per_minute_per_key": 1000000,
    "token_burst_per_key": 100000,
    "replay_memory_per_key": 100000,
}
#: Recovery of a large data directory can take minutes on a shared machine.
HOST_READY_TIMEOUT = 600


@dataclass
class Ours:
    """Host + control, wired by the local stack (`devtools/stack.py`); tokens cached until 2/3 of their lifetime."""

    root: Path
    #: the module the host serves: the Python sync module, or a built TypeScript module file (`PATH.js`)
    module: str = MODULE
    key: SecretKey = field(default_factory=SecretKey.generate)
    reader_key: SecretKey = field(default_factory=SecretKey.generate)
    schema: ClientSchema | None = None
    stack: LocalStack = field(init=False)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _granted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stack = LocalStack(
            self.root,
            runtime_key=self.key,
            host_env=service_environment(HostSettings, HOST_FIELDS),
            control_env=service_environment(ControlSettings, CONTROL_FIELDS),
            log_level="WARNING",
            module=self.module,
        )

    @property
    def url(self) -> str:
        return self.stack.host_url

    @property
    def control_url(self) -> str:
        return self.stack.control_url

    def start(self) -> None:
        """Start the host, then control (which trusts nothing but is trusted by the host as an OIDC issuer), then
        name control as the sync module's trusted issuer (the module refuses every claim until its owner does)."""
        self.stack.start_host(timeout=HOST_READY_TIMEOUT)
        self.stack.start_control()
        self.stack.trust_control()

    def trust(self, url: str) -> None:
        """Name control as the trusted issuer of a host `spawn_host` started on a fresh data directory."""
        self.stack.trust_control(url)

    def spawn_host(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> ServiceProcess:
        """Another host process (sync module, trusting this control) on `port` and `data_dir`; waits until ready."""
        return start_service(
            "host",
            self.stack.service_args(),
            env={**self.stack.host_environment(data_dir=data_dir, port=port), **(env or {})},
            timeout=HOST_READY_TIMEOUT,
        )

    def stop(self) -> None:
        """SIGTERM both (SIGKILL after a grace period)."""
        self.stack.stop_all()

    @property
    def host_pid(self) -> int:
        assert self.stack.host is not None
        return self.stack.host.process.pid

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
        self,
        producer: bool = False,
        session: aiohttp.ClientSession | None = None,
        url: str | None = None,
        handshake_timeout: float | None = None,
    ) -> Connection:
        """An SDK connection (no compression, the schema fetched once and reused); `handshake_timeout` replaces the
        SDK's 10 s from the 101 to `InitialConnection` (the storm's, on a loaded machine)."""
        options = None
        if handshake_timeout is not None:
            options = ConnectOptions(Compression.NONE, handshake_timeout=handshake_timeout)
        conn = await connect(
            url or self.url,
            DATABASE,
            token=await self.token(producer),
            compression=Compression.NONE,
            schema=self.schema,
            session=session,
            options=options,
        )
        self.schema = conn.schema
        return conn

    async def append(self, conn: Connection, events: list[AppendSyncEventsBatchItem]) -> None:
        """One `append_sync_events` call; raises unless it committed.

        A stream's first append is preceded by `grant_stream_readers` for the producer and the reader key, as the
        runtime does: reading is row-level (a stream's events are visible to its readers only).
        """
        reducers = Reducers(conn)
        for stream_id in {event.stream_id for event in events} - self._granted:
            readers = [identity_from_claims(self.control_url, k.public_key().hex) for k in (self.key, self.reader_key)]
            granted = await reducers.grant_stream_readers(stream_id, readers)
            if not isinstance(granted, ReducerCommitted):
                raise RuntimeError(f"grant refused: {granted}")
            self._granted.add(stream_id)
        result = await reducers.append_sync_events(events)
        if not isinstance(result, ReducerCommitted):
            raise RuntimeError(f"append refused: {result}")

    async def fill(self, stream_id: str, count: int, payload: dict[str, Any], batch: int = 500) -> None:
        """Append `count` events to a fresh stream in batches (setup, not measured)."""
        conn = await self.connect(producer=True)
        try:
            for start in range(1, count + 1, batch):
                stop = min(count + 1, start + batch)
                await self.append(conn, [event_input(stream_id, s, payload) for s in range(start, stop)])
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
        """Open the socket (the token in its `Authorization` header, as the SDK sends it), wait for
        `InitialConnection`, send one `Subscribe`."""
        self._ws = await session.ws_connect(
            subscribe_url(ours.url, DATABASE),
            params={"compression": Compression.NONE.value},
            headers={"Authorization": f"Bearer {await ours.token(False)}"},
            protocols=(PROTOCOL_V2,),
            max_msg_size=0,
        )
        first = await self._ws.receive()
        if first.type is not aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"no InitialConnection: {first.type}")
        await self._ws.send_bytes(m.encode_client_message(m.Subscribe(1, 1, (query,))))
        self._reader = asyncio.create_task(self._read())

    @property
    def live(self) -> bool:
        """Whether the socket is still open (the host has not dropped it)."""
        return self._ws is not None and not self._ws.closed

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
