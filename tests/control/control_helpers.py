"""Helpers for the control tests: keys, request bodies, JWT decoding, and a handle on a running control service."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from autopilot_sync.control.client import token_proof
from autopilot_sync.control.keys import KeyPaths
from autopilot_sync.control.service import ControlService
from autopilot_sync.nostr.event import Event
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.nostr.nip98 import build_http_auth_event, encode_authorization_header

READER = SecretKey.from_hex("11" * 32)
PRODUCER = SecretKey.from_hex("22" * 32)
DATABASE = "autopilot-sync"
SPACETIME_URL = "http://127.0.0.1:3000"


def reader_body(**changes: Any) -> dict[str, Any]:
    """A valid reader request body, with fields replaced or (value `...`) removed."""
    body: dict[str, Any] = {
        "scopes": ["sync.subscribe", "sync.checkpoint.write"],
        "streams": ["run:*", "worker:alpha"],
        "ttl_seconds": None,
        "client_kind": "desktop",
    }
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def encode(body: Any) -> bytes:
    """JSON bytes exactly as the client will send and hash them."""
    return json.dumps(body, separators=(",", ":")).encode()


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWT (no verification)."""
    header, claims, _ = token.split(".")

    def part(text: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return value

    return part(header), part(claims)


@dataclass
class FakeClock:
    """A settable clock for the key store, so rotation horizons can be crossed without waiting."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Control:
    """A running control service: its URL, service object, key paths and an HTTP session."""

    url: str
    service: ControlService
    paths: KeyPaths
    clock: FakeClock
    http: aiohttp.ClientSession

    @property
    def token_url(self) -> str:
        return f"{self.url}/api/sync/token"

    def proof(
        self,
        body: bytes,
        secret: SecretKey = READER,
        *,
        url: str | None = None,
        method: str = "POST",
        created_at: int | None = None,
    ) -> Event:
        """A NIP-98 event for a request to the token route, made unique by the client's `nonce` tag."""
        stamp = int(time.time()) if created_at is None else created_at
        if method == "POST":
            return token_proof(secret, url or self.token_url, body, stamp)
        return build_http_auth_event(secret, url=url or self.token_url, method=method, created_at=stamp, body=body)

    async def post(
        self,
        body: bytes,
        *,
        authorization: str | None = None,
        event: Event | None = None,
        secret: SecretKey = READER,
        query: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """POST a body to the token route; the proof is made for it unless given."""
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if authorization is None:
            authorization = encode_authorization_header(event or self.proof(body, secret))
        if authorization:
            headers["Authorization"] = authorization
        async with self.http.post(self.token_url + query, data=body, headers=headers) as response:
            return response.status, await response.json()

    async def get_json(self, path: str) -> dict[str, Any]:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            value: dict[str, Any] = await response.json()
            return value

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from `/metrics`."""
        async with self.http.get(self.url + "/metrics") as response:
            text = await response.text()
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0
