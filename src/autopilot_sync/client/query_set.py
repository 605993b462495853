"""A query set: a group of `SELECT`s subscribed together under one client-chosen id, with awaitable states.

The same handle serves a single connection and the reconnection manager: a *managed* query set outlives its
connection (it goes back to PENDING when the connection drops and is resubscribed on the next one), an unmanaged one
ends with its connection.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from typing import Protocol

from autopilot_sync.client.errors import QuerySetEndedError, SubscriptionFailedError


class QuerySetState(enum.Enum):
    """Where a query set is in its life."""

    PENDING = "pending"
    """Subscribe sent (or waiting for a connection); no rows yet."""
    APPLIED = "applied"
    """The initial rows are in the cache and updates flow."""
    ERROR = "error"
    """The server refused the queries or dropped the set; its rows have left the cache."""
    ENDED = "ended"
    """Unsubscribed, or its (unmanaged) connection closed."""


class QuerySetOwner(Protocol):
    """Whoever can send an Unsubscribe for a query set (a connection or the reconnection manager)."""

    async def unsubscribe(self, query_set: QuerySet) -> None:
        """End the query set's subscription and release its rows."""


class QuerySet:
    """Handle on one query set; `await qs.applied()` waits for its initial rows."""

    def __init__(self, query_set_id: int, queries: Sequence[str], owner: QuerySetOwner, managed: bool = False) -> None:
        self.id = query_set_id
        self.queries: tuple[str, ...] = tuple(queries)
        self.managed = managed
        self.state = QuerySetState.PENDING
        self.error: str | None = None
        self.ended_reason: str | None = None
        #: how many times the server applied this set (2+ means it was resubscribed after a reconnect)
        self.applied_count = 0
        self._owner = owner
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"QuerySet(id={self.id}, state={self.state.value}, queries={list(self.queries)!r})"

    def _set(self, state: QuerySetState) -> None:
        self.state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ----- transitions (driven by the connection / manager) -----

    def mark_pending(self, queries: Sequence[str] | None = None) -> None:
        """(Re)subscribing, possibly with rewritten queries."""
        if queries is not None:
            self.queries = tuple(queries)
        self.error = None
        self._set(QuerySetState.PENDING)

    def mark_applied(self) -> None:
        """The server sent `SubscribeApplied`."""
        self.applied_count += 1
        self._set(QuerySetState.APPLIED)

    def mark_error(self, message: str) -> None:
        """The server sent `SubscriptionError`."""
        self.error = message
        self._set(QuerySetState.ERROR)

    def mark_ended(self, reason: str) -> None:
        """Unsubscribed or closed for good."""
        self.ended_reason = reason
        self._set(QuerySetState.ENDED)

    def connection_lost(self, reason: str) -> None:
        """The connection carrying this set closed: managed sets wait for the next one, others end."""
        if self.state in (QuerySetState.ENDED, QuerySetState.ERROR):
            return
        if self.managed:
            self._set(QuerySetState.PENDING)
        else:
            self.mark_ended(reason)

    # ----- waiting -----

    async def applied(self) -> QuerySet:
        """Wait until the initial rows are in the cache; raises `SubscriptionFailedError` or `QuerySetEndedError`.

        Bound the wait with `asyncio.timeout` when the server may never answer.
        """
        while True:
            if self.state is QuerySetState.APPLIED:
                return self
            if self.state is QuerySetState.ERROR:
                raise SubscriptionFailedError(self.id, self.error or "subscription failed")
            if self.state is QuerySetState.ENDED:
                raise QuerySetEndedError(f"query set {self.id} ended: {self.ended_reason}")
            await self._changed.wait()

    async def ended(self) -> None:
        """Wait until the set has ended or failed."""
        while self.state not in (QuerySetState.ENDED, QuerySetState.ERROR):
            await self._changed.wait()

    async def unsubscribe(self) -> None:
        """End the subscription; its rows leave the cache (with delete callbacks) when the server confirms."""
        await self._owner.unsubscribe(self)
