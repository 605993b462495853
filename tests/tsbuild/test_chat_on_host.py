"""The quickstart chat module, built by `autopilot-sync build`, served by a real host and used by the official SDK.

The proof that the host is a general SpacetimeDB host and not one shaped around our own module: a module we did not
design (SpacetimeDB's TypeScript quickstart) runs unchanged on `autopilot-sync host --module chat.js`, the TypeScript
bindings come from the host's schema route (`client generate --lang typescript`) and type-check against the official
SDK with the project's pinned `tsc`, and two SDK clients chat through it: names, messages both see, the online flag
flipping on disconnect, and a refused `set_name` reaching the caller as the SDK's `SenderError`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tsbuild_helpers import CHAT, ROOT, HostProcess

pytestmark = pytest.mark.node

APP = Path(__file__).with_name("chat_app")
SDK_MODULES = ROOT / "conformance" / "node_modules"
DATABASE = "quickstart-chat"


@pytest.fixture
def host(built_chat: Path, tmp_path: Path) -> Iterator[HostProcess]:
    if not (SDK_MODULES / "spacetimedb").is_dir():
        pytest.skip("conformance/node_modules missing (./dev test installs it)")
    running = HostProcess(built_chat, tmp_path / "data", DATABASE)
    try:
        yield running
    finally:
        running.stop()


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_two_sdk_clients_chat_through_the_quickstart_module_on_a_real_host(host: HostProcess, tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    (app / "node_modules").symlink_to(SDK_MODULES, target_is_directory=True)
    _run(
        [sys.executable, "-m", "autopilot_sync", "client", "generate", "--lang", "typescript",
         "--base-url", host.url, "--database", DATABASE, "--out", str(app / "module_bindings")],
        cwd=ROOT,
    )  # fmt: skip
    tools = CHAT / "node_modules" / ".bin"
    _run([str(tools / "tsc"), "-p", str(app), "--noEmit"], cwd=app)  # the bindings type-check against the SDK
    _run(
        [str(tools / "esbuild"), "chat_clients.ts", "--bundle", "--platform=node", "--format=esm",
         "--packages=external", "--target=node20", "--outfile=chat_clients.mjs", "--log-level=warning"],
        cwd=app,
    )  # fmt: skip

    done = subprocess.run(
        ["node", "chat_clients.mjs", host.url, DATABASE], cwd=app, capture_output=True, text=True, timeout=180
    )

    assert done.returncode == 0, f"{done.stderr}\nhost:\n{''.join(host.output[-40:])}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    alice, bob = seen["both"]["alice"], seen["both"]["bob"]
    for client in (alice, bob):
        assert client["users"] == [
            {"identity": alice["identity"], "name": "alice", "online": True},
            {"identity": bob["identity"], "name": "bob", "online": True},
        ]
        assert client["messages"] == [
            {"sender": alice["identity"], "text": "hello from alice"},
            {"sender": bob["identity"], "text": "hi alice, bob here"},
        ]
    assert seen["refused"] == {"isSenderError": True, "message": "Names must not be empty"}
    assert seen["flips"] == [True, False], "alice saw bob's row go from online to offline"
    assert {u["name"]: u["online"] for u in seen["afterDisconnect"]["users"]} == {"alice": True, "bob": False}
    assert seen["afterDisconnect"]["users"][0]["name"] == "alice", "the refused set_name changed nothing"
