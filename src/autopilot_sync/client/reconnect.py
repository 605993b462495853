"""The reconnection manager: one logical client that survives disconnects, host restarts and token expiry.

It owns what must outlive a single WebSocket session: the cache, the query sets and the token. Each session is a
`Connection`; when one ends the manager backs off (full jitter: a uniform delay in `[0, min(cap, base·2^attempt)]`,
defaults base 0.5 s and cap 30 s), refreshes the token through the caller's async provider when it is about to
expire or was refused (401), reconnects, and resubscribes every query set, first passing its queries through the
caller's rewrite hook (the desktop moves resume cursors there). While resubscribing, the cache keeps showing the
old rows; when every set has answered, callbacks report only the difference (rows gone while offline as deletes,
new rows as inserts, changed rows as updates).

A live session is also renewed before its token expires, because the host closes a socket when the token it was
opened with expires (1008 `token expired`): at the grant's refresh time (control's `refresh_after_in`; without one,
`token_refresh_margin` before expiry; a time already past becomes half the remaining lifetime) the manager fetches a
new token, stops handing out the old session, lets its calls and queries in flight be answered (until the old token
expires), closes it and reconnects at once with the new token, resubscribing (and so resuming) as after any
reconnect. If the provider fails or hands back the same token, the session is kept and the provider asked again
later, until it gives a new token or the host closes the session.

Protocol errors (a server sending garbage) are retried a bounded number of times in a row, each after a backoff,
then the client closes for good: a broken server never causes a hot loop. A refused token without a provider also
closes the client, since retrying the same token cannot succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from autopilot_sync.backoff import Backoff
from autopilot_sync.client.auth import token_expiry
from autopilot_sync.client.cache import ChangeCause, ClientCache
from autopilot_sync.client.connection import CloseInfo, CloseReason, Connection, ConnectOptions, connect, http_url
from autopilot_sync.client.errors import (
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    NotConnectedError,
    ProtocolError,
    SchemaError,
)
from autopilot_sync.client.query_set import QuerySet, QuerySetState
from autopilot_sync.client.results import QueryResult, ReducerCallResult
from autopilot_sync.client.schema import ClientSchema, RowFactory, fetch_schema

log = logging.getLogger(__name__)


#: The close code a host sends when a publish changed its module's schema (1012 "service restart"): reconnect and
#: resubscribe with the schema fetched again (docs/protocol.md).
MODULE_UPDATED_CLOSE_CODE = 1012


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait between attempts and when to give up; see the module docstring for the defaults' meaning."""

    base: float = 0.5
    """Seconds: the ceiling of the first delay."""
    cap: float = 30.0
    """Seconds: no delay is ever longer."""
    max_protocol_errors: int = 5
    """Consecutive sessions ending in a protocol error before the client closes for good."""
    stable_after: float = 10.0
    """A session that lasted this many seconds resets the attempt and protocol-error counters."""
    token_refresh_margin: float = 30.0
    """Refresh the token when it expires within this many seconds."""

    def __post_init__(self) -> None:
        Backoff(self.base, self.cap)  # refuses anything but 0 < base <= cap
        if self.max_protocol_errors < 0:
            raise ValueError("max_protocol_errors must be >= 0")

    @property
    def backoff(self) -> Backoff:
        """The project's one full-jitter backoff with this policy's base and cap."""
        return Backoff(self.base, self.cap)

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number `attempt` (0-based)."""
        return self.backoff.ceiling(attempt)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in `[0, ceiling(attempt)]`, drawn from `rng`."""
        return self.backoff.delay(attempt, rng.uniform)


class ConnectionState(enum.Enum):
    """The manager's states, reported through `StateEvent`s."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StateEvent:
    """One state change: `next_retry_at` (Unix seconds) and `delay` only when backing off; `reason` when the last
    session or attempt failed or the client closed."""

    state: ConnectionState
    attempt: int
    next_retry_at: float | None = None
    delay: float | None = None
    reason: str | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token from the provider; `expires_at` (Unix seconds) defaults to the JWT's `exp` claim, `refresh_at` (when
    to fetch the next one, e.g. from control's `refresh_after_in`) to the policy's margin before expiry."""

    token: str
    expires_at: float | None = None
    refresh_at: float | None = None


#: Seconds between attempts to refresh a live session's token after the provider failed.
REFRESH_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ResubscribeRequest:
    """What the rewrite hook gets for each query set before it is sent again on a new connection."""

    query_set_id: int
    queries: tuple[str, ...]
    reconnects: int


TokenProvider = Callable[[], Awaitable[TokenGrant | str]]
QueryRewriter = Callable[[ResubscribeRequest], Sequence[str] | Awaitable[Sequence[str]]]
StateListener = Callable[[StateEvent], None]


class SyncClient:
    """A client that keeps one connection alive; `async with SyncClient(...) as client:` starts and stops it."""

    def __init__(
        self,
        base_url: str,
        database: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        policy: BackoffPolicy | None = None,
        options: ConnectOptions | None = None,
        schema: ClientSchema | None = None,
        row_types: Mapping[str, RowFactory] | None = None,
        rewrite_queries: QueryRewriter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = http_url(base_url)
        self.database = database
        self.policy = policy or BackoffPolicy()
        self.options = options or ConnectOptions()
        self.cache = ClientCache()
        self.state = ConnectionState.CLOSED
        self.reconnects = 0
        self.schema = schema.with_row_types(row_types) if schema is not None and row_types else schema
        #: The schema came from the server (not the caller): fetch it again after the host's module changed.
        self._schema_fetched = schema is None
        self._row_types = row_types
        self._token = token
        self._token_expires = token_expiry(token) if token else None
        self._token_refresh_at = self._refresh_time(self._token_expires, None)
        self._provider = token_provider
        self._rewrite = rewrite_queries
        self._rng = rng or random.Random()
        self._listeners: list[StateListener] = []
        self._query_sets: dict[int, QuerySet] = {}
        self._next_query_set = 0
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_event: StateEvent | None = None
        self._retiring = False
        self._reconnect_now = False

    # ----- lifecycle -----

    def on_state(self, listener: StateListener) -> None:
        """Call `listener(event)` on every state change."""
        self._listeners.append(listener)

    @property
    def last_event(self) -> StateEvent | None:
        """The most recent state event."""
        return self._last_event

    @property
    def connection(self) -> Connection | None:
        """The live session, if any."""
        conn = self._connection
        return conn if conn is not None and conn.is_open and not self._retiring else None

    @property
    def token(self) -> str | None:
        """The token used for the next connection (the server-issued one for an anonymous client)."""
        return self._token

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see `wait_connected`)."""
        if self._runner is not None:
            return
        self._session = aiohttp.ClientSession()
        self._runner = asyncio.create_task(self._run(), name=f"sync-client-{self.database}")

    async def wait_connected(self) -> Connection:
        """Wait for a live connection; raises `ConnectionLostError` when the client closed for good."""
        while True:
            conn = self.connection
            if conn is not None:
                return conn
            if self.state is ConnectionState.CLOSED and self._runner is not None and self._runner.done():
                reason = self._last_event.reason if self._last_event else "closed"
                raise ConnectionLostError(f"client closed: {reason}")
            waiter = asyncio.ensure_future(self._connected.wait())
            done_waiter = asyncio.ensure_future(self._runner) if self._runner is not None else None
            pending = [waiter] + ([done_waiter] if done_waiter is not None else [])
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def close(self) -> None:
        """Close the connection and stop reconnecting (idempotent)."""
        self._closing.set()
        try:
            conn = self._connection
            if conn is not None:
                await conn.close()
            if self._runner is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
        finally:  # even when the caller is cancelled meanwhile: an open session outlives the loop and warns at exit
            session, self._session = self._session, None
            if session is not None:
                await session.close()
        if self.state is not ConnectionState.CLOSED:
            self._emit(StateEvent(ConnectionState.CLOSED, 0, reason="closed by the client"))

    async def __aenter__(self) -> SyncClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _emit(self, event: StateEvent) -> None:
        self.state = event.state
        self._last_event = event
        if event.state is ConnectionState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("state listener %r failed", listener)

    # ----- the loop -----

    async def _run(self) -> None:
        attempt = 0
        protocol_errors = 0
        auth_refreshed = False
        reason: str | None = None
        error: BaseException | None = None
        while not self._closing.is_set():
            self._emit(StateEvent(ConnectionState.CONNECTING, attempt, reason=reason, error=error))
            try:
                conn = await self._open(force_refresh=auth_refreshed)
            except AuthenticationError as exc:
                if self._provider is None:
                    self._emit(StateEvent(ConnectionState.CLOSED, attempt, reason=f"token refused: {exc}", error=exc))
                    return
                reason, error = f"token refused: {exc}", exc
                if not auth_refreshed:
                    auth_refreshed = True
                    continue
            except ProtocolError as exc:
                protocol_errors += 1
                reason, error = f"protocol error: {exc}", exc
                if protocol_errors > self.policy.max_protocol_errors:
                    self._emit(StateEvent(ConnectionState.CLOSED, attempt, reason=reason, error=exc))
                    return
            except (ConnectError, SchemaError, ClientError) as exc:
                reason, error = str(exc), exc
            else:
                auth_refreshed = False
                started = time.monotonic()
                info = await self._serve(conn)
                if self._closing.is_set():
                    break
                if info.code == MODULE_UPDATED_CLOSE_CODE and self._schema_fetched:
                    self.schema = None  # a publish changed the tables: rows of the new shape need the new schema
                reason, error = info.message, info.error
                if self._reconnect_now:
                    # The session was retired for a token refresh: reconnect at once with the new token.
                    self._reconnect_now = False
                    attempt = protocol_errors = 0
                    continue
                stable = time.monotonic() - started >= self.policy.stable_after
                if info.reason is CloseReason.PROTOCOL_ERROR:
                    protocol_errors += 1
                    if protocol_errors > self.policy.max_protocol_errors:
                        self._emit(StateEvent(ConnectionState.CLOSED, attempt, reason=reason, error=error))
                        return
                elif stable:
                    attempt = 0
                    protocol_errors = 0
            if self._closing.is_set():
                break
            delay = self.policy.delay(attempt, self._rng)
            self._emit(
                StateEvent(ConnectionState.BACKING_OFF, attempt, time.time() + delay, delay, reason=reason, error=error)
            )
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        self._emit(StateEvent(ConnectionState.CLOSED, attempt, reason="closed by the client"))

    def _refresh_time(self, expires: float | None, refresh_at: float | None) -> float | None:
        """When to replace a token: the grant's own refresh time, else `token_refresh_margin` before expiry.

        A time already past (a token shorter than the margin, a provider handing back an old grant) becomes half of
        the remaining lifetime, and at least `REFRESH_RETRY_SECONDS` from now, so refreshing never spins.
        """
        if refresh_at is not None:
            wanted = refresh_at
        elif expires is not None:
            wanted = expires - self.policy.token_refresh_margin
        else:
            return None
        now = time.time()
        if wanted > now:
            return wanted
        remaining = 0.0 if expires is None else expires - now
        return now + max(remaining / 2, REFRESH_RETRY_SECONDS)

    async def _fetch_token(self) -> None:
        """Ask the provider for a new token (`ConnectError` when it fails)."""
        assert self._provider is not None
        try:
            grant = await self._provider()
        except Exception as exc:
            raise ConnectError(f"token provider failed: {exc}") from exc
        if isinstance(grant, str):
            grant = TokenGrant(grant)
        self._token = grant.token
        self._token_expires = grant.expires_at if grant.expires_at is not None else token_expiry(grant.token)
        self._token_refresh_at = self._refresh_time(self._token_expires, grant.refresh_at)

    async def _fresh_token(self, force: bool) -> str | None:
        if self._provider is None:
            return self._token
        due = self._token_refresh_at is not None and self._token_refresh_at <= time.time()
        if force or self._token is None or due:
            await self._fetch_token()
        return self._token

    async def _open(self, force_refresh: bool) -> Connection:
        assert self._session is not None
        token = await self._fresh_token(force_refresh)
        if self.schema is None:
            self.schema = await fetch_schema(self._session, self.base_url, self.database, token, self._row_types)
        conn = await connect(
            self.base_url,
            self.database,
            token=token,
            schema=self.schema,
            cache=self.cache,
            options=self.options,
            session=self._session,
        )
        if token is None:
            self._token = conn.token  # stay the same anonymous identity across reconnects
            self._token_expires = token_expiry(conn.token)
        return conn

    async def _serve(self, conn: Connection) -> CloseInfo:
        """Resubscribe, report CONNECTED, finish the resync in the background, and wait for the session to end."""
        self._connection = conn
        resync: asyncio.Task[None] | None = None
        try:
            live = [qs for qs in self._query_sets.values() if qs.state is not QuerySetState.ERROR]
            if self.reconnects and live:
                self.cache.begin_resync()
            for qs in live:
                queries = await self._rewritten(qs)
                with contextlib.suppress(ConnectionLostError):
                    await conn.subscribe(queries, query_set=qs)
            self._emit(StateEvent(ConnectionState.CONNECTED, 0))
            if self.cache.resyncing:
                resync = asyncio.create_task(self._finish_resync(live))
            return await self._until_closed_or_refreshed(conn)
        finally:
            if resync is not None:
                resync.cancel()
            self._connection = None
            self._retiring = False
            self.reconnects += 1

    async def _until_closed_or_refreshed(self, conn: Connection) -> CloseInfo:
        """Wait for the session to end; at the token's refresh time, get a new token and retire the session."""
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            while True:
                refresh_at = self._token_refresh_at if self._provider is not None else None
                timeout = None if refresh_at is None else max(refresh_at - time.time(), 0.0)
                done, _ = await asyncio.wait({closed}, timeout=timeout)
                if done:
                    return closed.result()
                old_token, old_expiry = self._token, self._token_expires
                try:
                    await self._fetch_token()
                except ConnectError as exc:
                    log.warning("token refresh failed (retrying in %.0f s): %s", REFRESH_RETRY_SECONDS, exc)
                    self._token_refresh_at = time.time() + REFRESH_RETRY_SECONDS
                    continue
                if self._token == old_token:
                    # The provider had nothing newer: keep the session, ask again later.
                    continue
                return await self._retire(conn, old_expiry)
        finally:
            closed.cancel()

    async def _retire(self, conn: Connection, old_expiry: float | None) -> CloseInfo:
        """Stop handing out `conn`, let its requests in flight be answered (while its token lasts), then close it."""
        self._retiring = True
        self._reconnect_now = True
        self._emit(StateEvent(ConnectionState.CONNECTING, 0, reason="token refresh"))
        in_flight = conn.in_flight()
        if in_flight:
            grace = self.policy.base if old_expiry is None else old_expiry - time.time()
            await asyncio.wait(in_flight, timeout=max(grace, 0.0))
        await conn.close()
        return CloseInfo(CloseReason.CLIENT_CLOSED, "token refresh")

    async def _rewritten(self, qs: QuerySet) -> Sequence[str]:
        if self._rewrite is None or not self.reconnects:
            return qs.queries
        try:
            result = self._rewrite(ResubscribeRequest(qs.id, qs.queries, self.reconnects))
            if inspect.isawaitable(result):
                result = await result
            return tuple(result)
        except Exception:
            log.exception("query rewrite hook failed for query set %d; resubscribing unchanged", qs.id)
            return qs.queries

    async def _finish_resync(self, query_sets: list[QuerySet]) -> None:
        for qs in query_sets:
            with contextlib.suppress(ClientError):
                await qs.applied()
        self.cache.end_resync()

    # ----- requests -----

    async def subscribe(self, queries: Sequence[str]) -> QuerySet:
        """Subscribe a query set that is kept across reconnects; `await qs.applied()` for its rows."""
        self._next_query_set += 1
        qs = QuerySet(self._next_query_set, tuple(queries), self, managed=True)
        self._query_sets[qs.id] = qs
        conn = self.connection
        if conn is not None:
            with contextlib.suppress(ConnectionLostError):
                await conn.subscribe(qs.queries, query_set=qs)
        return qs

    async def unsubscribe(self, query_set: QuerySet) -> None:
        """End a query set for good; its rows leave the cache."""
        self._query_sets.pop(query_set.id, None)
        conn = self.connection
        if conn is not None and query_set in conn.query_sets():
            with contextlib.suppress(ConnectionLostError):
                await conn.unsubscribe(query_set)
                return
        self.cache.release_query_set(query_set.id, ChangeCause.UNSUBSCRIBED)
        if query_set.state not in (QuerySetState.ENDED, QuerySetState.ERROR):
            query_set.mark_ended("unsubscribed")

    def query_sets(self) -> list[QuerySet]:
        """Every query set the client keeps."""
        return list(self._query_sets.values())

    def _live(self) -> Connection:
        conn = self.connection
        if conn is None:
            raise NotConnectedError(f"not connected (state {self.state.value})")
        return conn

    async def call(self, reducer: str, *args: Any) -> ReducerCallResult:
        """Call a reducer on the live connection; `NotConnectedError` when there is none (calls are never queued,
        since a reducer may not be idempotent) and `ConnectionLostError` when it drops before the answer."""
        return await self._live().call(reducer, *args)

    async def one_off_query(self, sql: str) -> QueryResult:
        """Run one SQL query on the live connection."""
        return await self._live().one_off_query(sql)
