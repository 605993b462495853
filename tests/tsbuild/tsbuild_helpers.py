"""Helpers for the `autopilot-sync build` tests: where the chat project is, and the CLI run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "modules" / "chat"


def run_build(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`autopilot-sync build ARGS…` as a real process, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "build", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


READY = re.compile(r"autopilot-sync host ready: (http://\S+)")


class HostProcess:
    """`autopilot-sync host --module FILE.js` as a real process on a free port; its output kept for failures."""

    def __init__(self, module: Path, data_dir: Path, database: str, env_extra: dict[str, str] | None = None) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("AUTOPILOT_SYNC_")}
        env.update(env_extra or {})
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("autopilot-sync")), "host", "--module", str(module),
             "--database", database, "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=ROOT,
        )  # fmt: skip
        self.output: list[str] = []
        self.url = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                found = READY.search(line)
                if found and not self.url:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name="host-output", daemon=True).start()
        ready.wait(60)
        if not self.url:
            self.stop()
            raise RuntimeError(f"host did not print its ready line:\n{''.join(self.output)}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
