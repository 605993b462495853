"""The client side of the host's publish routes: `PUT /v1/database/:name` and `DELETE /v1/database/:name`.

One implementation for `autopilot-sync publish|delete` and the publish lane (`ops/publish.py`): the module goes as
SpacetimeDB's route takes it (a JavaScript bundle with `host_type=Js`, or the JSON naming an installed Python
module), and the host's answer comes back typed (`PublishAnswer`), its refusal text (the readable diff) intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

PUBLISH_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class ModuleArtifact:
    """What is published: an installed Python module by dotted path, or a JavaScript bundle's bytes."""

    python_module: str | None = None
    bundle: bytes | None = None

    @classmethod
    def from_js_path(cls, path: Path) -> ModuleArtifact:
        """A bundle `autopilot-sync build` wrote (OSError when it cannot be read)."""
        return cls(bundle=path.read_bytes())

    def describe(self) -> str:
        """For output lines."""
        if self.python_module is not None:
            return f"Python module {self.python_module}"
        return f"JavaScript bundle ({len(self.bundle or b'')} bytes)"


@dataclass(frozen=True, slots=True)
class PublishAnswer:
    """The host's answer: its status, and on success whether it created or updated and what changed."""

    status: int
    text: str
    op: str | None = None
    cleared: bool = False
    disconnected_clients: bool = False
    changes: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    def line(self) -> str:
        """One line (or the diff) for the operator."""
        if not self.ok:
            return f"HTTP {self.status}: {self.text.strip()}"
        what = "created" if self.op == "created" else "updated"
        extra = "; data deleted" if self.cleared else ""
        extra += "; clients reconnect" if self.disconnected_clients else ""
        return f"{what} ({len(self.changes)} schema change(s){extra})"


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _module_request(artifact: ModuleArtifact, token: str) -> tuple[dict[str, str], dict[str, str], bytes]:
    """Query parameters, headers and body naming the artifact, as the publish routes take it."""
    params: dict[str, str] = {}
    headers = _headers(token)
    if artifact.bundle is not None:
        params["host_type"] = "Js"
        headers["Content-Type"] = "application/javascript"
        return params, headers, artifact.bundle
    headers["Content-Type"] = "application/json"
    return params, headers, json.dumps({"python_module": artifact.python_module}).encode("utf-8")


async def pre_publish(
    base_url: str, database: str, token: str, artifact: ModuleArtifact, *, seconds: float = PUBLISH_TIMEOUT_SECONDS
) -> tuple[int, Any]:
    """`POST /v1/database/:name/pre_publish`: (status, SpacetimeDB's `PrePublishResult` JSON or the error text)."""
    params, headers, body = _module_request(artifact, token)
    url = f"{base_url.rstrip('/')}/v1/database/{database}/pre_publish"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as http,
        http.post(url, params=params, data=body, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, (json.loads(text) if response.status == 200 else text)


async def publish_module(
    base_url: str,
    database: str,
    token: str,
    artifact: ModuleArtifact,
    *,
    clear: bool = False,
    break_clients: bool = False,
    seconds: float = PUBLISH_TIMEOUT_SECONDS,
) -> PublishAnswer:
    """`PUT /v1/database/:name` with the artifact; aiohttp errors (unreachable host) propagate.

    `break_clients` is `spacetime publish --break-clients`: the plan's token is asked of `pre_publish` first and the
    publish sent with `policy=BreakClients` (a plan that needs no token, or cannot be applied, is sent as is).
    """
    params, headers, body = _module_request(artifact, token)
    params["clear"] = "true" if clear else "false"
    if break_clients and not clear:
        status, plan = await pre_publish(base_url, database, token, artifact, seconds=seconds)
        if status != 200:
            return PublishAnswer(status, str(plan))
        automatic = plan.get("AutoMigrate") if isinstance(plan, dict) else None
        if isinstance(automatic, dict) and automatic.get("break_clients"):
            params |= {"policy": "BreakClients", "token": str(automatic.get("token", ""))}
    url = f"{base_url.rstrip('/')}/v1/database/{database}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as http,
        http.put(url, params=params, data=body, headers=headers) as response,
    ):
        text = await response.text()
        if response.status != 200:
            return PublishAnswer(response.status, text)
    value: Any = json.loads(text)
    success = value.get("Success", {}) if isinstance(value, dict) else {}
    return PublishAnswer(
        200,
        text,
        op=str(success.get("op", "")),
        cleared=bool(value.get("cleared")),
        disconnected_clients=bool(value.get("disconnected_clients")),
        changes=list(value.get("changes", [])),
    )


async def delete_database(base_url: str, database: str, token: str, *, seconds: float = 60.0) -> PublishAnswer:
    """`DELETE /v1/database/:name`."""
    url = f"{base_url.rstrip('/')}/v1/database/{database}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as http,
        http.delete(url, headers=_headers(token)) as response,
    ):
        return PublishAnswer(response.status, await response.text(), op="deleted" if response.status == 200 else None)
