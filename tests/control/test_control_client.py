"""`fetch_session_token`: one call gives runtime and desktop a typed token or a typed error with the server's code."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from control_helpers import PRODUCER, READER, Control, decode_jwt

from autopilot_sync.control.client import UNAVAILABLE, TokenFetchError, fetch_session_token
from autopilot_sync.control.errors import ControlErrorCode
from autopilot_sync.devtools.processes import free_port

READ = ("sync.subscribe", "sync.checkpoint.write")


async def test_fetches_a_typed_session_token(control: Control) -> None:
    before = time.time()
    session = await fetch_session_token(control.url, READER, READ, ("run:*",), 120, "desktop")
    assert session.scopes == READ
    assert session.streams == ("run:*",)
    assert session.nostr_pubkey_hex == READER.public_key().hex
    assert session.npub == READER.public_key().npub
    assert before + 120 <= session.expires_at <= time.time() + 120
    assert session.refresh_at == pytest.approx(session.expires_at - 30)
    assert not session.needs_refresh()
    assert session.needs_refresh(session.refresh_at)
    assert decode_jwt(session.token)[1]["hex_identity"] == session.identity


async def test_default_ttl_when_none_is_asked(control: Control) -> None:
    session = await fetch_session_token(control.url, READER, READ, None, None, "desktop")
    claims = decode_jwt(session.token)[1]
    assert claims["exp"] - claims["iat"] == 300


async def test_identical_requests_in_one_second_are_not_replays(control: Control) -> None:
    """A reconnect storm: the same key asks for the same token many times at once; every proof is unique."""
    results = await asyncio.gather(
        *(fetch_session_token(control.url, READER, READ, None, None, "desktop") for _ in range(10))
    )
    assert len({result.token for result in results}) == 10


async def test_trailing_slash_on_the_control_url_is_the_same_url(control: Control) -> None:
    session = await fetch_session_token(control.url + "/", PRODUCER, ("sync.append",), ("run:*",), 60, "runtime")
    assert session.scopes == ("sync.append",)


async def test_refusal_carries_the_servers_code(control: Control) -> None:
    with pytest.raises(TokenFetchError) as refused:
        await fetch_session_token(control.url, READER, ("sync.append",), ("*",), None, "runtime")
    assert refused.value.code is ControlErrorCode.SCOPE_NOT_ALLOWED
    assert refused.value.status == 403
    assert "sync.append" in refused.value.message
    assert not refused.value.retryable


async def test_bad_ttl_is_a_permanent_error(control: Control) -> None:
    with pytest.raises(TokenFetchError) as refused:
        await fetch_session_token(control.url, READER, READ, ("*",), 5, "desktop")
    assert refused.value.code is ControlErrorCode.INVALID_TTL
    assert not refused.value.retryable


async def test_wrong_public_url_is_reported_as_wrong_url(control: Control) -> None:
    """A client configured with another name for the service signs another `u`: the server says so."""
    other_name = control.url.replace("127.0.0.1", "localhost")
    with pytest.raises(TokenFetchError) as refused:
        await fetch_session_token(other_name, READER, READ, ("*",), None, "desktop")
    assert refused.value.code is ControlErrorCode.WRONG_URL


async def test_no_service_is_unavailable_and_retryable() -> None:
    with pytest.raises(TokenFetchError) as failed:
        await fetch_session_token(f"http://127.0.0.1:{free_port()}", READER, READ, ("*",), None, "desktop")
    assert failed.value.error == UNAVAILABLE
    assert failed.value.code is None
    assert failed.value.status is None
    assert failed.value.retryable


async def test_a_shared_session_is_left_open(control: Control) -> None:
    async with aiohttp.ClientSession() as http:
        await fetch_session_token(control.url, READER, READ, None, None, "cli", session=http)
        assert not http.closed
