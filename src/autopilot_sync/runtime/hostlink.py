"""The publisher's way to the host: the client SDK over the v2/v3 WebSocket, and nothing else.

This adapter is the only runtime module that knows the SDK. It keeps one `SyncClient` (the SDK's reconnection
manager, which reopens the session after any loss and asks `TokenSource` for a fresh token before the old one
expires), calls `append_sync_events` through the sync module's generated bindings (`autopilot_sync.sync_bindings`:
typed values, never tuples), reads `stream_head` with a one-off query, and turns every way a call can fail into one
`PublishFailure`, so the retry classes stay a pure function of that value.

Before it first touches a stream it records the stream's readers (`grant_stream_readers`, idempotent): the runtime's
own identity (it reads the head it reconciles with) and the identities of the configured reader keys, derived from
control's issuer exactly as the host derives a caller's identity. Who reads a stream is thereby decided by the
producer's configuration, not by any reader's request (docs/control.md, docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiohttp

from autopilot_sync.client.connection import Connection
from autopilot_sync.client.errors import (
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    ConnectionRejectedError,
    NotConnectedError,
    OneOffQueryError,
    ProtocolError,
    ReducerArgumentError,
    SchemaError,
    UnknownReducerError,
)
from autopilot_sync.client.reconnect import BackoffPolicy, ConnectionState, StateEvent, SyncClient, TokenGrant
from autopilot_sync.client.results import ReducerCommitted, ReducerFailed
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.runtime.outbox import StoredEvent
from autopilot_sync.runtime.retry import FailureKind, LinkError, PublishFailure
from autopilot_sync.runtime.tokens import TokenError, TokenSource
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Identity, Timestamp
from autopilot_sync.sync_bindings import ROW_TYPES, AppendSyncEventsBatchItem, Reducers, StreamHead

log = logging.getLogger(__name__)

T = TypeVar("T")


def event_argument(event: StoredEvent) -> AppendSyncEventsBatchItem:
    """One `append_sync_events` input: the stored event with `expected_seq = seq` and its append time."""
    return AppendSyncEventsBatchItem(
        stream_id=event.stream_id,
        idempotency_key=event.idempotency_key,
        kind=event.kind,
        payload=event.payload,
        payload_hash=event.payload_hash,
        expected_seq=event.seq,
        published_at=Timestamp(event.appended_at_us),
    )


class SdkHostLink:
    """`HostLink` over the SDK's reconnecting `SyncClient`, authenticated with control-issued tokens."""

    def __init__(
        self,
        base_url: str,
        database: str,
        tokens: TokenSource,
        call_timeout: float = 30.0,
        connect_wait: float = 5.0,
        reconnect_policy: BackoffPolicy | None = None,
        readers: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url
        #: hex Nostr keys made readers of every stream this runtime publishes (besides itself)
        self.readers = tuple(readers)
        self._granted: set[str] = set()
        self.database = database
        self.tokens = tokens
        self.call_timeout = call_timeout
        self.connect_wait = connect_wait
        self.reconnect_policy = reconnect_policy or BackoffPolicy(base=0.2, cap=5.0)
        self._client: SyncClient | None = None
        self._schema: ClientSchema | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._sessions = 0

    @property
    def sessions(self) -> int:
        """Sessions opened so far (every reconnect counts): the publisher checks the host's streams after each."""
        return self._sessions

    def _count_session(self, event: StateEvent) -> None:
        if event.state is ConnectionState.CONNECTED:
            self._sessions += 1

    async def append(self, events: Sequence[StoredEvent]) -> None:
        """Call `append_sync_events`; LinkError unless the host acknowledged the commit."""
        new = [stream_id for stream_id in dict.fromkeys(e.stream_id for e in events) if stream_id not in self._granted]
        if new:  # a coalesced call may bring many new streams: their grants go out together, not one by one
            granted = await asyncio.gather(*(self._ensure_readers(s) for s in new), return_exceptions=True)
            refused = next((g for g in granted if isinstance(g, BaseException)), None)
            if refused is not None:
                raise refused
        batch = [event_argument(event) for event in events]
        result = await self._request(lambda conn: Reducers(conn).append_sync_events(batch))
        if isinstance(result, ReducerCommitted):
            return
        if isinstance(result, ReducerFailed):
            raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, result.message))
        raise LinkError(PublishFailure(FailureKind.INTERNAL_ERROR, result.message))

    async def stream_head(self, stream_id: str) -> int | None:
        """`head_seq` from `stream_head` (None when the host has no such stream); stream ids never contain quotes.

        No row may also mean the host lost this runtime's reader grant with the rest of the data (a delete-data
        publish): the grant is recorded again and the head read once more before the stream is called absent.
        """
        if "'" in stream_id:
            raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, f"invalid_event: stream id {stream_id!r}"))
        head = await self._read_head(stream_id)
        if head is None and stream_id in self._granted:
            self._granted.discard(stream_id)
            head = await self._read_head(stream_id)
        return head

    async def _read_head(self, stream_id: str) -> int | None:
        await self._ensure_readers(stream_id)  # the head is visible to the stream's readers only
        query = f"SELECT * FROM stream_head WHERE stream_id = '{stream_id}'"
        answer = await self._request(lambda conn: conn.one_off_query(query))
        rows = answer.rows("stream_head")
        if not rows:
            return None
        return _head_row(rows[0]).head_seq

    async def stream_heads(self, stream_ids: Sequence[str]) -> dict[str, int | None]:
        """The heads of `stream_ids` (None: the host holds no such stream): one query per `HEADS_PER_QUERY` streams.

        A stream is left out of the answer when the query cannot decide it: one whose reader grant this link
        recorded before and the host does not show may have lost that grant with a delete-data publish, and ids
        the link refuses (a quote) are refused by `stream_head`; the caller reads those alone (`head_reads.py`).
        """
        ids = [stream_id for stream_id in dict.fromkeys(stream_ids) if "'" not in stream_id]
        new = [stream_id for stream_id in ids if stream_id not in self._granted]
        if new:  # the heads are visible to the streams' readers only: record the grants together
            granted = await asyncio.gather(*(self._ensure_readers(s) for s in new), return_exceptions=True)
            refused = next((g for g in granted if isinstance(g, BaseException)), None)
            if refused is not None:
                raise refused
        heads: dict[str, int | None] = dict.fromkeys(new)  # granted just now: not shown means not held
        for query in head_queries(ids):
            answer = await self._request(functools.partial(Connection.one_off_query, sql=query))
            for row in answer.rows("stream_head"):
                head = _head_row(row)
                heads[head.stream_id] = head.head_seq
        return heads

    async def held_streams(self, stream_ids: Sequence[str]) -> set[str]:
        """Which of `stream_ids` the host holds a head for: one query per `HEADS_PER_QUERY` streams, so an answer is
        bounded by what the runtime asks, never by how many streams the host holds."""
        held: set[str] = set()
        for query in head_queries(stream_ids):
            answer = await self._request(functools.partial(Connection.one_off_query, sql=query))
            held.update(_head_row(row).stream_id for row in answer.rows("stream_head"))
        return held

    async def _ensure_readers(self, stream_id: str) -> None:
        """Record the stream's readers once per process (the reducer is idempotent, so a restart repeats it)."""
        if stream_id in self._granted:
            return
        readers = self._reader_identities()
        result = await self._request(lambda conn: Reducers(conn).grant_stream_readers(stream_id, readers))
        if isinstance(result, ReducerCommitted):
            self._granted.add(stream_id)
            return
        if isinstance(result, ReducerFailed):
            raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, result.message))
        raise LinkError(PublishFailure(FailureKind.INTERNAL_ERROR, result.message))

    def _reader_identities(self) -> list[Identity]:
        """The runtime's own identity and the configured readers', derived with the issuer of its current token."""
        token = self.tokens.current
        if token is None:  # the connection was opened with a token, so there is one
            raise RuntimeError("no session token yet")
        own = Identity.from_hex(token.identity)
        return list(dict.fromkeys([own, *(identity_from_claims(token.issuer, key) for key in self.readers)]))

    async def refresh_auth(self) -> None:
        """Fetch a new token now and start a new client with it (the old one closes once its calls are done)."""
        try:
            await self.tokens.token(force_refresh=True)
        except TokenError as exc:
            raise LinkError(exc.failure) from None
        async with self._lock:
            old, self._client = self._client, None
        if old is not None:
            task = asyncio.create_task(_close_later(old, self.call_timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Close the client and any retiring ones."""
        async with self._lock:
            old, self._client = self._client, None
        if old is not None:
            await old.close()
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _provide_token(self) -> TokenGrant:
        token = await self.tokens.token()
        return TokenGrant(token, self.tokens.expires_at(), self.tokens.refresh_at())

    async def _sync_client(self) -> SyncClient:
        async with self._lock:
            if self._client is None:
                client = SyncClient(
                    self.base_url,
                    self.database,
                    token_provider=self._provide_token,
                    policy=self.reconnect_policy,
                    schema=self._schema,
                    row_types=ROW_TYPES,
                )
                client.on_state(self._count_session)
                await client.start()
                self._client = client
            return self._client

    async def _request(self, send: Callable[[Connection], Awaitable[T]]) -> T:
        client = await self._sync_client()
        try:
            async with asyncio.timeout(self.connect_wait):
                connection = await client.wait_connected()
        except TimeoutError:
            raise LinkError(self._not_connected(client)) from None
        except ClientError as exc:
            raise LinkError(describe_failure(exc)) from None
        self._schema = connection.schema
        try:
            async with asyncio.timeout(self.call_timeout):
                return await send(connection)
        except TimeoutError:
            await connection.close()  # the answer may never come: start over on a new session
            raise LinkError(PublishFailure(FailureKind.TIMEOUT, f"no answer within {self.call_timeout} s")) from None
        except Exception as exc:
            raise LinkError(describe_failure(exc)) from None

    def _not_connected(self, client: SyncClient) -> PublishFailure:
        """Why there is no connection, from the client's last state event (a token refusal is not a network error)."""
        event = client.last_event
        reason = event.reason if event is not None and event.reason else "no connection yet"
        cause = event.error.__cause__ if event is not None and event.error is not None else None
        if isinstance(cause, TokenError):
            return cause.failure
        if event is not None and isinstance(event.error, AuthenticationError):
            return PublishFailure(FailureKind.AUTH_REJECTED, reason)
        if event is not None and isinstance(event.error, ConnectionRejectedError):
            return describe_failure(event.error)
        return PublishFailure(FailureKind.NETWORK, f"not connected to {self.base_url}: {reason}")


#: Streams one head query names (the most rows its answer can hold after a reconnect).
HEADS_PER_QUERY = 64


def head_queries(stream_ids: Sequence[str], per_query: int = HEADS_PER_QUERY) -> list[str]:
    """`SELECT * FROM stream_head WHERE stream_id = 'a' OR ...`, `per_query` streams each (stream ids hold no quote:
    control and the module refuse them)."""
    ids = sorted(set(stream_ids))
    return [
        "SELECT * FROM stream_head WHERE " + " OR ".join(f"stream_id = '{s}'" for s in ids[i : i + per_query])
        for i in range(0, len(ids), per_query)
    ]


def _head_row(row: object) -> StreamHead:
    """A `stream_head` row as the bindings type (the client decodes with ROW_TYPES: only a changed schema fails)."""
    if not isinstance(row, StreamHead):
        raise LinkError(PublishFailure(FailureKind.PROTOCOL, f"stream_head row of another shape: {row!r:.200}"))
    return row


async def _close_later(client: SyncClient, delay: float) -> None:
    await asyncio.sleep(delay)
    await client.close()


def describe_failure(exc: BaseException) -> PublishFailure:
    """The `PublishFailure` of an exception raised by the SDK or the network under it."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return PublishFailure(FailureKind.AUTH_REJECTED, message)
    if isinstance(exc, ConnectionRejectedError):
        # The host upgrades, then closes: 1008 is client_connected's refusal (its message says why), 1011 storage.
        if exc.code == 1008:
            if parse_error_code(exc.reason) is SyncErrorCode.ISSUER_NOT_CONFIGURED:
                # A fresh or reset database until its owner names control: wait for it, never dead-letter the gap.
                return PublishFailure(FailureKind.HOST_UNAVAILABLE, message)
            return PublishFailure(FailureKind.AUTH_REJECTED, message)
        if exc.code == 1011:
            return PublishFailure(FailureKind.HOST_UNAVAILABLE, message)
        return PublishFailure(FailureKind.NETWORK, message)
    if isinstance(exc, ConnectError):
        if exc.status == 403:
            return PublishFailure(FailureKind.AUTH_REJECTED, message)
        if exc.status is not None and exc.status >= 500:
            return PublishFailure(FailureKind.HOST_UNAVAILABLE, message)
        return PublishFailure(FailureKind.NETWORK, message)
    if isinstance(exc, ConnectionLostError | NotConnectedError):
        return PublishFailure(FailureKind.NETWORK, message)
    if isinstance(exc, ProtocolError):
        return PublishFailure(FailureKind.PROTOCOL, message)
    if isinstance(exc, SchemaError | OneOffQueryError):
        return PublishFailure(FailureKind.HOST_UNAVAILABLE, message)
    if isinstance(exc, UnknownReducerError | ReducerArgumentError):
        return PublishFailure(FailureKind.REDUCER_ERROR, f"invalid_event: {message}")
    if isinstance(exc, aiohttp.ClientError | OSError | ClientError):
        return PublishFailure(FailureKind.NETWORK, message)
    return PublishFailure(FailureKind.NETWORK, f"{type(exc).__name__}: {message}")
