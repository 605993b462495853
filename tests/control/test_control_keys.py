"""Discovery and JWKS content, and key rotation: a new key signs at once, the old one stays published until its
tokens have expired, hosts accept both meanwhile, and a running service needs no restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from control_helpers import Control, decode_jwt, encode, reader_body

from autopilot_sync.auth.oidc import OidcVerifier
from autopilot_sync.cli import main
from autopilot_sync.control.keys import (
    RETIRED_MARGIN_SECONDS,
    KeyFileError,
    KeyPaths,
    KeyStore,
    load_keyring,
    rotate,
    stage,
)
from autopilot_sync.host.auth.tokens import SigningKey as HostKey
from autopilot_sync.host.auth.tokens import TokenService


async def _token(control: Control) -> str:
    status, body = await control.post(encode(reader_body()))
    assert status == 200, body
    token: str = body["token"]
    return token


async def _kids(control: Control) -> list[str]:
    document = await control.get_json("/.well-known/jwks.json")
    return [key["kid"] for key in document["keys"]]


async def test_discovery_points_hosts_at_the_jwks(control: Control) -> None:
    document = await control.get_json("/.well-known/openid-configuration")
    assert document["issuer"] == control.url
    assert document["jwks_uri"] == f"{control.url}/.well-known/jwks.json"
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    assert document["scopes_supported"] == ["sync.subscribe", "sync.checkpoint.write", "sync.append", "sync.admin"]
    assert {"sub", "hex_identity", "scopes", "streams", "client_kind"} <= set(document["claims_supported"])


async def test_jwks_publishes_only_the_public_half(control: Control) -> None:
    document = await control.get_json("/.well-known/jwks.json")
    (key,) = document["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256"
    assert key["use"] == "sig" and key["alg"] == "ES256"
    assert key["kid"] == control.service.keys.signing_key().kid
    assert "d" not in key
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use", "alg"}


async def test_signing_key_is_created_private_on_first_start(control: Control) -> None:
    mode = stat.S_IMODE(control.paths.active.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(control.paths.active.parent.stat().st_mode) == 0o700


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    paths = KeyPaths(tmp_path / "signing.pem")
    load_keyring(paths)
    os.chmod(paths.active, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyStore(paths, 900)


def test_a_key_that_is_not_p256_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "signing.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="P-256"):
        load_keyring(KeyPaths(path))


async def _host_verifies(control: Control, *tokens: str) -> list[Any]:
    """Verify with the host's real code; `min_refetch_interval=0` plays a host whose last fetch is 30 s old."""
    service = TokenService(HostKey.generate(), oidc=OidcVerifier([control.url], min_refetch_interval=0))
    try:
        return [await service.verify(token) for token in tokens]
    finally:
        await service.close()


async def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published(control: Control) -> None:
    before = await _token(control)
    old_kid = decode_jwt(before)[0]["kid"]
    result = rotate(control.paths, now=int(control.clock.now))
    assert result.retired_kid == old_kid
    after = await _token(control)  # same running service: it noticed the rotation on this request
    new_kid = decode_jwt(after)[0]["kid"]
    assert new_kid == result.active_kid != old_kid
    assert await _kids(control) == [new_kid, old_kid]  # two keys during rotation
    verified = await _host_verifies(control, before, after)
    assert [v.subject for v in verified] == [decode_jwt(before)[1]["sub"]] * 2


async def test_retired_key_leaves_the_jwks_once_its_tokens_have_expired(control: Control) -> None:
    old_kid = control.service.keys.signing_key().kid
    retired_at = int(control.clock.now)
    rotate(control.paths, now=retired_at)
    max_ttl = control.service.keys.token_ttl_max
    control.clock.now = retired_at + max_ttl + RETIRED_MARGIN_SECONDS
    assert old_kid in await _kids(control)  # a token signed just before rotation can still be in use
    control.clock.now += 1
    assert await _kids(control) == [control.service.keys.signing_key().kid]


async def test_retired_files_hold_only_public_keys(control: Control) -> None:
    rotate(control.paths, now=int(control.clock.now))
    (retired,) = control.paths.retired_dir.iterdir()
    assert b"PRIVATE" not in retired.read_bytes()
    assert retired.name.startswith(f"{int(control.clock.now)}-")


async def test_staged_key_is_published_before_it_signs(control: Control) -> None:
    current = control.service.keys.signing_key().kid
    staged = stage(control.paths)
    assert await _kids(control) == [current, staged.staged_kid]
    assert decode_jwt(await _token(control))[0]["kid"] == current
    promoted = rotate(control.paths, now=int(control.clock.now))
    assert promoted.active_kid == staged.staged_kid
    assert not control.paths.staged.exists()
    assert decode_jwt(await _token(control))[0]["kid"] == staged.staged_kid
    assert await _kids(control) == [staged.staged_kid, current]


def test_staging_twice_is_refused(tmp_path: Path) -> None:
    paths = KeyPaths(tmp_path / "signing.pem")
    stage(paths)
    with pytest.raises(KeyFileError, match="already holds a staged key"):
        stage(paths)


def test_rotation_prunes_long_retired_files(tmp_path: Path) -> None:
    paths = KeyPaths(tmp_path / "signing.pem")
    rotate(paths, now=1_000)
    rotate(paths, now=2_000)
    result = rotate(paths, now=1_000 + 86_400 + 1)
    assert [p.name.split("-")[0] for p in result.pruned] == ["1000"]
    assert sorted(p.name.split("-")[0] for p in paths.retired_dir.iterdir()) == ["2000", "87401"]


async def test_unreadable_rotation_keeps_the_last_good_key(control: Control) -> None:
    kid = control.service.keys.signing_key().kid
    control.paths.staged.write_text("half written")
    control.paths.staged.chmod(0o600)
    assert decode_jwt(await _token(control))[0]["kid"] == kid


def test_rotate_key_command(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "signing.pem"
    env = {"AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(key)}
    runner = CliRunner()
    first = runner.invoke(main, ["control", "rotate-key", "--stage"], env=env)
    assert first.exit_code == 0, first.output
    assert "staged key" in first.output
    # env names the variable so CliRunner restores it: the flag writes it into os.environ
    second = runner.invoke(
        main,
        ["control", "--signing-key-path", str(key), "rotate-key"],
        env={"AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": None},
    )
    assert second.exit_code == 0, second.output
    ring = load_keyring(KeyPaths(key), create=False)
    assert f"signing with {ring.active.kid}" in second.output
    assert len(ring.retired) == 1 and ring.staged is None


def test_rotate_key_without_a_path_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH", raising=False)
    result = CliRunner().invoke(main, ["control", "rotate-key"])
    assert result.exit_code == 2
    assert "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH" in result.output


def test_key_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(KeyFileError, match="cannot create signing key"):
        load_keyring(KeyPaths(blocker / "signing.pem"))
