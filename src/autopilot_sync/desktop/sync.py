"""The desktop's wiring to the host, through the client SDK only: subscriptions, resume, gaps, rebuilds, acks.

Query sets (each kept across reconnects by the SDK's `SyncClient`):
- presence: `SELECT * FROM active_connection`;
- heads: `SELECT * FROM stream_head` (also how streams are discovered when none are configured);
- one per live stream: `SELECT * FROM sync_event WHERE stream_id = '<id>' AND seq > <checkpoint>`, the resume
  cursor; the SDK's rewrite hook moves `<checkpoint>` to the current one on every reconnect.

At most `max_live_streams` followed streams are live (`livebound`): the rest are idle, showing their head only, and
are followed again from their checkpoint when their head moves or they are selected, dropping the least recently
active live one. One task (`_reconcile`) makes the subscriptions match that choice, drop first, so the desktop never
holds more query sets than the bound plus presence and heads.

Every cache batch (one per server message, i.e. per transaction) is handled whole, heads before events: a head that
makes the local cursor stale rebuilds the stream first (`rebuild`), then the batch's events go through the pure apply
engine (`apply`), and what it applies is written with the new checkpoint in one SQLite transaction (`store`). A gap
left after that resubscribes the stream from its checkpoint, once per checkpoint value, so a hole the host cannot
fill never becomes a loop. Checkpoints are reported with `ack_checkpoint` at a bounded rate (`acks`). The result of
all of it is published as one `DesktopState` value (`state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autopilot_sync import sync_bindings
from autopilot_sync.client.cache import ChangeCause, ChangeKind, RowChange
from autopilot_sync.client.errors import ClientError, SubscriptionFailedError
from autopilot_sync.client.query_set import QuerySet
from autopilot_sync.client.reconnect import BackoffPolicy, ConnectionState, ResubscribeRequest, StateEvent, SyncClient
from autopilot_sync.client.results import ReducerFailed
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.desktop.acks import AckCall, AckScheduler
from autopilot_sync.desktop.apply import ApplyState, Cursor, StreamEvent, deliver, restart_from
from autopilot_sync.desktop.identity import DesktopIdentity
from autopilot_sync.desktop.livebound import live_streams, refusal_notice
from autopilot_sync.desktop.rebuild import (
    RebuildGuard,
    StreamHead,
    Verdict,
    broken_notice,
    first_unlinked,
    judge,
    rebuilt_cursor,
)
from autopilot_sync.desktop.state import (
    LOG_LINES,
    ConnectionPhase,
    ConnectionView,
    LogLine,
    PresenceEntry,
    PresenceView,
    StateHub,
    StreamPhase,
    StreamView,
)
from autopilot_sync.desktop.store import DesktopStore
from autopilot_sync.desktop.tokens import SessionTokens

log = logging.getLogger(__name__)

PRESENCE_QUERY = "SELECT * FROM active_connection"
HEADS_QUERY = "SELECT * FROM stream_head"
ACK_TICK_SECONDS = 0.25
DEFAULT_MAX_LIVE_STREAMS = 48
_RECORDED = re.compile(r"below the recorded (\d+)")


def stream_query(stream_id: str, checkpoint: int) -> str:
    """The resume subscription of one stream: every event after the checkpoint."""
    quoted = stream_id.replace("'", "''")
    return f"SELECT * FROM sync_event WHERE stream_id = '{quoted}' AND seq > {int(checkpoint)}"


def event_from_row(row: sync_bindings.SyncEvent) -> StreamEvent:
    """A `sync_event` row (the generated class the SDK decodes it into) as the apply engine's value.

    A host serving the module from before chains has no `epoch`/`chain` columns: the row class's defaults (the
    columns' declared defaults, 0 and "") stand in, as the host reads its own older rows.
    """
    return StreamEvent(
        stream_id=row.stream_id,
        seq=row.seq,
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        payload=row.payload,
        payload_hash=row.payload_hash,
        published_at_us=row.published_at.micros,
        committed_at_us=row.committed_at.micros,
        epoch=row.epoch,
        chain=row.chain,
    )


def head_from_row(row: sync_bindings.StreamHead) -> StreamHead:
    """A `stream_head` row as the rebuild logic's value (chain values empty, the defaults, from a host without them)."""
    return StreamHead(row.stream_id, row.head_seq, row.retained_from_seq, row.epoch, row.head_chain, row.floor_chain)


#: Changes that say what the host holds (not this client dropping a subscription).
_HOST_SIDE_CAUSES = frozenset({ChangeCause.TRANSACTION, ChangeCause.RESYNC, ChangeCause.REDUCER_RESULT})


def gone_head(last: StreamHead) -> StreamHead:
    """The head of a stream whose `stream_head` row the host deleted: nothing stored, nothing retained."""
    return StreamHead(last.stream_id, 0, 1, last.epoch)


def presence_from_rows(connections: Sequence[sync_bindings.ActiveConnection], own_pubkey_hex: str) -> PresenceView:
    """Presence from `active_connection` rows: connections = rows, users = distinct identities."""
    by_user: dict[str, list[sync_bindings.ActiveConnection]] = {}
    for row in connections:
        by_user.setdefault(row.identity.hex, []).append(row)
    entries = []
    for user_rows in by_user.values():
        first = user_rows[0]
        kinds = tuple(sorted({r.client_kind for r in user_rows if r.client_kind}))
        pubkey = first.nostr_pubkey_hex
        entries.append(
            PresenceEntry(first.npub, pubkey, len(user_rows), bool(pubkey) and pubkey == own_pubkey_hex, kinds)
        )
    entries.sort(key=lambda e: (not e.is_self, e.npub or e.pubkey_hex))
    return PresenceView(len(connections), len(by_user), tuple(entries))


@dataclass
class _Followed:
    """What the desktop knows about one followed stream."""

    stream_id: str
    engine: ApplyState
    query_set: QuerySet | None = None
    #: A subscription is on its way and `query_set` not set yet: its rows may be handled before `subscribe` returns.
    subscribing: bool = False
    head: StreamHead | None = None
    replay_from: int = 0
    rebuilding: bool = False
    resubscribing: bool = False
    gap_retried_at: int | None = None
    gaps: int = 0
    duplicates: int = 0
    rebuilds: int = 0
    divergences: int = 0
    last_rebuild: str = ""
    notice: str = ""
    halted_at: int | None = None
    acks_sent: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cursor(self) -> Cursor:
        return self.engine.cursor


class DesktopSync:
    """Runs the desktop's side of sync until stopped; the UI and headless mode watch `hub`."""

    def __init__(
        self,
        *,
        base_url: str,
        database: str,
        control_url: str,
        identity: DesktopIdentity,
        store: DesktopStore,
        streams: Sequence[str] = (),
        hub: StateHub | None = None,
        policy: BackoffPolicy | None = None,
        ack_interval: float = 1.0,
        max_live_streams: int = DEFAULT_MAX_LIVE_STREAMS,
    ) -> None:
        self.identity = identity
        self.store = store
        self.hub = hub or StateHub()
        self.configured = tuple(streams)
        self.tokens = SessionTokens(control_url, identity.secret)
        self.client = SyncClient(
            base_url,
            database,
            token_provider=self.tokens.grant,
            policy=policy,
            rewrite_queries=self._rewrite,
            row_types=sync_bindings.ROW_TYPES,
        )
        self.acks = AckScheduler(min_interval=ack_interval)
        self._guard = RebuildGuard()
        self._followed: dict[str, _Followed] = {}
        self._by_query_set: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set once the run is closing the client: cancelling it then would interrupt the close and leave the SDK's
        #: aiohttp session open ("Unclosed client session", "Event loop is closed" at exit).
        self._closing_client = False
        self.max_live_streams = max(int(max_live_streams), 1)
        self._activity: dict[str, int] = {}
        self._reconciling: asyncio.Task[None] | None = None
        self._reconcile_again = False
        self._ready = False
        self._log: deque[LogLine] = deque(maxlen=LOG_LINES)
        self._own_hex = identity.public_key.hex
        self.hub.publish(replace(self.hub.state, npub=identity.npub, host_url=self.client.base_url, database=database))

    # ----- running -----

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, and keep everything in sync until `stop` is set; then close cleanly.

        `stop` ends the run in every state — also while the first connection is still being attempted (control or
        host unreachable, backing off) or a subscription is pending — not only once the desktop is live.
        """
        self.client.on_state(self._on_state)
        self.client.cache.on_batch(self._on_batch)
        for stream_id in self.configured:
            self._follow_local(stream_id)
        await self.client.start()
        body = asyncio.get_running_loop().create_task(self._sync_until(stop))
        stopped = asyncio.get_running_loop().create_task(stop.wait())
        try:
            await asyncio.wait({body, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not body.done() and not self._closing_client:
                body.cancel()  # a body already closing the client finishes that first (its close is bounded)
            with contextlib.suppress(asyncio.CancelledError):
                await body

    async def _sync_until(self, stop: asyncio.Event) -> None:
        try:
            await self.client.subscribe([PRESENCE_QUERY])
            heads = await self.client.subscribe([HEADS_QUERY])
            with contextlib.suppress(ClientError):
                await heads.applied()  # heads before events, so a stale cursor is seen before its gap
            self._ready = True
            self._reconcile_soon()
            await self._ack_loop(stop)
        finally:
            self._closing_client = True
            for task in list(self._tasks):
                task.cancel()
            await self.client.close()
            self._publish()

    def select(self, stream_id: str) -> None:
        """Show `stream_id`'s events in the log (called by the UI); an idle stream is followed live again."""
        if stream_id not in self._followed:
            return
        self._log.clear()
        self._log.extend(_log_line(e) for e in self.store.recent(stream_id, LOG_LINES))
        self.hub.publish(replace(self.hub.state, selected_stream=stream_id, log=tuple(self._log)))
        if self._followed[stream_id].query_set is None:
            self._reconcile_soon()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- following streams -----

    def _follow_local(self, stream_id: str) -> _Followed:
        followed = self._followed.get(stream_id)
        if followed is None:
            cursor = self.store.cursor(stream_id)
            followed = _Followed(stream_id, restart_from(cursor), replay_from=cursor.checkpoint)
            self._followed[stream_id] = followed
            if not self.hub.state.selected_stream:
                self.select(stream_id)
        return followed

    def _reconcile_soon(self) -> None:
        """Make the live subscriptions match `live_streams` (once connected; one reconcile task at a time)."""
        self._reconcile_again = True
        if self._ready and (self._reconciling is None or self._reconciling.done()):
            self._reconciling = asyncio.get_running_loop().create_task(self._reconcile())
            self._tasks.add(self._reconciling)
            self._reconciling.add_done_callback(self._tasks.discard)

    async def _reconcile(self) -> None:
        """Drop the live streams no longer chosen, then follow the chosen idle ones, most recently active first.

        Dropping first keeps the query sets held at most the bound; a subscription waits for its initial rows, so a
        stream is caught up to its head of that moment before it can be dropped again.
        """
        while self._reconcile_again:
            self._reconcile_again = False
            selected = self.hub.state.selected_stream
            activity = {s: self._activity.get(s, 0) for s in self._followed}
            want = live_streams(activity, self.max_live_streams, (selected,) if selected else ())
            for followed in list(self._followed.values()):
                if followed.query_set is not None and followed.stream_id not in want:
                    await self._go_idle(followed)
            for stream_id in sorted(want, key=lambda s: (-activity[s], s)):
                if self._reconcile_again:
                    break  # something moved meanwhile: choose again
                followed = self._followed[stream_id]
                if followed.query_set is None and not await self._subscribe_stream(followed):
                    return  # refused by the host: said in the status; tried again on the next change
            self._publish()

    async def _go_idle(self, followed: _Followed) -> None:
        """Drop a stream's query set; it keeps its checkpoint and its head, and resumes from there when followed."""
        async with followed.lock:
            old = followed.query_set
            if old is None:
                return
            followed.query_set = None
            self._by_query_set.pop(old.id, None)
            with contextlib.suppress(ClientError):
                await self.client.unsubscribe(old)
        log.info("stream %s: idle (over the %d live streams)", followed.stream_id, self.max_live_streams)

    async def _subscribe_stream(self, followed: _Followed) -> bool:
        """Follow a stream live from its checkpoint; False (and the reason in the status) when the host refuses."""
        async with followed.lock:
            if followed.query_set is not None:
                return True
            followed.replay_from = followed.cursor.checkpoint
            followed.subscribing = True
            try:
                qs = await self.client.subscribe([stream_query(followed.stream_id, followed.cursor.checkpoint)])
            finally:
                followed.subscribing = False
            followed.query_set = qs
            self._by_query_set[qs.id] = followed.stream_id
            try:
                await qs.applied()
            except SubscriptionFailedError as exc:
                followed.query_set = None
                self._by_query_set.pop(qs.id, None)
                with contextlib.suppress(ClientError):
                    await self.client.unsubscribe(qs)
                notice = refusal_notice(followed.stream_id, exc.message)
                log.warning("%s", notice)
                self.hub.publish(replace(self.hub.state, notice=notice))
                self._publish()
                return False
            except ClientError:
                pass  # connection lost: the SDK resubscribes it on reconnect
        if self.hub.state.notice:
            self.hub.publish(replace(self.hub.state, notice=""))
        return True

    async def _resubscribe(self, followed: _Followed) -> None:
        """Drop the stream's query set and subscribe again from the current checkpoint (gap or rebuild)."""
        async with followed.lock:
            followed.resubscribing = True
            self._publish()
            try:
                old = followed.query_set
                if old is None:
                    return  # went idle meanwhile: followed again from the checkpoint when chosen
                self._by_query_set.pop(old.id, None)
                with contextlib.suppress(ClientError):
                    await self.client.unsubscribe(old)
                qs = await self.client.subscribe([stream_query(followed.stream_id, followed.cursor.checkpoint)])
                followed.query_set = qs
                self._by_query_set[qs.id] = followed.stream_id
                with contextlib.suppress(ClientError):
                    await qs.applied()
            finally:
                followed.resubscribing = False
                self._publish()

    def _rewrite(self, request: ResubscribeRequest) -> Sequence[str]:
        """On reconnect: resume each stream from its current checkpoint, whatever the query said before."""
        stream_id = self._by_query_set.get(request.query_set_id)
        followed = self._followed.get(stream_id) if stream_id is not None else None
        if followed is None:
            return request.queries
        followed.replay_from = followed.cursor.checkpoint
        return [stream_query(stream_id or "", followed.cursor.checkpoint)]

    # ----- cache batches -----

    def _on_batch(self, changes: Sequence[RowChange]) -> None:
        """One server message's changes: presence, then heads (maybe rebuilding), then events."""
        presence_changed = False
        events: dict[str, list[StreamEvent]] = {}
        heads: list[tuple[StreamHead, int]] = []
        for change in changes:
            if change.table == "active_connection":
                presence_changed = True
            elif change.table == "stream_head" and change.kind is not ChangeKind.DELETE:
                heads.append((head_from_row(change.new), int(change.new.updated_at.micros)))
            elif change.table == "stream_head" and change.cause in _HOST_SIDE_CAUSES:
                # The host no longer has the stream at all (its data was deleted: a delete-data publish, a new
                # incarnation): an empty head, so a local copy is judged ahead of it and rebuilt.
                heads.append((gone_head(head_from_row(change.old)), int(change.old.updated_at.micros)))
            elif change.table == "sync_event" and change.kind is ChangeKind.INSERT:
                event = event_from_row(change.new)
                events.setdefault(event.stream_id, []).append(event)
        state = self.hub.state
        if presence_changed:
            state = replace(
                state, presence=presence_from_rows(self.client.cache.rows("active_connection"), self._own_hex)
            )
            self.hub.publish(state)
        for head, changed_at in heads:
            self._on_head(head, changed_at)
        for stream_id, stream_events in events.items():
            followed = self._followed.get(stream_id)
            if followed is not None:
                self._apply(followed, stream_events)
        if heads or events:
            self._publish()

    def _on_head(self, head: StreamHead, changed_at: int) -> None:
        followed = self._followed.get(head.stream_id)
        if followed is None:
            if self.configured:
                return
            followed = self._follow_local(head.stream_id)
        if self._activity.get(head.stream_id) != changed_at:
            self._activity[head.stream_id] = changed_at
            if followed.query_set is None:
                self._reconcile_soon()  # new or moved again: follow it, dropping the least recently active
        followed.head = head
        verdict = judge(followed.cursor, head)
        cause: tuple[object, ...] = ()
        if verdict in (Verdict.CHECKPOINT_AHEAD, Verdict.CHAIN_MISMATCH):
            cause = (verdict.value, head.head_seq, head.head_chain, head.floor_chain)
        if verdict is Verdict.ADOPT_EPOCH:
            cursor = self.store.set_epoch(followed.cursor, head.epoch)
            followed.engine = replace(followed.engine, cursor=cursor)
        elif verdict.needs_rebuild and self._guard.allow(head, cause):
            self._rebuild(followed, head, verdict)

    def _rebuild(self, followed: _Followed, head: StreamHead, verdict: Verdict) -> None:
        """Drop the local copy and restart from the retained floor (bounded by `RebuildGuard`)."""
        cursor = rebuilt_cursor(head)
        log.warning(
            "stream %s: %s (checkpoint %d@%d, head %d, floor %d@%d): rebuilding",
            followed.stream_id,
            verdict.value,
            followed.cursor.checkpoint,
            followed.cursor.epoch,
            head.head_seq,
            head.retained_from_seq,
            head.epoch,
        )
        followed.notice = verdict.notice
        followed.last_rebuild = verdict.value
        followed.halted_at = None
        if verdict.is_divergence:
            followed.divergences += 1
        self.store.reset_stream(cursor)
        followed.engine = restart_from(cursor)
        followed.rebuilding = True
        followed.rebuilds += 1
        followed.replay_from = cursor.checkpoint
        followed.gap_retried_at = None
        self.acks.note(followed.stream_id, cursor.checkpoint)
        if followed.stream_id == self.hub.state.selected_stream:
            self._log.clear()
        if followed.query_set is not None or followed.subscribing:
            # Live, or being subscribed: these may be that subscription's first rows, handled before its `subscribe`
            # returned, so nothing else will ask again. `_resubscribe` waits for the stream's lock, then subscribes
            # from the rebuilt cursor (or does nothing if the host refused the subscription meanwhile).
            self._spawn(self._resubscribe(followed))

    def _apply(self, followed: _Followed, events: Sequence[StreamEvent]) -> None:
        if followed.halted_at is not None:
            return
        before = followed.cursor
        outcome = deliver(followed.engine, events)
        unlinked = first_unlinked(before, outcome.applied)
        if unlinked is not None:  # keep what verifies before the break, then rebuild (or halt) at it
            outcome = deliver(followed.engine, outcome.applied[: outcome.applied.index(unlinked)])
        if outcome.applied:
            self.store.apply(before, outcome.applied, outcome.state.cursor)
            self.acks.note(followed.stream_id, outcome.checkpoint)
            if followed.stream_id == self.hub.state.selected_stream:
                self._log.extend(_log_line(e) for e in outcome.applied)
        followed.engine = outcome.state
        followed.duplicates += outcome.duplicates
        if unlinked is not None:
            self._unlinked(followed, unlinked)
            return
        if outcome.gap is not None and followed.gap_retried_at != outcome.checkpoint:
            followed.gaps += 1
            followed.gap_retried_at = outcome.checkpoint
            log.warning(
                "stream %s: gap (expected %d, saw %d): resubscribing from %d",
                followed.stream_id,
                outcome.gap.expected_seq,
                outcome.gap.next_seen_seq,
                outcome.checkpoint,
            )
            self._spawn(self._resubscribe(followed))

    def _unlinked(self, followed: _Followed, event: StreamEvent) -> None:
        """An event whose chain value does not link to the local copy: a fork, so rebuild; the same break twice (the
        host's own chain is broken) stops the stream before it instead of looping."""
        head = followed.head or StreamHead(followed.stream_id, 0, 1, followed.cursor.epoch)
        log.warning(
            "stream %s: seq %d (chain %s) does not link to the local copy at %d",
            followed.stream_id,
            event.seq,
            event.chain,
            followed.cursor.checkpoint,
        )
        if self._guard.allow(head, ("link", event.seq, event.chain)):
            self._rebuild(followed, head, Verdict.CHAIN_MISMATCH)
        else:
            followed.halted_at = event.seq
            log.error("stream %s: %s", followed.stream_id, broken_notice(event.seq))

    # ----- acks -----

    async def _ack_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for call in self.acks.due(time.monotonic()):
                await self._ack(call)
            self._publish()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_TICK_SECONDS):
                    await stop.wait()

    async def _ack(self, call: AckCall) -> None:
        try:
            result = await sync_bindings.Reducers(self.client).ack_checkpoint(call.stream_id, call.seq)
        except ClientError as exc:
            log.info("ack_checkpoint %s=%d not sent: %s", call.stream_id, call.seq, exc)
            self.acks.failed(call)
            return
        if isinstance(result, ReducerFailed):
            recorded = None
            if result.code is SyncErrorCode.CHECKPOINT_REGRESSION:
                match = _RECORDED.search(result.message)
                recorded = int(match.group(1)) if match else call.seq
            log.info("ack_checkpoint %s=%d refused: %s", call.stream_id, call.seq, result.message)
            self.acks.failed(call, recorded)
        elif not result.ok:
            self.acks.failed(call)
        elif (followed := self._followed.get(call.stream_id)) is not None:
            followed.acks_sent += 1

    # ----- state -----

    def _on_state(self, event: StateEvent) -> None:
        phase = {
            ConnectionState.CONNECTING: ConnectionPhase.CONNECTING,
            ConnectionState.CONNECTED: ConnectionPhase.LIVE,
            ConnectionState.BACKING_OFF: ConnectionPhase.BACKING_OFF,
            ConnectionState.CLOSED: ConnectionPhase.OFFLINE,
        }[event.state]
        conn = self.client.connection
        protocol = conn.protocol if conn is not None else self.hub.state.connection.protocol
        token = self.tokens.current
        view = ConnectionView(
            phase,
            protocol,
            event.attempt,
            event.next_retry_at,
            event.reason or "",
            token.expires_at if token is not None else None,
            self.tokens.fetches,
        )
        state = replace(self.hub.state, connection=view)
        if phase is not ConnectionPhase.LIVE:
            state = replace(state, presence=PresenceView())
        self.hub.publish(state)

    def _publish(self) -> None:
        streams = tuple(self._stream_view(f) for f in sorted(self._followed.values(), key=lambda f: f.stream_id))
        self.hub.publish(replace(self.hub.state, streams=streams, log=tuple(self._log)))

    def _stream_view(self, followed: _Followed) -> StreamView:
        head = followed.head
        applied = followed.cursor.checkpoint
        head_seq = head.head_seq if head is not None else 0
        if followed.rebuilding and applied >= head_seq and followed.engine.pending == ():
            followed.rebuilding = False
        notice = followed.notice if followed.rebuilding else ""
        if followed.halted_at is not None:
            phase = StreamPhase.HALTED
            notice = broken_notice(followed.halted_at)
        elif followed.rebuilding:
            phase = StreamPhase.REBUILDING
        elif followed.resubscribing:
            phase = StreamPhase.RESUBSCRIBING
        elif head is None and followed.query_set is None:
            phase = StreamPhase.WAITING
        elif followed.query_set is None:
            phase = StreamPhase.IDLE
        elif applied < head_seq:
            phase = StreamPhase.REPLAYING
        else:
            phase = StreamPhase.LIVE
        return StreamView(
            stream_id=followed.stream_id,
            head_seq=head_seq,
            applied_seq=applied,
            retained_from_seq=head.retained_from_seq if head is not None else 1,
            epoch=followed.cursor.epoch,
            phase=phase,
            notice=notice,
            replay_from_seq=followed.replay_from,
            rebuilds=followed.rebuilds,
            divergences=followed.divergences,
            last_rebuild=followed.last_rebuild,
            gaps=followed.gaps,
            duplicates=followed.duplicates,
            acked_seq=self.acks.sent(followed.stream_id),
            acks_sent=followed.acks_sent,
        )


def _log_line(event: StreamEvent) -> LogLine:
    return LogLine(
        event.seq,
        event.kind,
        event.payload,
        event.committed_at_us,
        event.idempotency_key,
        event.payload_hash,
        event.chain,
        event.epoch,
    )
