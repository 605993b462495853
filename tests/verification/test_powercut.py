"""The power-cut emulation itself, proven on real child processes before any scenario trusts it: under it a SIGKILL
loses exactly the bytes not fsynced (and nothing outside the emulated directory); without it a SIGKILL loses nothing;
a clean exit loses nothing; writeback leaves a torn prefix; an fsync that has not returned guarantees nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_sync.verification.powercut import BANNER, PowerCut, host_environment, read_ledger

#: The child: append `durable;` and fsync it, then append the chunks in argv without fsync, then report and wait
#: (argv[1]: `wait` to be killed, `exit` to end cleanly, `fsync-then-wait` to skip the first fsync and instead start
#: one in a thread after all writes).
CHILD = """
import os, sys, threading, time
mode, paths, chunks = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
for path in paths:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"durable;")
    if mode != "fsync-then-wait":
        os.fsync(fd)
    for chunk in chunks:
        os.write(fd, chunk.encode())
    if mode == "fsync-then-wait":
        threading.Thread(target=os.fsync, args=(fd,), daemon=True).start()
        time.sleep(0.2)
print("written", flush=True)
if mode != "exit":
    time.sleep(120)
"""


def run_child(mode: str, paths: list[Path], chunks: list[str], env: dict[str, str] | None) -> tuple[list[bytes], str]:
    """Run the child until it reports, SIGKILL it (unless it exits by itself); the files' bytes and its stderr."""
    child_env = {**os.environ, **(env or {})}
    if env is None:
        child_env.pop("AUTOPILOT_SYNC_POWERCUT_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, ",".join(map(str, paths)), *chunks],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"written\n"
        if mode != "exit":
            process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    return [path.read_bytes() for path in paths], process.stderr.read().decode()


def test_a_sigkill_under_power_cut_loses_exactly_the_unfsynced_bytes(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    ledger = tmp_path / "ledger"
    env = host_environment(log, ledger=ledger)
    [content], stderr = run_child("wait", [log / "0.log"], ["lost-1;", "lost-2;"], env)
    assert content == b"durable;"
    assert stderr.count(BANNER) == 1, stderr
    assert read_ledger(ledger) == len(b"lost-1;lost-2;")


def test_without_the_power_cut_a_sigkill_loses_nothing(tmp_path: Path) -> None:
    [content], _ = run_child("wait", [tmp_path / "0.log"], ["kept-1;", "kept-2;"], None)
    assert content == b"durable;kept-1;kept-2;"


def test_files_outside_the_emulated_directory_are_written_at_once(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    inside, outside = log / "0.log", tmp_path / "other.log"
    contents, _ = run_child("wait", [inside, outside], ["x;"], host_environment(log))
    assert contents == [b"durable;", b"durable;x;"]


def test_a_clean_exit_is_no_power_cut_and_keeps_every_byte(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    [content], _ = run_child("exit", [log / "0.log"], ["kept;"], host_environment(log))
    assert content == b"durable;kept;"


def test_an_fsync_that_has_not_returned_guarantees_nothing(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    env = host_environment(log, fsync_delay=60.0)
    [content], _ = run_child("fsync-then-wait", [log / "0.log"], ["lost;"], env)
    assert content == b""


def test_writeback_tears_records_and_keeps_some_whole_ones(tmp_path: Path) -> None:
    """Survivors are always a prefix of what was written; across seeds they include a tail cut inside a record and
    whole unfsynced records."""
    log = tmp_path / "commitlog"
    log.mkdir()
    chunks = [f"record-{i:02d};" for i in range(20)]
    full = b"durable;" + "".join(chunks).encode()
    torn = whole = 0
    for seed in range(6):
        path = log / f"{seed}.log"
        [content], _ = run_child("wait", [path], chunks, host_environment(log, writeback=0.5, seed=seed))
        assert full.startswith(content)
        assert len(content) >= len(b"durable;")
        tail = content[len(b"durable;") :]
        torn += len(tail) % len(chunks[0]) != 0
        whole += len(tail) >= len(chunks[0])
    assert torn > 0
    assert whole > 0


def test_the_emulation_refuses_impossible_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writeback"):
        PowerCut(tmp_path, writeback=1.5)
    with pytest.raises(ValueError, match="fsync delay"):
        PowerCut(tmp_path, fsync_delay=-1)


def test_a_descriptor_closed_behind_the_emulations_back_is_not_emulated_after_reuse(tmp_path: Path) -> None:
    """In-process, without installing (the methods are called directly): an emulated fd closed by someone else and
    reused for another file must write straight to that file, not into the old file's pending bytes."""
    log = tmp_path / "commitlog"
    log.mkdir()
    emulation = PowerCut(log)
    fd = emulation.open(log / "0.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    emulation.write(fd, b"pending")
    assert emulation.pending_bytes() == len(b"pending")
    os.close(fd)  # not through the emulation
    other = os.open(tmp_path / "other.log", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert other == fd  # the lowest free number comes back
        assert emulation.write(other, b"direct") == len(b"direct")
    finally:
        os.close(other)
    assert (tmp_path / "other.log").read_bytes() == b"direct"
    assert (log / "0.log").read_bytes() == b""
    emulation.settle()
    assert (log / "0.log").read_bytes() == b"pending"


def test_a_cut_refuses_to_run_when_the_host_never_engaged_the_emulation(tmp_path: Path) -> None:
    """A host whose output lacks the banner (it wrote its log some other way) must fail the run, not be killed
    as if it were under the power cut. The host here is a stand-in child that printed only a ready line."""
    from autopilot_sync.devtools.processes import ServiceProcess
    from autopilot_sync.verification.powercut import PowerCutFault
    from autopilot_sync.verification.stack import ChaosStack

    stand_in = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    stand_in.wait(30)
    stack = ChaosStack(tmp_path, 1, power_cut=PowerCutFault())
    stack.host = ServiceProcess("host", stand_in, output=["autopilot-sync host ready: http://127.0.0.1:1"])
    with pytest.raises(RuntimeError, match="did not engage"):
        stack.require_power_cut_engaged()
    stack.host.output.append(f"{BANNER} {tmp_path}/commitlog/00000000000000000001.log")
    stack.require_power_cut_engaged()


#: A child writing as the commit log does: zeros ahead (fsynced), then records over them with `os.pwrite`, the first
#: fsynced, the rest not; then report and wait to be killed.
CHILD_OVER_ZEROS = """
import os, sys, time
path, chunks = sys.argv[1], sys.argv[2:]
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
os.pwrite(fd, bytes(4096), 0)
os.fsync(fd)
os.pwrite(fd, b"durable;", 0)
os.fsync(fd)
position = len(b"durable;")
for chunk in chunks:
    position += os.pwrite(fd, chunk.encode(), position)
print("written", flush=True)
time.sleep(120)
"""


def run_over_zeros(path: Path, chunks: list[str], env: dict[str, str]) -> tuple[bytes, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD_OVER_ZEROS, str(path), *chunks],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"written\n"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        return path.read_bytes(), process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()


def test_positioned_writes_over_zeros_lose_exactly_the_unfsynced_bytes(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    content, stderr = run_over_zeros(log / "0.log", ["lost-1;", "lost-2;"], host_environment(log))
    assert BANNER in stderr
    assert content == b"durable;" + bytes(4096 - len(b"durable;")), "the zeros stay where the records were lost"


def test_positioned_writeback_leaves_a_prefix_of_the_records_over_the_zeros(tmp_path: Path) -> None:
    log = tmp_path / "commitlog"
    log.mkdir()
    chunks = [f"record-{i:02d};" for i in range(20)]
    full = b"durable;" + "".join(chunks).encode()
    torn = whole = 0
    for seed in range(6):
        content, _ = run_over_zeros(log / f"{seed}.log", chunks, host_environment(log, writeback=0.5, seed=seed))
        assert len(content) == 4096
        kept = content.rstrip(b"\0")
        assert full.startswith(kept) and len(kept) >= len(b"durable;")
        assert content[len(kept) :] == bytes(4096 - len(kept))
        tail = kept[len(b"durable;") :]
        torn += len(tail) % len(chunks[0]) != 0
        whole += len(tail) >= len(chunks[0])
    assert torn > 0
    assert whole > 0
