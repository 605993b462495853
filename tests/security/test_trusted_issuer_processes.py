"""A token the host accepts is still refused by the sync module when its issuer is not the one the owner trusts.

Issue 18 item 2: a real SpacetimeDB accepts tokens from any OIDC issuer, so the module checks `iss` itself. Real
host and control processes: `LocalStack.start_all` names control as the trusted issuer (as the owner), a producer's
control token publishes, and a token the host signed itself — valid for the host, with every scope in its claims —
is refused by the module over HTTP `/call`, typed, naming the issuer. Run against the Python module and the twin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, MODULE, LocalStack
from autopilot_sync.host.auth.tokens import LOCAL_AUDIENCE, LOCAL_ISSUER, SigningKey
from autopilot_sync.runtime.access import producer_session
from autopilot_sync.spacetime.identity import identity_from_claims


@pytest.fixture(params=["python", "typescript"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Host and control, the host serving the Python module or its TypeScript twin (the same rule in both)."""
    module = MODULE if request.param == "python" else str(request.getfixturevalue("typescript_sync_module"))
    running = LocalStack(tmp_path_factory.mktemp("trusted-issuer"), module=module)
    try:
        running.start_all(runtime=False)
        yield running
    finally:
        running.stop_all()


def host_signed_producer_token(stack: LocalStack) -> str:
    """Claims a producer's control token would carry, but signed by the host's own key (issuer LOCAL_ISSUER)."""
    subject = stack.producer_key.public_key().hex
    claims = {
        "iss": LOCAL_ISSUER,
        "sub": subject,
        "aud": list(LOCAL_AUDIENCE),
        "iat": int(time.time()),
        "exp": None,
        "hex_identity": identity_from_claims(LOCAL_ISSUER, subject).hex,
        "scopes": ["sync.append", "sync.admin", "sync.subscribe"],
    }
    return SigningKey.load_or_create(stack.root / "host").sign(claims)


async def call(stack: LocalStack, token: str, reducer: str, args: list[object]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.host_url}/v1/database/{DATABASE}/call/{reducer}",
            json=args,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.text()


def one_event(seq: int) -> list[object]:
    text, digest = hash_value({"n": seq})
    published = {"__timestamp_micros_since_unix_epoch__": 0}
    return [[["runtime.trust", f"runtime.trust:{seq}", "test", text, digest, seq, published]]]


async def test_a_token_from_another_issuer_is_refused_by_the_module_though_the_host_accepts_it(
    stack: LocalStack,
) -> None:
    control = await fetch_session_token(
        stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "test"
    )
    assert await call(stack, control.token, "append_sync_events", one_event(1)) == (200, "")

    # The call's short connection is refused first: `client_connected` checks the issuer too (403, not a 530).
    refused = await call(stack, host_signed_producer_token(stack), "append_sync_events", one_event(2))
    assert refused == (403, f"unauthorized: token issuer {LOCAL_ISSUER} is not the issuer this database trusts")

    refused = await call(stack, control.token, "set_trusted_issuer", [LOCAL_ISSUER])  # scopes do not make an owner
    assert refused == (530, "unauthorized: set_trusted_issuer is for the database owner only")
    assert await call(stack, control.token, "append_sync_events", one_event(2)) == (200, "")


NOT_CONFIGURED = "issuer_not_configured: this database trusts no token issuer yet: the owner calls set_trusted_issuer"


@pytest.mark.parametrize("which", ["python", "typescript"])
async def test_a_database_nobody_named_an_issuer_for_refuses_every_token_until_the_owner_names_control(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Fail closed over real processes: a fresh database (what a publish to a real SpacetimeDB gives before its
    owner configures it) refuses control's own producer token with the typed code that names the fix; the owner's
    `set_trusted_issuer` gets through (its `client_connected` is not refused), and then the same token publishes."""
    module = MODULE if which == "python" else str(request.getfixturevalue("typescript_sync_module"))
    stack = LocalStack(tmp_path, module=module)
    stack.start_host()  # not start_all: that names control as the issuer
    stack.start_control()
    try:
        control = await fetch_session_token(
            stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "test"
        )
        assert await call(stack, control.token, "append_sync_events", one_event(1)) == (403, NOT_CONFIGURED)
        stack.trust_control()
        assert await call(stack, control.token, "append_sync_events", one_event(1)) == (200, "")
    finally:
        stack.stop_all()


async def test_a_runtime_waits_for_the_owner_to_name_its_issuer_and_dead_letters_nothing(tmp_path: Path) -> None:
    """Between a fresh (or delete-data) publish and the owner naming control, the runtime's streams wait: the
    refusal is transient, so nothing is dead-lettered and every event lands once the issuer is named."""
    stack = LocalStack(tmp_path, runtime_env={"AUTOPILOT_SYNC_RUNTIME_RETRY_CAP_SECONDS": "1"})
    stack.start_host()
    stack.start_control()
    try:
        stack.start_runtime()
        async with producer_session(stack.producer_socket) as http:
            for _ in range(2):
                async with http.post(f"{stack.runtime_url}/v1/runs/gap/events", json=EVENT) as response:
                    assert response.status == 200, await response.text()
            await asyncio.sleep(3)  # several attempts, each refused with issuer_not_configured
            assert await published(http, stack) == 0
            assert await dead_letters(http, stack) == []
            stack.trust_control()
            async with asyncio.timeout(30):
                while True:
                    if await published(http, stack) == 2:
                        break
                    await asyncio.sleep(0.2)
            assert await dead_letters(http, stack) == []
    finally:
        stack.stop_all()


EVENT = {"kind": "run.started", "data": {"model": "m"}}


async def published(http: aiohttp.ClientSession, stack: LocalStack) -> int:
    async with http.get(f"{stack.runtime_url}/v1/streams") as response:
        streams = {item["stream_id"]: item for item in (await response.json())["streams"]}
    return int(streams.get("runtime.run.gap.events", {}).get("published_seq", 0))


async def dead_letters(http: aiohttp.ClientSession, stack: LocalStack) -> list[object]:
    async with http.get(f"{stack.runtime_url}/v1/dead-letters") as response:
        return list((await response.json())["dead_letters"])
