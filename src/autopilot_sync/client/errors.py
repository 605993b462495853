"""Every exception the client SDK raises, in one place, so callers can catch by meaning rather than by origin.

The split that matters to callers (and to the reconnection manager) is: a bad token (`AuthenticationError`: refresh
and retry), a broken server (`ProtocolError`: bounded retries, never a hot loop), a lost network
(`ConnectionLostError`: back off and retry), and mistakes of the caller (`ReducerArgumentError`, `UnknownReducerError`).
"""

from __future__ import annotations

import enum

from autopilot_sync.contract.errors import CodedError


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class SchemaError(ClientError):
    """The module schema could not be fetched or does not describe what the server sends."""


class ConnectError(ClientError):
    """The WebSocket could not be opened (network, HTTP status, no acceptable subprotocol)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectionRejectedError(ConnectError):
    """The server upgraded the socket, then closed it before `InitialConnection` (e.g. `client_connected` refused).

    `code` and `reason` are the close frame's (the reason is the module's own message on our host; SpacetimeDB drops
    the socket without a close frame, so `code` is None and `reason` empty there).
    """

    def __init__(self, message: str, code: int | None, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class AuthenticationError(ConnectError):
    """The server refused the token (HTTP 401): the token must be refreshed before trying again."""


class ProtocolErrorKind(enum.Enum):
    """Why a server's input was refused; every kind closes the connection and leaves the cache as it was."""

    UNDECODABLE_FRAME = "undecodable_frame"
    """Unknown compression tag, corrupt compressed body, unknown message tag, truncated or trailing bytes."""
    TEXT_FRAME = "text_frame"
    """A text frame on a binary protocol."""
    UNEXPECTED_MESSAGE = "unexpected_message"
    """A message the protocol does not allow at this point (a second `InitialConnection`, anything before the first)."""
    UNKNOWN_QUERY_SET = "unknown_query_set"
    """An update or answer naming a query set this connection has no live subscription for."""
    UNKNOWN_REQUEST = "unknown_request"
    """An answer to a request id this connection never sent (or already got an answer for)."""
    UNKNOWN_TABLE = "unknown_table"
    """Rows for a table the module schema does not declare."""
    BAD_ROW = "bad_row"
    """A row that does not decode as its table's row type."""
    NO_SUBPROTOCOL = "no_subprotocol"
    """The server accepted the WebSocket without choosing one of the offered subprotocols."""


class ProtocolError(CodedError[ProtocolErrorKind], ClientError):
    """The server sent something the protocol forbids; the connection is closed with this as its reason.

    `code` (also `kind`) says why, `message` (also `detail`) what exactly.
    """

    def __init__(self, kind: ProtocolErrorKind, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


class ConnectionLostError(ClientError):
    """The connection ended (closed by either side or by the network) before an answer arrived."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class NotConnectedError(ClientError):
    """A request that needs a live connection was made while there is none (reducer calls are never queued)."""


class SubscriptionFailedError(ClientError):
    """The server refused or dropped a query set (`SubscriptionError`)."""

    def __init__(self, query_set_id: int, message: str) -> None:
        super().__init__(f"query set {query_set_id}: {message}")
        self.query_set_id = query_set_id
        self.message = message


class QuerySetEndedError(ClientError):
    """Waited for a query set to apply, but it was unsubscribed or its connection closed for good."""


class UnknownReducerError(ClientError):
    """A reducer name the module schema does not declare (caught before anything is sent)."""


class ReducerArgumentError(ClientError):
    """Arguments that do not fit the reducer's parameter types (caught before anything is sent)."""


class OneOffQueryError(ClientError):
    """The server refused a one-off SQL query; the message is the server's."""
