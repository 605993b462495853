"""The Python client SDK for SpacetimeDB 2.x hosts (ours, or a real one at the same base URL).

`connect()` opens one session; `SyncClient` keeps one alive across disconnects. See docs/client.md.
"""

from __future__ import annotations

from autopilot_sync.client.cache import ChangeCause, ChangeKind, ClientCache, RowChange
from autopilot_sync.client.connection import CloseInfo, CloseReason, Connection, ConnectOptions, connect
from autopilot_sync.client.errors import (
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    ConnectionRejectedError,
    NotConnectedError,
    OneOffQueryError,
    ProtocolError,
    ProtocolErrorKind,
    QuerySetEndedError,
    ReducerArgumentError,
    SchemaError,
    SubscriptionFailedError,
    UnknownReducerError,
)
from autopilot_sync.client.query_set import QuerySet, QuerySetState
from autopilot_sync.client.reconnect import (
    BackoffPolicy,
    ConnectionState,
    ResubscribeRequest,
    StateEvent,
    SyncClient,
    TokenGrant,
)
from autopilot_sync.client.results import (
    ProcedureCallResult,
    ProcedureFailed,
    ProcedureReturned,
    QueryResult,
    QueryTable,
    ReducerCallResult,
    ReducerCommitted,
    ReducerFailed,
    ReducerInternalError,
)
from autopilot_sync.client.schema import ClientSchema, ProcedureSchema, TableSchema
from autopilot_sync.spacetime.frames import Compression

__all__ = [
    "AuthenticationError",
    "BackoffPolicy",
    "ChangeCause",
    "ChangeKind",
    "ClientCache",
    "ClientError",
    "ClientSchema",
    "CloseInfo",
    "CloseReason",
    "Compression",
    "ConnectError",
    "ConnectOptions",
    "Connection",
    "ConnectionLostError",
    "ConnectionRejectedError",
    "ConnectionState",
    "NotConnectedError",
    "OneOffQueryError",
    "ProcedureCallResult",
    "ProcedureFailed",
    "ProcedureReturned",
    "ProcedureSchema",
    "ProtocolError",
    "ProtocolErrorKind",
    "QueryResult",
    "QuerySet",
    "QuerySetEndedError",
    "QuerySetState",
    "QueryTable",
    "ReducerArgumentError",
    "ReducerCallResult",
    "ReducerCommitted",
    "ReducerFailed",
    "ReducerInternalError",
    "ResubscribeRequest",
    "RowChange",
    "SchemaError",
    "StateEvent",
    "SubscriptionFailedError",
    "SyncClient",
    "TableSchema",
    "TokenGrant",
    "UnknownReducerError",
    "connect",
]
