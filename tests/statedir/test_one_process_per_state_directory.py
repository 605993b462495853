"""One process per state directory: a second host, runtime or desktop on a directory in use exits 2 with one line
naming the holder's PID, and the holder is not disturbed. Real processes; the lock itself is also unit-tested."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host, start_service
from autopilot_sync.statedir import EXIT_LOCKED, LOCK_FILE_NAME, DirectoryLockedError, lock_directory

NOWHERE = "http://127.0.0.1:9"  # discard port: nothing answers, so the services keep retrying in the background


def refused(process: ServiceProcess) -> str:
    """Wait for a refused second process; its exit status must be 2 and its output the one reason line."""
    assert process.process.wait(60) == EXIT_LOCKED, process.tail()
    assert process._reader is not None
    process._reader.join(10)
    lines = [line for line in process.output if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def holder_pid(directory: Path, timeout: float = 60.0) -> int:
    """The PID the lock file names, once its holder has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = directory / LOCK_FILE_NAME
        text = path.read_text().split() if path.exists() else []
        if text:
            return int(text[0])
        time.sleep(0.05)
    raise AssertionError(f"nobody locked {directory}")


def test_a_second_lock_on_a_directory_names_the_holder_and_release_frees_it(tmp_path: Path) -> None:
    held = lock_directory(tmp_path / "state", "test directory", "test")
    with pytest.raises(DirectoryLockedError, match=rf"test directory .* is in use by PID {os.getpid()} \(test\)"):
        lock_directory(tmp_path / "state", "test directory", "test")
    held.release()
    lock_directory(tmp_path / "state", "test directory", "test").release()


def test_a_lock_left_by_a_killed_process_does_not_block_the_next(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from autopilot_sync.statedir import lock_directory;"
        "lock_directory(Path(sys.argv[1]), 'd', 'child'); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    with pytest.raises(DirectoryLockedError, match=rf"PID {child.pid} \(child\)"):
        lock_directory(tmp_path, "d", "test")
    child.kill()
    child.wait(10)
    lock_directory(tmp_path, "d", "test").release()
    assert (tmp_path / LOCK_FILE_NAME).exists(), "the file stays; only the kernel's lock decides"


def test_a_second_host_on_a_data_directory_exits_2_naming_the_first(tmp_path: Path) -> None:
    first = start_host(tmp_path)
    try:
        second = start_host(tmp_path, wait=False)
        line = refused(second)
        assert line == (
            f"autopilot-sync host: host data directory {tmp_path} is in use by PID {first.process.pid} (host) "
            f"(lock {tmp_path / LOCK_FILE_NAME}); stop that process or use another directory"
        )
        assert first.process.poll() is None, "the holder keeps running"
    finally:
        first.kill()
    again = start_host(tmp_path)  # a lock file left by a SIGKILLed host does not block a restart
    assert again.url
    again.stop()


def test_a_second_runtime_on_an_outbox_directory_exits_2_naming_the_first(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"

    def runtime() -> ServiceProcess:
        env = {
            "AUTOPILOT_SYNC_RUNTIME_LISTEN": f"127.0.0.1:{free_port()}",
            "AUTOPILOT_SYNC_RUNTIME_DATA_DIR": str(outbox),
            "AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH": str(tmp_path / "nostr.key"),
            "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL": NOWHERE,
            "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL": NOWHERE,
        }
        return start_service("runtime", env=env, wait=False)

    first = runtime()
    try:
        pid = holder_pid(outbox)
        assert pid == first.process.pid
        line = refused(runtime())
        assert line.startswith(f"autopilot-sync runtime: runtime outbox directory {outbox} is in use by PID {pid}")
        assert first.process.poll() is None, "the holder keeps running"
    finally:
        first.kill()


def test_a_second_desktop_on_a_config_directory_exits_2_naming_the_first(tmp_path: Path) -> None:
    config = tmp_path / "desktop"

    def desktop() -> ServiceProcess:
        env = {
            "AUTOPILOT_SYNC_DESKTOP_CONFIG_DIR": str(config),
            "AUTOPILOT_SYNC_DESKTOP_CONTROL_URL": NOWHERE,
            "AUTOPILOT_SYNC_DESKTOP_SPACETIME_BASE_URL": NOWHERE,
        }
        return start_service("desktop", ["--headless"], env=env, wait=False)

    first = desktop()
    try:
        pid = holder_pid(config)
        assert pid == first.process.pid
        assert stat.S_IMODE(config.stat().st_mode) == 0o700, "the lock creates the key's directory private"
        line = refused(desktop())
        assert line.startswith(f"autopilot-sync desktop: desktop config directory {config} is in use by PID {pid}")
        assert first.process.poll() is None, "the holder keeps running"
    finally:
        first.kill()
