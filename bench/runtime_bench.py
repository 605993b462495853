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

from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host, start_service
from autopilot_sync.nostr.keyfile import save_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.runtime.access import producer_session

STREAMS = 4


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    scenario: str
    events: int
    seconds: float
    p50: float | None = None
    p99: float | None = None


def start_system(root: Path, batch_size: int) -> tuple[list[ServiceProcess], str]:
    """Host, control and a runtime publishing in batches of `batch_size`; returns the processes and the runtime URL."""
    key = SecretKey.generate()
    key_path = root / "runtime" / "nostr.key"
    key_path.parent.mkdir(parents=True)
    save_secret_key(key_path, key)
    control_url = f"http://127.0.0.1:{free_port()}"
    host = start_host(root / "host", env={"AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": control_url})
    control = start_service(
        "control",
        env={
            "AUTOPILOT_SYNC_CONTROL_LISTEN": control_url.removeprefix("http://"),
            "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": control_url,
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(root / "control" / "signing.pem"),
            "AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL": host.url,
            "AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": key.public_key().hex,
        },
    )
    runtime = start_service(
        "runtime",
        ["--log-level", "WARNING"],
        env={
            "AUTOPILOT_SYNC_RUNTIME_LISTEN": "127.0.0.1:0",
            "AUTOPILOT_SYNC_RUNTIME_DATA_DIR": str(root / "runtime"),
            "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL": control_url,
            "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL": host.url,
            "AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH": str(key_path),
            "AUTOPILOT_SYNC_RUNTIME_PRODUCER_SOCKET": str(root / "runtime" / "producer.sock"),
            "AUTOPILOT_SYNC_RUNTIME_PUBLISH_BATCH_SIZE": str(batch_size),
        },
    )
    return [runtime, control, host], runtime.url


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
        processes, url = start_system(Path(tmp), batch_size)
        try:
            async with producer_session(Path(tmp) / "runtime" / "producer.sock") as http:
                started = time.perf_counter()
                await append_events(http, url, events, per_request=50)
                await wait_published(http, url)
                seconds = time.perf_counter() - started
                p50, p99 = await latency_quantiles(http, url)
            return Row(f"burst, publish batch {batch_size}", events, seconds, p50, p99)
        finally:
            for process in processes:
                process.stop()


async def steady(rate: float, seconds: float) -> Row:
    """Append one event per request at `rate` events/s; the outbox delay each event saw."""
    with tempfile.TemporaryDirectory() as tmp:
        processes, url = start_system(Path(tmp), 100)
        try:
            async with producer_session(Path(tmp) / "runtime" / "producer.sock") as http:
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
            for process in processes:
                process.stop()


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
