"""Keep the benchmark harness from rotting: a tiny run of every workload on our system (seconds, no peers), and a
tiny run with the peers when their servers and clients are installed (scripts/bench-setup.sh)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import PeerUnavailableError, require_binary
from bench.suite import WORKLOADS, Sizes, main, render, run_suite

TINY = Sizes(
    publish_batched=200,
    publish_unbatched=20,
    batch=50,
    latency_rate=100.0,
    latency_seconds=0.2,
    latency_subscribers=(1, 3),
    latency_probes=2,
    resume_events=300,
    storm_clients=(5,),
    idle_connections=5,
    recovery_commits=200,
    store_events=400,
    store_streams=2,
    fanin_streams=4,
    fanin_rate=5.0,
    fanin_seconds=0.4,
    fanin_connections=2,
    rounds=1,
)


def _peers_installed() -> bool:
    try:
        for name in ("nats-server", "redis-server"):
            require_binary(name)
    except PeerUnavailableError:
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("nats", "redis"))


async def test_every_workload_produces_a_number_for_our_system(tmp_path: Path) -> None:
    results = await run_suite(tmp_path, TINY, peers=())
    workloads = {row["workload"] for row in results["rows"]}
    assert workloads == set(WORKLOADS)
    for row in results["rows"]:
        value = row["median"]["ours"]
        assert value == value and value >= 0, row  # measured, not NaN
    report = render(results)
    assert report.startswith("| workload | metric |")
    assert "Floor: loopback TCP round trip" in report
    json.dumps(results)


def test_command_line_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--only", "a", "--no-peers", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "results.json").read_text())
    assert [row["workload"] for row in written["rows"]] == ["a", "a"]
    assert "| a | batched publish" in capsys.readouterr().out


@pytest.mark.skipif(not _peers_installed(), reason="nats-server/redis-server or their clients missing")
async def test_peers_are_measured_pair_by_pair(tmp_path: Path) -> None:
    results = await run_suite(tmp_path, TINY, only=["a", "c"])
    assert results["peers"] == ["nats", "nats-always", "redis"]
    assert "sync_interval: always" in results["durability"]["nats-always"]
    for row in results["rows"]:
        assert set(row["median"]) == {"ours", "nats", "nats-always", "redis"}, row
        assert all(ratio == ratio for ratio in row["ratio_vs"].values()), row
