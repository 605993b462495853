"""What a WebSocket upgrade request asks for: its subprotocol, connection id and query options, or a 400 saying why.

Read before anything is upgraded, in the order of SpacetimeDB's `crates/client-api/src/routes/subscribe.rs`
(`connection_id`, then the query string, then the subprotocol by the server's preference: v3, v2, `v1.bsatn`,
`v1.json`; none → 400 "no valid protocol selected"). The endpoint (`websocket.py`) does the rest: admission, the
upgrade, `client_connected` and serving the socket.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from autopilot_sync.host.http_api import Authenticated
from autopilot_sync.spacetime.frames import Compression
from autopilot_sync.spacetime.v1_subprotocols import V1_BSATN_PROTOCOL, V1_JSON_PROTOCOL
from autopilot_sync.spacetime.values import ConnectionId

V3_PROTOCOL = "v3.bsatn.spacetimedb"
V2_PROTOCOL = "v2.bsatn.spacetimedb"
#: Subprotocols we serve, most preferred first (SpacetimeDB's `select_protocol` order).
PROTOCOLS = (V3_PROTOCOL, V2_PROTOCOL, V1_BSATN_PROTOCOL, V1_JSON_PROTOCOL)
#: The protocol version each subprotocol speaks (v1 through its codec, `session_v1.py`).
PROTOCOL_VERSIONS = {V3_PROTOCOL: 3, V2_PROTOCOL: 2, V1_BSATN_PROTOCOL: 1, V1_JSON_PROTOCOL: 1}


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade request that passed every check: what the connection will be."""

    connection_id: ConnectionId
    compression: Compression
    protocol: str

    @property
    def version(self) -> int:
        """The protocol version the chosen subprotocol speaks."""
        return PROTOCOL_VERSIONS[self.protocol]


def read_upgrade(request: web.Request, auth: Authenticated) -> Upgrade:
    """The request's connection id, compression and subprotocol; `web.HTTPBadRequest` naming the first bad one."""
    connection_id = _connection_id(request, auth)
    compression = _query_options(request, auth)
    protocol = _choose_protocol(request)
    if protocol is None:
        raise bad_request("no valid protocol selected", auth)
    return Upgrade(connection_id, compression, protocol)


def bad_request(text: str, auth: Authenticated) -> web.HTTPBadRequest:
    """A 400 with `text`, carrying the caller's identity headers (as every answer of the route does)."""
    return web.HTTPBadRequest(text=text, headers=auth.identity_headers())


def _choose_protocol(request: web.Request) -> str | None:
    offered: list[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", []):
        offered.extend(p.strip() for p in header.split(",") if p.strip())
    return next((p for p in PROTOCOLS if p in offered), None)


def _connection_id(request: web.Request, auth: Authenticated) -> ConnectionId:
    raw = request.query.get("connection_id")
    if raw is None:
        return ConnectionId(secrets.randbits(128) or 1)
    try:
        connection_id = ConnectionId.from_hex(raw)
    except ValueError:
        raise bad_request(
            f"Failed to deserialize query string: invalid connection_id {raw!r}: expected 32 hex digits", auth
        ) from None
    if connection_id.value == 0:
        raise bad_request("Invalid connection ID: the all-zeros ConnectionId is reserved.", auth)
    return connection_id


def _query_options(request: web.Request, auth: Authenticated) -> Compression:
    try:
        compression = Compression.from_query_param(request.query.get("compression"))
    except ValueError as exc:
        raise bad_request(f"Failed to deserialize query string: {exc}", auth) from None
    confirmed = request.query.get("confirmed")
    if confirmed is not None and confirmed not in ("true", "false"):
        raise bad_request(
            f"Failed to deserialize query string: confirmed must be true or false, got {confirmed!r}", auth
        )
    return compression
