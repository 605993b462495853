"""Attacks on control's NIP-98 admission through real control processes (issue 16 items 11 and 15).

One key flooding valid proofs must not deny tokens to anyone else, and a proof must stay refused as a replay for as
long as its `created_at` could still be accepted. Floods are a few hundred requests: seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.control.client import fetch_session_token, token_proof, token_url
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_service
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.nostr.nip98 import encode_authorization_header

BODY = json.dumps(
    {"scopes": ["sync.subscribe"], "streams": ["*"], "ttl_seconds": None, "client_kind": "test"},
    separators=(",", ":"),
).encode()


def start_control(root: Path, **settings: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "AUTOPILOT_SYNC_CONTROL_LISTEN": f"127.0.0.1:{port}",
        "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": url,
        "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(root / "signing.pem"),
        **{f"AUTOPILOT_SYNC_CONTROL_{name.upper()}": value for name, value in settings.items()},
    }
    return start_service("control", env=env), url


@pytest.fixture
def rate_limited_control(tmp_path: Path) -> Iterator[str]:
    process, url = start_control(tmp_path, token_requests_per_minute_per_key="60", token_burst_per_key="5")
    try:
        yield url
    finally:
        process.stop(timeout=5)


@pytest.fixture
def small_memory_control(tmp_path: Path) -> Iterator[str]:
    process, url = start_control(
        tmp_path,
        token_requests_per_minute_per_key="60000",
        token_burst_per_key="1000",
        replay_memory_per_key="10",
        replay_memory_max="25",
    )
    try:
        yield url
    finally:
        process.stop(timeout=5)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None


async def post(http: aiohttp.ClientSession, url: str, key: SecretKey) -> Answer:
    """POST one token request with a fresh valid proof."""
    return await send(http, url, encode_authorization_header(token_proof(key, token_url(url), BODY, int(time.time()))))


async def send(http: aiohttp.ClientSession, url: str, authorization: str) -> Answer:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    async with http.post(token_url(url), data=BODY, headers=headers) as response:
        return Answer(response.status, await response.json(), response.headers.get("Retry-After"))


async def flood(url: str, key: SecretKey, count: int) -> list[Answer]:
    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(post(http, url, key) for _ in range(count))))


async def test_one_key_flooding_valid_proofs_is_rate_limited_and_others_still_get_tokens(
    rate_limited_control: str,
) -> None:
    mallory = SecretKey.generate()
    answers = await flood(rate_limited_control, mallory, 200)
    statuses = [answer.status for answer in answers]
    assert 5 <= statuses.count(200) <= 8, statuses  # the burst, plus what refilled during the flood (1/s)
    refused = [answer for answer in answers if answer.status != 200]
    assert {(answer.status, answer.body["error"]) for answer in refused} == {(429, "rate_limited")}
    assert all(int(answer.retry_after or 0) >= 1 for answer in refused)
    alice = await fetch_session_token(
        rate_limited_control, SecretKey.generate(), ("sync.subscribe",), ("*",), None, "test"
    )
    assert alice.token


async def test_one_key_cannot_fill_the_replay_memory_for_everyone(small_memory_control: str) -> None:
    mallory = SecretKey.generate()
    statuses = [answer.status for answer in await flood(small_memory_control, mallory, 100)]
    assert statuses.count(200) == 10 and statuses.count(429) == 90, statuses  # its share of the memory, no more
    for _ in range(2):  # two more keys fit beside it, each up to its own share
        others = await flood(small_memory_control, SecretKey.generate(), 5)
        assert [answer.status for answer in others] == [200] * 5


async def test_a_proof_from_the_future_stays_refused_while_its_created_at_can_still_be_accepted(
    tmp_path: Path,
) -> None:
    skew = 2
    process, url = start_control(tmp_path, proof_max_skew_seconds=str(skew))
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(1 - time.time() % 1)  # start of a second: the whole test stays on schedule
            first_use = int(time.time())
            proof = token_proof(SecretKey.generate(), token_url(url), BODY, first_use + skew)  # made `skew` ahead
            header = encode_authorization_header(proof)
            assert (await send(http, url, header)).status == 200
            # Still acceptable at first use + 2 * skew (|now - created_at| == skew): must be a replay, not a token.
            await asyncio.sleep(first_use + 2 * skew + 0.2 - time.time())
            replay = await send(http, url, header)
            assert (replay.status, replay.body["error"]) == (401, "replayed")
            await asyncio.sleep(first_use + 2 * skew + 1.2 - time.time())
            late = await send(http, url, header)
            assert (late.status, late.body["error"]) == (401, "expired")  # and after that, simply too old
    finally:
        process.stop(timeout=5)
