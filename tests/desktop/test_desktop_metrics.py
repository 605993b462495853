"""The desktop's own `/metrics`: numbers fed from its published state, served on loopback only when configured."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from desktop_stack import Desktop, Stack, running_stack, stream_state
from prometheus_client.parser import text_string_to_metric_families

from autopilot_sync.desktop.metrics import DesktopMetrics, serve_metrics
from autopilot_sync.desktop.state import (
    ConnectionPhase,
    ConnectionView,
    DesktopState,
    PresenceView,
    StateHub,
    StreamView,
)
from autopilot_sync.devtools.processes import free_port, start_service
from autopilot_sync.settings.base import SettingsError
from autopilot_sync.settings.desktop import DesktopSettings
from autopilot_sync.settings.fields import ListenAddress

RUN = "r1"
STREAM = f"runtime.run.{RUN}.events"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


# ----- the numbers, from state values alone -----


def test_numbers_follow_the_published_states() -> None:
    hub = StateHub()
    metrics = DesktopMetrics()
    metrics.attach(hub)
    text = metrics.exposition().decode()
    assert value(text, "autopilot_sync_desktop_connection_phase", phase="connecting") == 1
    assert value(text, "autopilot_sync_desktop_connection_phase", phase="live") == 0
    assert value(text, "autopilot_sync_desktop_reconnects_total") == 0

    live = ConnectionView(ConnectionPhase.LIVE, token_fetches=1)
    stream = StreamView("runs", head_seq=100, applied_seq=40, replay_from_seq=20, duplicates=3, acks_sent=1)
    hub.publish(replace(hub.state, connection=live, presence=PresenceView(connections=3, users=2), streams=(stream,)))
    text = metrics.exposition().decode()
    assert value(text, "autopilot_sync_desktop_connection_phase", phase="connecting") == 0
    assert value(text, "autopilot_sync_desktop_connection_phase", phase="live") == 1
    assert value(text, "autopilot_sync_desktop_reconnects_total") == 0  # the first session is no reconnect
    assert value(text, "autopilot_sync_desktop_token_fetches_total") == 1
    assert value(text, "autopilot_sync_desktop_presence_users") == 2
    assert value(text, "autopilot_sync_desktop_presence_connections") == 3
    assert value(text, "autopilot_sync_desktop_stream_head_seq", stream_id="runs") == 100
    assert value(text, "autopilot_sync_desktop_stream_applied_seq", stream_id="runs") == 40
    assert value(text, "autopilot_sync_desktop_stream_lag", stream_id="runs") == 60
    assert value(text, "autopilot_sync_desktop_stream_replay_progress", stream_id="runs") == pytest.approx(0.25)
    assert value(text, "autopilot_sync_desktop_stream_duplicates_dropped_total", stream_id="runs") == 3
    assert value(text, "autopilot_sync_desktop_stream_gaps_total", stream_id="runs") == 0
    assert value(text, "autopilot_sync_desktop_stream_rebuilds_total", stream_id="runs") == 0
    assert value(text, "autopilot_sync_desktop_checkpoint_acks_total", stream_id="runs") == 1

    # lost, then live again with a new token: one reconnect; the since-start counts only ever add their increase
    hub.publish(replace(hub.state, connection=ConnectionView(ConnectionPhase.BACKING_OFF, attempt=1, token_fetches=1)))
    hub.publish(replace(hub.state, connection=ConnectionView(ConnectionPhase.CONNECTING, attempt=2, token_fetches=1)))
    grown = replace(stream, applied_seq=100, duplicates=5, gaps=1, rebuilds=1, acks_sent=4)
    hub.publish(replace(hub.state, connection=replace(live, token_fetches=2), streams=(grown,)))
    hub.publish(replace(hub.state, presence=PresenceView()))
    text = metrics.exposition().decode()
    assert value(text, "autopilot_sync_desktop_reconnects_total") == 1
    assert value(text, "autopilot_sync_desktop_connection_phase", phase="backing_off") == 0
    assert value(text, "autopilot_sync_desktop_token_fetches_total") == 2
    assert value(text, "autopilot_sync_desktop_stream_lag", stream_id="runs") == 0
    assert value(text, "autopilot_sync_desktop_stream_replay_progress", stream_id="runs") == 1
    assert value(text, "autopilot_sync_desktop_stream_duplicates_dropped_total", stream_id="runs") == 5
    assert value(text, "autopilot_sync_desktop_stream_gaps_total", stream_id="runs") == 1
    assert value(text, "autopilot_sync_desktop_stream_rebuilds_total", stream_id="runs") == 1
    assert value(text, "autopilot_sync_desktop_checkpoint_acks_total", stream_id="runs") == 4
    assert value(text, "autopilot_sync_desktop_presence_users") == 0


async def test_serve_metrics_serves_only_when_given_an_address() -> None:
    hub = StateHub(DesktopState(streams=(StreamView("runs", head_seq=5, applied_seq=5),)))
    async with serve_metrics(hub, None) as off:
        assert off is None
    port = free_port()
    async with serve_metrics(hub, ListenAddress("127.0.0.1", port)) as metrics, aiohttp.ClientSession() as http:
        assert metrics is not None
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        assert value(text, "autopilot_sync_desktop_stream_applied_seq", stream_id="runs") == 5
        hub.publish(replace(hub.state, streams=(StreamView("runs", head_seq=9, applied_seq=7),)))
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        assert value(text, "autopilot_sync_desktop_stream_lag", stream_id="runs") == 2


def test_the_setting_is_off_by_default_and_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTOPILOT_SYNC_DESKTOP_"):
            monkeypatch.delenv(name)
    assert DesktopSettings().metrics_listen is None
    monkeypatch.setenv("AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN", "")
    assert DesktopSettings().metrics_listen is None
    for ok, expected in (("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("localhost:1", None)):
        monkeypatch.setenv("AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN", ok)
        address = DesktopSettings().metrics_listen
        assert address is not None
        assert expected is None or (address.host, address.port) == expected
    for bad in ("0.0.0.0:9464", "192.168.1.4:9464", "example.com:80", "9464"):
        monkeypatch.setenv("AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN", bad)
        with pytest.raises(SettingsError):
            DesktopSettings()


# ----- a real headless desktop against real host, control and runtime -----


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (Linux: its socket inodes matched against /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads listening sockets from /proc")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


def headless_with_metrics(stack: Stack, name: str, port: int, streams: tuple[str, ...]) -> Desktop:
    """Like `Stack.desktop`, with `AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN` set."""
    config_dir = stack.root / "desktops" / name
    process = start_service(
        "desktop",
        ["--headless"],
        env={
            **stack.desktop_env(config_dir),
            "AUTOPILOT_SYNC_DESKTOP_STREAMS": ",".join(streams),
            "AUTOPILOT_SYNC_DESKTOP_RECONNECT_MAX_DELAY_SECONDS": "2",
            "AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN": f"127.0.0.1:{port}",
        },
        wait=False,
    )
    desktop = Desktop(process, config_dir)
    stack.desktops.append(desktop)
    return desktop


def stream(state: dict, stream_id: str = STREAM) -> dict:
    return stream_state(state, stream_id)


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        return await response.text()


async def scrape_until(url: str, what: str, check: Callable[[str], bool], within: float = 30.0) -> str:
    """Scrape until `check(text)` holds."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = await scrape(url)
        if check(text):
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last scrape:\n{text}")


@needs_proc
async def test_headless_desktop_serves_numbers_that_move_as_events_apply(stack: Stack) -> None:
    plain = stack.desktop("plain", streams=(STREAM,))
    await plain.wait_for("live", lambda s: s["connection"]["phase"] == "live")
    assert _listening_ports(plain.process.process.pid) == set(), "the endpoint must be off by default"
    assert not any("/metrics" in line for line in plain.process.output)

    promised = await stack.append_run_events(RUN, 12)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    desktop = headless_with_metrics(stack, "watched", port, streams=(STREAM,))
    await desktop.wait_for("the replay", lambda s: stream(s).get("applied") == 12)
    assert _listening_ports(desktop.process.process.pid) == {port}

    def at(text: str, name: str, **labels: str) -> float | None:
        return value(text, name, **labels)

    first = await scrape_until(
        url,
        "the replay and its ack in the numbers",
        lambda t: (
            at(t, "autopilot_sync_desktop_stream_applied_seq", stream_id=STREAM) == 12
            and at(t, "autopilot_sync_desktop_stream_acked_seq", stream_id=STREAM) == 12
            and at(t, "autopilot_sync_desktop_checkpoint_acks_total", stream_id=STREAM) == 1
        ),
    )

    assert at(first, "autopilot_sync_desktop_connection_phase", phase="live") == 1
    assert at(first, "autopilot_sync_desktop_connection_phase", phase="backing_off") == 0
    assert at(first, "autopilot_sync_desktop_stream_head_seq", stream_id=STREAM) == 12
    assert at(first, "autopilot_sync_desktop_stream_lag", stream_id=STREAM) == 0
    assert at(first, "autopilot_sync_desktop_stream_replay_progress", stream_id=STREAM) == 1
    assert at(first, "autopilot_sync_desktop_stream_rebuilds_total", stream_id=STREAM) == 0
    assert at(first, "autopilot_sync_desktop_stream_gaps_total", stream_id=STREAM) == 0
    assert at(first, "autopilot_sync_desktop_reconnects_total") == 0
    assert (at(first, "autopilot_sync_desktop_token_fetches_total") or 0) >= 1
    # the runtime, the plain desktop and this one: three users, at least three connections
    users = at(first, "autopilot_sync_desktop_presence_users") or 0
    assert users >= 3 and (at(first, "autopilot_sync_desktop_presence_connections") or 0) >= users

    for batch in range(3):
        promised += await stack.append_run_events(RUN, 5, start=100 * batch)
    assert promised == list(range(1, 28))
    moved = await scrape_until(
        url,
        "live events and their ack in the numbers",
        lambda t: (
            at(t, "autopilot_sync_desktop_stream_applied_seq", stream_id=STREAM) == 27
            and at(t, "autopilot_sync_desktop_stream_acked_seq", stream_id=STREAM) == 27
            and (at(t, "autopilot_sync_desktop_checkpoint_acks_total", stream_id=STREAM) or 0) >= 2
        ),
    )
    assert at(moved, "autopilot_sync_desktop_stream_head_seq", stream_id=STREAM) == 27
    assert at(moved, "autopilot_sync_desktop_stream_lag", stream_id=STREAM) == 0
    assert desktop.seqs(STREAM) == promised

    # the plain desktop leaves: presence shrinks; the host restarts: one reconnect, numbers continue
    assert plain.stop() == 0
    await scrape_until(
        url, "presence without the plain desktop", lambda t: at(t, "autopilot_sync_desktop_presence_users") == users - 1
    )
    assert stack.host is not None
    stack.host.kill()
    await scrape_until(
        url, "the connection lost", lambda t: at(t, "autopilot_sync_desktop_connection_phase", phase="live") == 0
    )
    stack.start_host()
    promised += await stack.append_run_events(RUN, 3, start=1000)
    after = await scrape_until(
        url,
        "live again with the new events",
        lambda t: (
            at(t, "autopilot_sync_desktop_reconnects_total") == 1
            and at(t, "autopilot_sync_desktop_stream_applied_seq", stream_id=STREAM) == 30
        ),
        within=60,
    )
    assert at(after, "autopilot_sync_desktop_connection_phase", phase="live") == 1
    assert at(after, "autopilot_sync_desktop_stream_rebuilds_total", stream_id=STREAM) == 0
    assert desktop.seqs(STREAM) == promised == list(range(1, 31))
    assert desktop.stop() == 0
