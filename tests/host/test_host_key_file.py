"""The host key is created and checked at start without `cryptography`, and is still the key it always was.

`host/auth/keyfile.py` writes the standard PKCS#8 PEM (short form) and recognises exactly that form; every other
file is parsed by `cryptography` at start. So a damaged key still fails the start, and a key an older host wrote
(with its public point) still serves.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autopilot_sync.host.auth.keyfile import P256_ORDER, new_key_pem, scalar_of
from autopilot_sync.host.auth.tokens import KEY_FILE_NAME, SigningKey
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings


def test_a_new_key_file_is_standard_pkcs8_that_cryptography_reads_as_the_same_p256_key() -> None:
    for _ in range(20):
        scalar, pem = new_key_pem()
        loaded = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey) and isinstance(loaded.curve, ec.SECP256R1)
        assert loaded.private_numbers().private_value == scalar == scalar_of(pem)
        assert all(len(line) <= 64 for line in pem.splitlines())


def test_a_key_written_at_first_start_signs_tokens_its_public_key_verifies(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path)
    token = first.sign({"iss": "x"})
    again = SigningKey.load_or_create(tmp_path)
    assert again.public_pem == first.public_pem
    assert again.verifies(token)
    pem = (tmp_path / KEY_FILE_NAME).read_bytes()
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    assert public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) == (
        first.public_pem
    )


def test_a_key_an_older_host_wrote_with_its_public_point_still_serves(tmp_path: Path) -> None:
    older = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = older.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    assert scalar_of(pem) is None  # not the short form: parsed fully
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(pem)
    path.chmod(0o600)
    key = SigningKey.load_or_create(tmp_path)
    assert key.public_pem == older.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.verifies(key.sign({"iss": "x"}))


def _short_pem_of(scalar_bytes: bytes) -> bytes:
    _, pem = new_key_pem()
    lines = pem.splitlines(keepends=True)
    der = base64.b64decode(b"".join(lines[1:-1]))
    text = base64.b64encode(der[:-32] + scalar_bytes)
    return lines[0] + b"".join(text[i : i + 64] + b"\n" for i in range(0, len(text), 64)) + lines[-1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda pem: pem[:-40] + pem[-26:],  # truncated body
        lambda pem: pem.replace(b"MEE", b"MEF", 1),  # a changed DER header
        lambda pem: b"not a key at all\n",
        lambda _: _short_pem_of(b"\0" * 32),  # scalar 0
        lambda _: _short_pem_of(P256_ORDER.to_bytes(32, "big")),  # scalar n
    ],
)
def test_a_damaged_key_file_fails_loading_at_start(tmp_path: Path, damage: object) -> None:
    assert callable(damage)
    SigningKey.load_or_create(tmp_path)
    path = tmp_path / KEY_FILE_NAME
    damaged = damage(path.read_bytes())
    assert scalar_of(damaged) is None
    path.write_bytes(damaged)
    with pytest.raises(ValueError):
        SigningKey.load_or_create(tmp_path)


def test_a_host_with_a_damaged_key_file_exits_before_ready_with_the_key_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SigningKey.load_or_create(data)
    key = data / KEY_FILE_NAME
    key.write_bytes(key.read_bytes()[:-40] + b"-----END PRIVATE KEY-----\n")
    fields = {"listen": ListenAddress("127.0.0.1", 0), "data_dir": data, "module": "autopilot_sync.module"}
    env = {**os.environ, **service_environment(HostSettings, fields)}
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert done.returncode != 0
    assert " ready: " not in done.stdout
    assert "Unable to load PEM file" in done.stderr  # cryptography's error, as before the fast check
