"""A producer on its own SDK connection (no runtime), for the scenarios that cut the host inside an fsync."""

from __future__ import annotations

from dataclasses import dataclass, replace

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.connection import Connection
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, Reducers
from autopilot_sync.verification.powercut import PowerCutFault, read_ledger
from autopilot_sync.verification.scenarios.run import Run
from autopilot_sync.verification.stack import DATABASE


@dataclass
class DirectProducer:
    """An SDK connection that appends to one stream of its own with the producer's key (no runtime in between)."""

    run: Run
    conn: Connection
    stream_id: str
    run_id: str

    def event(self, seq: int) -> AppendSyncEventsBatchItem:
        """The `append_sync_events` item for `seq` (key `<stream>:<seq>`, the payload's hash)."""
        text, hashed = hash_value({"run_id": self.run_id, "type": "run.message.delta", "data": {"n": seq}})
        return AppendSyncEventsBatchItem(
            stream_id=self.stream_id,
            idempotency_key=f"{self.stream_id}:{seq}",
            kind="run.message.delta",
            payload=text,
            payload_hash=hashed,
            expected_seq=seq,
            published_at=Timestamp.now(),
        )

    async def append(self, seq: int) -> None:
        """Append one event and record its acknowledgement (a refusal ends the scenario)."""
        item = self.event(seq)
        answer = await Reducers(self.conn).append_sync_events([item])
        if not isinstance(answer, ReducerCommitted):
            raise RuntimeError(f"append of seq {seq} failed: {answer}")
        self.run.recorder.ack(self.stream_id, seq, item.payload_hash, item.idempotency_key)

    def cut(self) -> None:
        """SIGKILL the host now, on the loop (under the power cut: unfsynced bytes die), and journal what it lost."""
        assert self.run.stack.host is not None
        self.run.stack.require_power_cut_engaged()
        self.run.stack.host.kill()
        lost = read_ledger(self.run.stack.power_cut_ledger)
        self.run.metrics.setdefault("power_cut_lost_bytes", []).append(lost)
        self.run.journal.write(
            "fault", scenario=self.run.name, proxy="-", action="sigkill", detail=f"host (power cut: {lost} B)"
        )
        self.run.journal.faults += 1


async def direct_producer(run: Run, fsync_delay: float) -> DirectProducer:
    """Start the stack (no runtime) with the host under the power cut, no writeback (only an fsync saves a record,
    so the verdict does not depend on the rng) and a slow fsync; connect a producer to a stream of its own."""
    base = run.power_cut or PowerCutFault()
    run.power_cut = replace(base, writeback=0.0, fsync_delay=max(base.fsync_delay, fsync_delay))
    run.stack.power_cut = run.power_cut
    await run.stack.start(runtime=False)
    session = await fetch_session_token(
        run.stack.control_public_url, run.stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "race"
    )
    conn = await connect(run.stack.proxy("clients→host").url, DATABASE, token=session.token)
    run_id = f"{run.name}-{run.seed % 100000}"
    run.producer.run_ids = [run_id]  # the stream `finish` reads and checks (the HTTP producer itself is not used)
    return DirectProducer(run, conn, run.producer.streams[0], run_id)
