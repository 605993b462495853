"""Running an official-SDK test script: the one way the tests drive a host with the unchanged TypeScript SDK.

Lays out an app folder as a user of the SDK would have it — `node_modules` (linked to `conformance/node_modules`,
the pinned `spacetimedb`), `module_bindings` generated from the host's schema route by `autopilot-sync client
generate --lang javascript`, the shared `official_sdk_harness.mjs` and the script as `app.mjs` — runs it with node
and returns the one JSON line of observations it prints (`{..., "seen": [...]}`; the test fails with its output
when it exits non-zero).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("official_sdk_harness.mjs")


def run_official_sdk_script(
    script: Path, base_url: str, database: str, args: Sequence[str], workdir: Path
) -> dict[str, Any]:
    """Generate the bindings for `database` at `base_url`, run `script` with `base_url database *args`; its JSON."""
    node = shutil.which("node")
    assert node is not None, "node is needed (tests marked `node`)"
    app = workdir / "app"
    app.mkdir(parents=True)
    (app / "node_modules").symlink_to(ROOT / "conformance" / "node_modules", target_is_directory=True)
    shutil.copy(HARNESS, app / HARNESS.name)
    shutil.copy(script, app / "app.mjs")
    generated = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "client", "generate", "--lang", "javascript",
         "--base-url", base_url, "--database", database, "--out", str(app / "module_bindings")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout + generated.stderr
    done = subprocess.run(
        [node, "app.mjs", base_url, database, *args], cwd=app, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    observed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return observed
