"""Fan-out isolation: other clients' delivery latency with and without one client holding its full quota.

Usage: `.venv/bin/python bench/fanout_bench.py [--seconds 5] [--rate 50] [--readers 10] [--rounds 3] [--query-sets N]
[--no-fsync]`

Starts `autopilot-sync host` (chat module, default limits) as a process. A writer commits `add_person` at a fixed
rate; `--readers` clients each subscribe to `SELECT * FROM person` and record, per row, the time from the writer's
send to the `TransactionUpdate` carrying it. Each scenario runs the same load beside a different extra client:

- `alone`: none;
- `quota, no match`: one socket holding the per-connection quota of query sets and queries, none of which matches
  the commits (range queries whose bounds no row reaches, plus its quota of queries no index can route, which
  every commit must test);
- `quota, all match`: one socket holding the quota of query sets, every one matching every commit (the client reads
  its updates, so it is not dropped as too slow).

The scenarios run interleaved (`alone`, `no match`, `all match`, then again) for `--rounds` rounds on one host, so
a burst of load from elsewhere on the machine hits every scenario alike. Prints a Markdown table: per scenario the
median over the rounds of the readers' delivery latency p50 and p99 and of the round's p99 ratio to that round's
`alone` (issue 16 asks for at most 2x), with each round's ratio beside it. Numbers depend on the machine; run it on a
quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from autopilot_sync.devtools.processes import start_host
from autopilot_sync.examples.chat import module
from autopilot_sync.host.subscriptions import SubscriptionLimits
from autopilot_sync.host.ws_handshake import V2_PROTOCOL
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.messages import (
    CallReducer,
    CallReducerFlags,
    ClientMessage,
    PersistentTableRows,
    ServerMessage,
    Subscribe,
    TransactionUpdate,
    decode_server_message,
    encode_client_message,
)

PERSON = bsatn.codec(module.tables["person"].row_type)
ARGS = bsatn.codec(module.reducers["add_person"].params)
SCENARIOS = ("alone", "quota, no match", "quota, all match")


class _Socket:
    """One v2 connection without compression, spoken by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str) -> _Socket:
        ws = await session.ws_connect(
            f"{url}/v1/database/chat/subscribe", protocols=(V2_PROTOCOL,), params={"compression": "None"}
        )
        socket = cls(ws)
        await socket.recv()  # InitialConnection
        return socket

    async def send(self, message: ClientMessage) -> None:
        await self.ws.send_bytes(encode_client_message(message))

    async def recv(self) -> ServerMessage:
        msg = await self.ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"socket closed: {msg.type} {msg.extra}")
        return decode_server_message(msg.data[1:])

    async def subscribe_many(self, queries: list[tuple[str, ...]]) -> None:
        for i, sqls in enumerate(queries):
            await self.send(Subscribe(i, i, sqls))
        for _ in queries:
            await self.recv()


async def _reader(socket: _Socket, sent: dict[str, float], latencies: list[float]) -> None:
    while True:
        message = await socket.recv()
        if not isinstance(message, TransactionUpdate):
            continue
        now = time.perf_counter()
        for query_set in message.query_sets:
            for table in query_set.tables:
                for rows in table.rows:
                    if isinstance(rows, PersistentTableRows):
                        for row in rows.inserts:
                            started = sent.get(PERSON.decode(row)[1])
                            if started is not None:
                                latencies.append(now - started)


async def _drain(socket: _Socket) -> None:
    """Read and discard (undecoded: the bench process must not spend its time on the extra client's messages)."""
    while True:
        msg = await socket.ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"socket closed: {msg.type} {msg.extra}")


def _limits(args: argparse.Namespace) -> SubscriptionLimits:
    """The host's limits: its defaults, with `--query-sets` in place of the query-set cap when given."""
    limits = SubscriptionLimits()
    if args.query_sets:
        limits = dataclasses.replace(limits, max_query_sets_per_connection=args.query_sets)
    return limits


async def _scenario(url: str, scenario: str, args: argparse.Namespace, round_no: int) -> list[float]:
    limits = _limits(args)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        tasks = []
        extra = await _Socket.open(session, url)
        sets = limits.max_query_sets_per_connection
        per_set = min(limits.max_queries_per_set, limits.max_queries_per_connection // sets)
        if scenario == "quota, no match":
            # its quota of unindexed queries first (as few per set as the sets allow), range queries in the rest
            unindexed = [
                f"SELECT * FROM person WHERE age = {i} OR name = 'never'"
                for i in range(limits.max_unindexed_queries_per_connection)
            ]
            unindexed_sets = [tuple(unindexed[i : i + per_set]) for i in range(0, len(unindexed), per_set)]
            await extra.subscribe_many(
                unindexed_sets
                + [
                    tuple(f"SELECT * FROM person WHERE age > {4_000_000_000 + i * per_set + j}" for j in range(per_set))
                    for i in range(sets - len(unindexed_sets))
                ]
            )
        elif scenario == "quota, all match":
            await extra.subscribe_many([("SELECT * FROM person WHERE age >= 0",)] * sets)
        tasks.append(asyncio.create_task(_drain(extra)))
        for _ in range(args.readers):
            reader = await _Socket.open(session, url)
            await reader.subscribe_many([("SELECT * FROM person",)])
            tasks.append(asyncio.create_task(_reader(reader, sent, latencies)))
        writer = await _Socket.open(session, url)
        tasks.append(asyncio.create_task(_drain(writer)))
        interval = 1.0 / args.rate
        deadline = time.perf_counter() + args.seconds
        n = 0
        while time.perf_counter() < deadline:
            name = f"{scenario}-{round_no}-{n}"
            sent[name] = time.perf_counter()
            await writer.send(CallReducer(n, CallReducerFlags.DEFAULT, "add_person", ARGS.encode((name, n % 1000))))
            n += 1
            await asyncio.sleep(interval)
        await asyncio.sleep(1.0)  # let the last updates arrive
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
    return latencies


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


Row = tuple[str, float, float, list[float], int]


async def run(args: argparse.Namespace) -> list[Row]:
    """Every scenario `--rounds` times, interleaved, on one host: (scenario, median p50 ms, median p99 ms, each
    round's p99 / that round's `alone` p99, samples in all)."""
    with tempfile.TemporaryDirectory() as data_dir:
        host = start_host(
            Path(data_dir),
            module="autopilot_sync.examples.chat",
            database="chat",
            env={
                "AUTOPILOT_SYNC_HOST_FSYNC": "false" if args.no_fsync else "true",
                "AUTOPILOT_SYNC_HOST_MAX_QUERY_SETS_PER_CONNECTION": str(_limits(args).max_query_sets_per_connection),
            },
        )
        try:
            p50s: dict[str, list[float]] = {scenario: [] for scenario in SCENARIOS}
            p99s: dict[str, list[float]] = {scenario: [] for scenario in SCENARIOS}
            samples = dict.fromkeys(SCENARIOS, 0)
            for round_no in range(args.rounds):
                for scenario in SCENARIOS:
                    latencies = await _scenario(host.url, scenario, args, round_no)
                    p50s[scenario].append(_p(latencies, 0.5))
                    p99s[scenario].append(_p(latencies, 0.99))
                    samples[scenario] += len(latencies)
            return [
                (
                    scenario,
                    statistics.median(p50s[scenario]),
                    statistics.median(p99s[scenario]),
                    [p99 / alone for p99, alone in zip(p99s[scenario], p99s["alone"], strict=True)],
                    samples[scenario],
                )
                for scenario in SCENARIOS
            ]
        finally:
            host.stop()


def render(rows: list[Row]) -> str:
    """The Markdown table the command prints."""
    lines = [
        "| scenario | readers' p50 ms | readers' p99 ms | p99 / alone (median) | each round | samples |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, p50, p99, ratios, samples in rows:
        each = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        lines.append(f"| {scenario} | {p50:.2f} | {p99:.2f} | {statistics.median(ratios):.2f}x | {each} | {samples} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per scenario (default 5)")
    parser.add_argument("--rate", type=float, default=50.0, help="commits per second (default 50)")
    parser.add_argument("--readers", type=int, default=10, help="other clients measuring delivery (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, medians reported (default 3)")
    parser.add_argument(
        "--query-sets", type=int, default=0, help="query-set cap of host and quota client (default: the host default)"
    )
    parser.add_argument("--no-fsync", action="store_true", help="run the host with AUTOPILOT_SYNC_HOST_FSYNC=false")
    args = parser.parse_args(argv)
    limits = _limits(args)
    print(
        f"quota: {limits.max_query_sets_per_connection} query sets, {limits.max_queries_per_connection} queries; "
        f"{args.readers} readers, {args.rate:g} commits/s for {args.seconds:g} s per scenario, "
        f"{args.rounds} interleaved rounds"
    )
    print(render(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
