"""The SDK's receive path in process, old against new tree: CPU per one-row update and per call answer.

`python -m bench.sdk_receive --old /tmp/old/src [--new src] [--rounds 8] [--frames 2000]` first captures real frames
from a real host (this tree's host and SDK: `--frames` one-event calls on a stream one subscriber follows; the
subscriber's `TransactionUpdate` frames and the producer's `ReducerResult` frames are recorded as they arrive), then
replays them alternately in one process per tree (its `src` first on `PYTHONPATH`, the order flipped every round):
each replay feeds every frame to a fresh connection's `ws_message` (decode → check → cache → `on_insert` callback, and
the answer resolving a waiting future) and reports `time.process_time` per frame. No socket and no event-loop turn
is counted: what is left is the SDK's own Python per received message, which `bench.sdkcall_ab` sees only through the
noise of the machine. Needs both trees to have `Connection.ws_message` (or the old `_on_frame`, used as a fallback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ab import Samples, interleaved, run_worker, table

BENCH_ROOT = Path(__file__).resolve().parent.parent


async def _capture(frames: int, out: Path) -> None:
    """Record the frames a subscriber and a producer receive for `frames` one-event calls."""
    from autopilot_sync.client.connection import Connection, connect
    from autopilot_sync.devtools.stack import DATABASE
    from autopilot_sync.spacetime.frames import Compression
    from autopilot_sync.sync_bindings import Reducers
    from bench.ours import Ours, event_input, resume_query
    from bench.suite import payload

    recorded: dict[int, list[bytes]] = {}
    original = Connection.ws_message

    def recording(self: Connection, data: bytes, binary: bool) -> None:
        recorded.setdefault(id(self), []).append(data)
        original(self, data, binary)

    with tempfile.TemporaryDirectory(prefix="apsync-sdk-receive-") as scratch:
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        try:
            setup = await ours.connect(producer=True)
            await ours.append(setup, [event_input("rx", 1, payload(1))])
            await setup.close()
            tokens = (await ours.token(True), await ours.token(False))
            Connection.ws_message = recording  # type: ignore[method-assign]
            producer = await connect(ours.url, DATABASE, token=tokens[0], compression=Compression.NONE)
            reader = await connect(
                ours.url, DATABASE, token=tokens[1], compression=Compression.NONE, schema=producer.schema
            )
            query = resume_query("rx", 1)
            await (await reader.subscribe([query])).applied()
            recorded.clear()
            reducers = Reducers(producer)
            for seq in range(2, frames + 2):
                await reducers.append_sync_events([event_input("rx", seq, payload(seq))])
            await asyncio.sleep(0.2)
            updates, answers = recorded.get(id(reader), []), recorded.get(id(producer), [])
            await reader.close()
            await producer.close()
        finally:
            ours.stop()
    await asyncio.to_thread(out.write_bytes, pickle.dumps({"updates": updates, "answers": answers, "query": query}))
    print(f"captured {len(updates)} updates, {len(answers)} answers", file=sys.stderr)


def _replay(path: Path) -> dict[str, float]:
    """Feed the captured frames to fresh connections of this process's tree; CPU µs per frame."""
    from autopilot_sync.client.cache import ClientCache
    from autopilot_sync.client.connection import Connection
    from autopilot_sync.client.schema import ClientSchema
    from autopilot_sync.module import module
    from autopilot_sync.spacetime import messages as m
    from autopilot_sync.spacetime.values import ConnectionId, Identity
    from autopilot_sync.sync_bindings import ROW_TYPES

    captured = pickle.loads(path.read_bytes())
    schema = ClientSchema.from_json(module.schema_json(), ROW_TYPES)

    class _SocketDouble:
        """Stands in for the socket: the replay never writes."""

        def attach(self, handler: object) -> None: ...
        def start_heartbeat(self, interval: float | None) -> None: ...
        def send(self, data: bytes) -> None: ...
        def send_bytes(self, data: bytes) -> None: ...

    async def run() -> dict[str, float]:
        initial = m.InitialConnection(Identity(1), ConnectionId(2), "t")
        kwargs: dict[str, Any] = {
            "schema": schema,
            "protocol": "v3.bsatn.spacetimedb",
            "initial": initial,
            "base_url": "http://x",
            "database": "d",
        }
        from autopilot_sync.client.connection import ConnectOptions

        def fresh() -> Connection:
            conn = Connection.__new__(Connection)
            reader_task = asyncio.create_task  # old trees start a reader task in __init__: give it nothing to do
            asyncio.create_task = lambda coro, **_: (coro.close(), asyncio.get_running_loop().create_future())[1]  # type: ignore[assignment,misc]
            try:
                Connection.__init__(
                    conn,
                    session=None,  # type: ignore[arg-type]
                    owns_session=False,
                    ws=_SocketDouble(),  # type: ignore[arg-type]
                    cache=ClientCache(),
                    options=ConnectOptions(heartbeat=None),
                    **kwargs,
                )
            finally:
                asyncio.create_task = reader_task  # type: ignore[assignment]
            return conn

        feed = "ws_message" if hasattr(Connection, "ws_message") else "_on_frame"

        def deliver(conn: Connection, data: bytes) -> None:
            if feed == "ws_message":
                conn.ws_message(data, True)
            else:
                conn._on_frame(data)

        # subscriber: a query set applied, then every captured update
        sub = fresh()
        qs, _ = sub.state.subscribe([captured["query"]], sub)
        sub.state._query_sets[qs.id].phase = sub.state._query_sets[qs.id].phase.__class__.APPLIED
        seen: list[object] = []
        sub.cache.on_insert("sync_event", seen.append)
        updates = captured["updates"]
        cpu = time.process_time()
        for data in updates:
            deliver(sub, data)
        update_us = (time.process_time() - cpu) / len(updates) * 1e6
        assert len(seen) == len(updates), (len(seen), len(updates))

        # producer: one call owed per answer (request ids 1..n, as captured), a future awaiting each
        prod = fresh()
        loop = asyncio.get_running_loop()
        answers = captured["answers"]
        futures = []
        for _ in answers:
            message = prod.state.call("append_sync_events", b"")
            future = loop.create_future()
            prod._calls[message.request_id] = future
            futures.append(future)
        cpu = time.process_time()
        for data in answers:
            deliver(prod, data)
        answer_us = (time.process_time() - cpu) / len(answers) * 1e6
        assert all(f.done() and not f.exception() for f in futures)
        return {"update_cpu_us": update_us, "answer_cpu_us": answer_us}

    import uvloop

    return uvloop.run(run())


def _side(src: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(BENCH_ROOT)])}
    return run_worker(["-m", "bench.sdk_receive", "--replay", str(path)], env, f"replay on {src}", timeout=600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_receive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="the old tree's src folder")
    parser.add_argument("--new", type=Path, default=BENCH_ROOT / "src", help="the new tree's src folder")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay is not None:
        print(json.dumps(_replay(args.replay)))
        return 0
    if args.old is None:
        parser.error("--old is required")
    with tempfile.TemporaryDirectory(prefix="apsync-sdk-receive-") as scratch:
        path = Path(scratch) / "frames.pickle"
        import uvloop

        uvloop.run(_capture(args.frames, path))
        samples = Samples()
        sides = {"old": str(args.old), "new": str(args.new)}
        for _, (name, src) in interleaved(list(sides.items()), args.rounds):
            row = _side(src, path)
            print(json.dumps({"side": name, **row}), file=sys.stderr)
            samples.add(name, row)
    medians = samples.medians()
    print(table(medians), file=sys.stderr)
    print(json.dumps(medians | {"load_average": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
