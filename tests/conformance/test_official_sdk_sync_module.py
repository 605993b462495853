"""The official TypeScript SDK (`spacetimedb` 2.10.1, unchanged) drives the sync module, Python and TypeScript twin.

Issue 18 item 3: the host serves either module behind control (a real `LocalStack`); bindings are generated from
the host's schema route with `autopilot-sync client generate --lang javascript`, and `official_sdk_sync.mjs`
connects with a control-issued producer token, subscribes to a stream, appends a batch, retries it, and sends a gap
and a wrong hash. Both modules must give the SDK the same observations: the rows in order, the duplicate as success,
and the module's own coded refusal texts as `SenderError`s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, MODULE, LocalStack
from official_sdk_app import run_official_sdk_script

pytestmark = [pytest.mark.node, pytest.mark.timeout(240)]


@pytest.fixture(params=["python", "typescript"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalStack]:
    module = MODULE if request.param == "python" else str(request.getfixturevalue("typescript_sync_module"))
    running = LocalStack(tmp_path / "stack", module=module)
    try:
        running.start_all(runtime=False)
        yield running
    finally:
        running.stop_all()


def events() -> list[dict[str, object]]:
    out = []
    for seq in range(1, 6):
        text, digest = hash_value({"seq": seq, "text": "héllo"})
        out.append(
            {"stream_id": "sdk", "idempotency_key": f"sdk:{seq}", "kind": "test.sdk", "payload": text,
             "payload_hash": digest, "expected_seq": seq}
        )  # fmt: skip
    return out


def test_the_official_sdk_publishes_and_receives_through_either_module(stack: LocalStack, tmp_path: Path) -> None:
    scopes = ("sync.append", "sync.subscribe")
    token = asyncio.run(fetch_session_token(stack.control_url, stack.producer_key, scopes, ("*",), None, "sdk"))
    script = Path(__file__).with_name("official_sdk_sync.mjs")
    observed = run_official_sdk_script(script, stack.host_url, DATABASE, [token.token, json.dumps(events())], tmp_path)
    _, good_hash = hash_value({"seq": 4, "text": "héllo"})
    assert observed["results"] == {
        "grant": "ok",
        "append": "ok",
        "duplicate": "ok",
        "gap": "SenderError: sequence_conflict: stream sdk expected_seq=5 head_seq=3",
        "badHash": f"SenderError: payload_hash_mismatch: payload_hash sha256:{'0' * 64} but the canonical payload "
        f"hashes to {good_hash}",
        "next": "ok",
    }
    assert observed["seen"] == [f"sdk:{seq}:test.sdk" for seq in (1, 2, 3, 4)]
    assert observed["rows"] == [1, 2, 3, 4]
