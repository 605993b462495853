"""docs/typescript.md "Connect a TypeScript app", run exactly as written against a real local stack.

Host, control and runtime run as processes (`LocalStack`); the runtime publishes run events (and makes the stack's
demo users readers of its streams). The test follows the page: `autopilot-sync control token` for a demo user's key
file, `autopilot-sync client generate --lang javascript` from the host's schema route, then the page's `app.mjs`
block, unchanged, under plain `node` with the official SDK (`conformance/node_modules/spacetimedb`). The program must
print the events already in the stream and then the ones published while it runs, each once, in order.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.runtime.access import producer_session

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "typescript.md"
NODE_MODULES = ROOT / "conformance" / "node_modules"
RUN = "ts-app"
STREAM = f"runtime.run.{RUN}.events"


def page_program() -> str:
    """The page's `app.mjs` block, byte for byte (the one after its marker comment)."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"<!-- app\.mjs:[^\n]*-->\n```js\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/typescript.md lost its app.mjs block"
    return found.group(1)


def cli(*args: str) -> str:
    """Run `autopilot-sync <args>` as the page does; its stdout (exit 0 required)."""
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"autopilot-sync {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


async def publish(stack: LocalStack, start: int, count: int) -> None:
    """Run events through the runtime's producer API (its Unix socket), as a producer does."""
    events = [{"kind": "run.message.delta", "data": {"n": start + i}} for i in range(count)]
    async with (
        producer_session(stack.producer_socket) as http,
        http.post(f"{stack.runtime_url}/v1/runs/{RUN}/events", json={"events": events}) as response,
    ):
        assert response.status == 200, await response.text()


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None or not (NODE_MODULES / "spacetimedb").is_dir():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path / "stack")
    local.start_all()
    try:
        yield local
    finally:
        local.stop_all()


class Program:
    """The node process; its stdout JSON lines on a queue, its stderr kept for failure messages."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    @classmethod
    def start(cls, node: str, app: Path, env: dict[str, str]) -> Program:
        """`node app.mjs` in `app`, with the page's environment (and no other)."""
        process = subprocess.Popen(
            [node, "app.mjs"],
            cwd=app,
            env={"PATH": "/usr/bin:/bin", "STREAM": STREAM, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return cls(process)

    def _out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def _err(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    async def events(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            try:
                out.append(await asyncio.to_thread(self.lines.get, True, 60.0))
            except queue.Empty:
                raise AssertionError(f"got {out}; app.mjs stderr:\n{''.join(self.stderr)}") from None
        return out


async def test_the_typescript_app_on_the_docs_page_follows_a_stream_of_a_real_stack(
    node: str, stack: LocalStack, tmp_path: Path
) -> None:
    await publish(stack, 0, 3)
    key_file = stack.root / "users" / "user-0.key"  # a demo user: a reader of the runtime's streams
    assert key_file.is_file()
    token = cli(
        "control", "token", "--url", stack.control_url, "--key-file", str(key_file), "--scope", "sync.subscribe"
    )
    token = token.strip()
    app = tmp_path / "app"
    app.mkdir()
    (app / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    cli(
        "client", "generate", "--lang", "javascript", "--base-url", stack.host_url, "--database", DATABASE,
        "--out", str(app / "module_bindings"),
    )  # fmt: skip
    (app / "app.mjs").write_text(page_program(), encoding="utf-8")
    program = Program.start(node, app, {"SPACETIME_URL": stack.host_url, "DATABASE": DATABASE, "TOKEN": token})
    process = program.process
    try:
        before = await program.events(3)
        await publish(stack, 3, 2)
        live = await program.events(2)
    finally:
        process.terminate()
        process.wait(10)
    # the rows already there come in one batch, in no particular order (as on SpacetimeDB); live ones in commit order
    received = sorted(before, key=lambda e: e["seq"]) + live
    assert [e["seq"] for e in received] == [1, 2, 3, 4, 5]
    assert [e["payload"]["data"] for e in received] == [{"n": n} for n in range(5)]
    assert {e["kind"] for e in received} == {"run.message.delta"}
    assert program.lines.empty(), "an event arrived twice"
