"""Fixtures for the wire-layer tests: the official TypeScript SDK running as a BSATN judge."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance"


class Judge:
    """Line-oriented client of `conformance/judge.mjs` (one JSON request, one JSON answer)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def ask(self, **request: Any) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"judge exited with {self.process.poll()}")
        # Every JS number is a double: parse integers as floats so 36028797018963970 means the double it prints.
        answer: dict[str, Any] = json.loads(line, parse_int=float)
        return answer


@pytest.fixture(scope="session")
def judge() -> Iterator[Judge]:
    """One Node process with the pinned SDK for the whole session."""
    node = shutil.which("node")
    if node is None or not (CONFORMANCE / "node_modules" / "spacetimedb").is_dir():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    process = subprocess.Popen(
        [node, str(CONFORMANCE / "judge.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        cwd=CONFORMANCE,
    )
    judge = Judge(process)
    assert judge.ask(op="ping") == {"pong": True}
    yield judge
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
