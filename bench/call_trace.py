"""Where one call's wall time goes: stamps at each step of publish → answer and publish → receipt, host and client.

`python -m bench.call_trace [--events 300] [--rounds 2] [--rate 20]` starts our host (with the probe of
`bench/call_trace_site` on its `PYTHONPATH`) and control, one producer and one SDK subscriber of the producer's
stream (the resume query, read through the row-level security join, as row b reads), then alternates per round an
*open* phase (one event every 1/`--rate` s, row b's shape: each call meets an idle host) and a *closed* phase (the next
event sent as soon as the previous one reached the subscriber: a busy host, as the unbatched row). Per phase it prints
the median time from the producer's first step (`t0`, before the event is built) to each later step, in µs:

- client: `client_write` (the SDK writes the call's frame), `subscriber_frame` (the subscriber's SDK has the update's
  frame), `receipt` (the row is in the subscriber's cache: what row b times), `answer` (the producer's call returned);
- host: `host_read` (the socket's bytes reach the WebSocket parser), `host_frame` (the reader task hands the frame to
  the session), `host_reducer` (reducer, commit, log record written), `host_flush_start` (the fsync handed to the
  flusher thread), `host_fsync` (the fsync), `host_flush_done` (back on the event loop), `host_subscriptions` (the
  updates' evaluation), `host_send` / `host_send#2` (the subscriber's update written, then the caller's answer).
Each `*_end` is the step's return; `segments_us` gives the hops between consecutive steps. The probe's own cost (a
few µs per stamp) is in every number.

Why: CPU profiles say what the host computes, not what waits for what; row b's p50 read about twice the unbatched
round trip, and only a per-step timeline says where the difference lies (docs/performance.md "Round 7 — percall3").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from autopilot_sync.client import connection as sdk
from bench.ours import Ours, event_input, resume_query
from bench.suite import client_loop_factory, payload

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE = Path(__file__).parent / "call_trace_site"
_now = time.perf_counter_ns


class ClientStamps:
    """The benchmark process's stamps: the producer's and the subscriber's SDK steps, by wrapping two methods."""

    def __init__(self) -> None:
        self.stamps: list[tuple[str, int]] = []
        self.subscriber: object = None
        write, on_frame = sdk.Connection._write, sdk.Connection._on_frame
        stamps = self.stamps

        async def traced_write(conn: sdk.Connection, frame: bytes) -> None:
            stamps.append(("client_write", _now()))
            await write(conn, frame)

        def traced_on_frame(conn: sdk.Connection, data: bytes) -> None:
            role = "subscriber_frame" if conn is self.subscriber else "producer_frame"
            stamps.append((role, _now()))
            on_frame(conn, data)

        sdk.Connection._write = traced_write  # type: ignore[method-assign]
        sdk.Connection._on_frame = traced_on_frame  # type: ignore[method-assign]


async def phase(ours: Ours, marks: ClientStamps, stream: str, events: int, rate: float | None) -> tuple[int, int]:
    """One phase on a fresh stream: open loop at `rate` events/s, or closed (rate None); its (start, end) ns."""
    producer = await ours.connect(producer=True)
    reader = await ours.connect()
    marks.subscriber = reader
    try:
        await ours.append(producer, [event_input(stream, 1, payload(1))])
        arrived: asyncio.Queue[None] = asyncio.Queue()

        def on_row(row: Any) -> None:
            marks.stamps.append(("receipt", _now()))
            arrived.put_nowait(None)

        reader.cache.on_insert("sync_event", on_row)
        await (await reader.subscribe([resume_query(stream, 1)])).applied()
        await asyncio.sleep(0.2)

        async def send(seq: int) -> None:
            marks.stamps.append(("t0", _now()))
            await ours.append(producer, [event_input(stream, seq, payload(seq, time.time_ns()))])
            marks.stamps.append(("answer", _now()))

        start = _now()
        began = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        for seq in range(2, events + 2):
            if rate is not None:
                await asyncio.sleep(max(0.0, began + (seq - 2) / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(send(seq)))
            await arrived.get()
            await tasks[-1]
        return start, _now()
    finally:
        await reader.close()
        await producer.close()


def timeline(stamps: list[tuple[int, str]], start: int, end: int) -> tuple[dict[str, list[float]], Counter[str]]:
    """Per step, its offsets (µs) from the event's `t0`, for the events between `start` and `end`; step orders seen."""
    offsets: dict[str, list[float]] = {}
    orders: Counter[str] = Counter()
    event: list[tuple[int, str]] = []

    def close() -> None:
        if not event or not any(step == "receipt" for _, step in event):
            return
        t0 = event[0][0]
        seen: Counter[str] = Counter()
        names = []
        for ns, step in event:
            seen[step] += 1
            name = step if seen[step] == 1 else f"{step}#{seen[step]}"
            names.append(name)
            offsets.setdefault(name, []).append((ns - t0) / 1e3)
        orders[" ".join(names)] += 1

    for ns, step in stamps:
        if not start <= ns <= end:
            continue
        if step == "t0":
            close()
            event = []
        if step == "t0" or event:
            event.append((ns, step))
    close()
    return offsets, orders


def segments(ordered: dict[str, float]) -> dict[str, float]:
    """`a -> b`: the time between consecutive steps (by median offset), what each hop of the call costs."""
    return {f"{a} -> {b}": round(ordered[b] - ordered[a], 1) for a, b in pairwise(ordered)}


def read_host_stamps(folder: Path) -> list[tuple[int, str]]:
    """The host probe's stamps (`bench/call_trace_site`), as (ns, step)."""
    found = []
    for path in folder.glob("host-trace.*"):
        for line in path.read_text().splitlines():
            step, ns = line.split()
            found.append((int(ns), step))
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    marks = ClientStamps()
    with tempfile.TemporaryDirectory(prefix="apsync-call-trace-") as scratch:
        trace = Path(scratch) / "host-trace"
        os.environ["APSYNC_CALL_TRACE"] = str(trace)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        windows: list[tuple[str, int, int]] = []
        try:
            warm = await ours.connect(producer=True)
            await warm.close()
            for round_no in range(args.rounds):
                for mode, rate in (("open", args.rate), ("closed", None)):
                    start, end = await phase(ours, marks, f"ct-{mode}-{round_no}", args.events, rate)
                    windows.append((mode, start, end))
        finally:
            ours.stop()
        host = read_host_stamps(Path(scratch))
    stamps = sorted([(ns, step) for step, ns in marks.stamps] + host)
    report: dict[str, Any] = {"load_average": os.getloadavg()}
    for mode in ("open", "closed"):
        merged: dict[str, list[float]] = {}
        orders: Counter[str] = Counter()
        for name, start, end in windows:
            if name == mode:
                found, seen = timeline(stamps, start, end)
                for step, values in found.items():
                    merged.setdefault(step, []).extend(values)
                orders.update(seen)
        events = len(merged.get("receipt", []))
        steps = {step: round(statistics.median(v), 1) for step, v in merged.items() if len(v) >= events * 0.9}
        ordered = dict(sorted(steps.items(), key=lambda item: item[1]))
        report[mode] = {
            "events": events,
            "median_us_from_t0": ordered,
            "segments_us": segments(ordered),
            "usual_order": orders.most_common(1)[0][0] if orders else "",
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.call_trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="events per phase")
    parser.add_argument("--rounds", type=int, default=2, help="open and closed phases, alternating")
    parser.add_argument("--rate", type=float, default=20.0, help="the open phase's events/s (row b's is 20)")
    with asyncio.Runner(loop_factory=client_loop_factory()) as runner:
        report = runner.run(run(parser.parse_args(argv)))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
