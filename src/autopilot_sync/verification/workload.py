"""The producer side of a run: appends run events through the runtime's HTTP API and records what it was promised.

A producer that gets no answer (the runtime was killed mid-request) retries with the same `request_id`, which the
runtime answers with the original seqs (`"replayed": true`), so every event the runtime stored is eventually
acknowledged exactly once in the history. The expected payload hash is computed here from what was sent, not taken
from the runtime, so a runtime that altered a payload would show up as a hash mismatch.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.runtime.access import producer_session
from autopilot_sync.runtime.streams import run_stream
from autopilot_sync.verification.history import HistoryRecorder

KINDS = ("run.started", "run.message.delta", "run.tool.call", "run.message.delta")


@dataclass(frozen=True, slots=True)
class Batch:
    """One append request: its run, deterministic request id, and events (kind, data)."""

    run_id: str
    request_id: str
    events: tuple[tuple[str, dict[str, object]], ...]


class Producer:
    """Generates seed-determined batches and appends them, retrying each until the runtime acknowledges it."""

    def __init__(
        self, runtime_url: str, recorder: HistoryRecorder, rng: random.Random, run_ids: list[str], socket: Path
    ) -> None:
        self.runtime_url = runtime_url
        self.socket = socket
        self.recorder = recorder
        self.rng = rng
        self.run_ids = run_ids
        self.sent = dict.fromkeys(run_ids, 0)
        self.retries = 0
        self.acknowledged = 0

    @property
    def streams(self) -> list[str]:
        """The stream ids this producer writes."""
        return [run_stream(run_id) for run_id in self.run_ids]

    def batch(self, run_id: str, size: int) -> Batch:
        """The next batch of a run (its contents follow from the rng, so a seed replays the same payloads)."""
        start = self.sent[run_id]
        self.sent[run_id] += size
        events = tuple(
            (
                self.rng.choice(KINDS),
                {"n": start + i, "text": "".join(self.rng.choice("abcdefgh ") for _ in range(self.rng.randint(0, 40)))},
            )
            for i in range(size)
        )
        return Batch(run_id, f"{run_id}-{start}", events)

    async def append(self, http: aiohttp.ClientSession, batch: Batch, give_up_after: float = 120.0) -> None:
        """POST one batch until acknowledged (same request id on every retry); records each promised seq."""
        body = {"request_id": batch.request_id, "events": [{"kind": k, "data": d} for k, d in batch.events]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        while True:
            try:
                async with http.post(
                    f"{self.runtime_url}/v1/runs/{batch.run_id}/events",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    answer = await response.json()
                    if response.status == 200:
                        break
                    raise RuntimeError(f"runtime refused {batch.request_id}: HTTP {response.status} {answer}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                # No answer: the runtime may or may not have stored the batch; the retry below resolves it.
                self.record_unknown(batch, exc)
                self.retries += 1
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        appended = answer["appended"]
        if len(appended) != len(batch.events):
            raise RuntimeError(f"runtime answered {len(appended)} seqs for {len(batch.events)} events")
        for (kind, data), item in zip(batch.events, appended, strict=True):
            _, expected_hash = hash_value({"run_id": batch.run_id, "type": kind, "data": data})
            self.recorder.ack(str(item["stream_id"]), int(item["seq"]), expected_hash)
            self.acknowledged += 1

    def record_unknown(self, batch: Batch, error: BaseException) -> None:
        """Record each event of a call that got no answer as an unknown outcome this producer retries."""
        stream_id = run_stream(batch.run_id)
        reason = f"{type(error).__name__}: {error}"[:200]
        for kind, data in batch.events:
            _, expected_hash = hash_value({"run_id": batch.run_id, "type": kind, "data": data})
            self.recorder.unknown(
                batch.request_id,
                stream_id,
                expected_hash,
                retried=True,
                reason=reason,
            )

    async def publish(self, total_per_run: int, batch_size: int, pause: float = 0.0) -> None:
        """Append `total_per_run` more events to every run, runs in parallel, each run's batches in order."""
        async with producer_session(self.socket) as http:

            async def one_run(run_id: str) -> None:
                remaining = total_per_run
                while remaining > 0:
                    size = min(batch_size, remaining)
                    await self.append(http, self.batch(run_id, size))
                    remaining -= size
                    if pause:
                        await asyncio.sleep(pause)

            await asyncio.gather(*(one_run(run_id) for run_id in self.run_ids))
