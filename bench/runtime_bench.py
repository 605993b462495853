"""Runtime throughput and outbox delay, end to end over real processes (host + control + runtime on 127.0.0.1).

Measures:
- events/s from the first append to the host's commit of the last one, with publish batches of 100 and of 1;
- the outbox delay (acknowledged append → acknowledged host commit, per event) at a steady append rate: p50/p99
  interpolated from the runtime's own `autopilot_sync_runtime_publish_latency_seconds` histogram.

Prints a Markdown table. Usage: `.venv/bin/python bench/runtime_bench.py [--events 2000] [--rate 200 --seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from autopilot_sync.devtools.stack import LocalStack
from autopilot_sync.runtime.access import producer_session
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.runtime import RuntimeSettings

STREAMS = 4


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    scenario: str
    events: int
    seconds: float
    p50: float | None = None
    p99: float | None = None


def start_system(root: Path, batch_size: int) -> LocalStack:
    """Host, control and a runtime publishing in batches of `batch_size` (the local stack's wiring)."""
    stack = LocalStack(
        root,
        runtime_env=service_environment(RuntimeSettings, {"publish_batch_size": batch_size}),
        log_level="WARNING",
    )
    try:
        return stack.start_all()
    except BaseException:
        stack.stop_all()
        raise


async def append_events(http: aiohttp.ClientSession, url: str, count: int, per_request: int) -> None:
    """Append `count` run events over `STREAMS` runs, `per_request` events per POST, one producer per run."""

    async def producer(run: int) -> None:
        share = count // STREAMS
        for start in range(0, share, per_request):
            events = [
                {"kind": "run.message.delta", "data": {"n": n}} for n in range(start, min(share, start + per_request))
            ]
            async with http.post(f"{url}/v1/runs/bench-{run}/events", json={"events": events}) as response:
                response.raise_for_status()

    await asyncio.gather(*(producer(run) for run in range(STREAMS)))


async def wait_published(http: aiohttp.ClientSession, url: str) -> None:
    """Until every stream's outbox is empty."""
    while True:
        async with http.get(f"{url}/v1/streams") as response:
            streams = (await response.json())["streams"]
        if streams and all(stream["pending"] == 0 for stream in streams):
            return
        await asyncio.sleep(0.02)


async def latency_quantiles(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """p50 and p99 of the publish latency histogram (linear within a bucket)."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name == "autopilot_sync_runtime_publish_latency_seconds":
            buckets = sorted(
                (float(sample.labels["le"]), sample.value)
                for sample in family.samples
                if sample.name.endswith("_bucket")
            )
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        target = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in buckets:
            if cumulative >= target:
                if bound == float("inf"):
                    return lower_bound
                share = (target - lower_count) / max(cumulative - lower_count, 1e-9)
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    return quantile(0.5), quantile(0.99)


async def throughput(batch_size: int, events: int) -> Row:
    """Append `events` as fast as the API takes them; time until the host committed them all."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_system(Path(tmp), batch_size)
        url = stack.runtime_url
        try:
            async with producer_session(stack.producer_socket) as http:
                started = time.perf_counter()
                await append_events(http, url, events, per_request=50)
                await wait_published(http, url)
                seconds = time.perf_counter() - started
                p50, p99 = await latency_quantiles(http, url)
            return Row(f"burst, publish batch {batch_size}", events, seconds, p50, p99)
        finally:
            stack.stop_all()


async def steady(rate: float, seconds: float) -> Row:
    """Append one event per request at `rate` events/s; the outbox delay each event saw."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_system(Path(tmp), 100)
        url = stack.runtime_url
        try:
            async with producer_session(stack.producer_socket) as http:
                started = time.perf_counter()
                sent = 0
                while time.perf_counter() - started < seconds:
                    due = started + sent / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    body = {"kind": "run.message.delta", "data": {"n": sent}}
                    async with http.post(f"{url}/v1/runs/steady-{sent % STREAMS}/events", json=body) as response:
                        response.raise_for_status()
                    sent += 1
                await wait_published(http, url)
                elapsed = time.perf_counter() - started
                p50, p99 = await latency_quantiles(http, url)
            return Row(f"steady {rate:g} events/s", sent, elapsed, p50, p99)
        finally:
            stack.stop_all()


def table(rows: list[Row]) -> str:
    """The Markdown table."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f}"

    lines = [
        "| scenario | events | seconds | events/s (append → host commit) | outbox delay p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.events} | {row.seconds:.2f} | {row.events / row.seconds:.0f} "
            f"| {ms(row.p50)} | {ms(row.p99)} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000, help="events per burst scenario")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the steady scenario")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady scenario")
    args = parser.parse_args()
    rows = [
        await throughput(100, args.events),
        await throughput(1, args.events // 4),
        await steady(args.rate, args.seconds),
    ]
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
