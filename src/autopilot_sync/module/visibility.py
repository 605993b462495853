"""Who may read what in the sync module: stream readers, admitted members, and the row-level security rules.

Reading is decided by the system, never by the request. A stream's readers are rows of `stream_reader`, written by
the producer that creates the stream (`grant_stream_readers`: identities of the Nostr keys the stream belongs to,
derived from control's issuer and each key exactly as the host derives a caller's identity). Every private table is
visible row by row through a `client_visibility_filter` over `:sender` — SpacetimeDB's own row-level security — so
the same rules hold for subscriptions (initial rows and deltas), one-off queries and `/sql`, here and on a real
SpacetimeDB:

- `sync_event`, `stream_head`: rows of streams the caller is a reader of (a join with `stream_reader`);
- `stream_reader`: the caller's own grants; `stream_checkpoint`: the caller's own checkpoints;
- `active_connection` (presence): only to members, identities the module admitted as subscribers (`sync_member`,
  written by `client_connected` for a token with `sync.subscribe`), joined on the presence group (`realm`);
- `sync_member`: the caller's own row.

A caller without a token (an anonymous identity) is in no table, so it sees no private row at all.
"""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.contract.scopes import Scope, scopes_of
from autopilot_sync.module.auth import require_stream, require_trusted_issuer
from autopilot_sync.module.errors import SyncError
from autopilot_sync.module.schema import module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Identity
from autopilot_sync.sync_bindings import StreamReader, SyncMember

#: The one presence group today: every member sees every connection.
PRESENCE_REALM = "sync"
#: Most readers one `grant_stream_readers` call may name.
MAX_READERS_PER_GRANT = 256
#: Longest stream id a grant may name (the control service's own stream-id limit).
MAX_STREAM_ID_CHARS = 128

stream_reader = module.table(
    "stream_reader",
    [
        ("stream_id", at.STRING),
        ("reader_identity", at.IDENTITY),
        ("granted_at", at.TIMESTAMP),
    ],
    unique=[("stream_id", "reader_identity")],
    indexes=[("stream_id",), ("reader_identity",)],
)

sync_member = module.table(
    "sync_member",
    [
        ("identity", at.IDENTITY),
        ("realm", at.STRING),
        ("admitted_at", at.TIMESTAMP),
    ],
    primary_key="identity",
    indexes=[("realm",)],
)

module.client_visibility_filter(
    "sync_event",
    "SELECT sync_event.* FROM sync_event JOIN stream_reader ON sync_event.stream_id = stream_reader.stream_id "
    "WHERE stream_reader.reader_identity = :sender",
)
module.client_visibility_filter(
    "stream_head",
    "SELECT stream_head.* FROM stream_head JOIN stream_reader ON stream_head.stream_id = stream_reader.stream_id "
    "WHERE stream_reader.reader_identity = :sender",
)
module.client_visibility_filter("stream_reader", "SELECT * FROM stream_reader WHERE reader_identity = :sender")
module.client_visibility_filter("stream_checkpoint", "SELECT * FROM stream_checkpoint WHERE identity = :sender")
module.client_visibility_filter(
    "active_connection",
    "SELECT active_connection.* FROM active_connection JOIN sync_member "
    "ON active_connection.realm = sync_member.realm WHERE sync_member.identity = :sender",
)
module.client_visibility_filter("sync_member", "SELECT * FROM sync_member WHERE identity = :sender")


def admit_member(ctx: ReducerContext) -> None:
    """Record the caller as a member (it may see presence) when its token lets it subscribe; kept across connects."""
    if Scope.SUBSCRIBE.value not in scopes_of(ctx.claims):
        return
    if ctx.db.sync_member.find("identity", ctx.sender) is None:
        ctx.db.sync_member.insert(SyncMember(identity=ctx.sender, realm=PRESENCE_REALM, admitted_at=ctx.timestamp))


def _check_stream_id(stream_id: str) -> None:
    if not stream_id or len(stream_id) > MAX_STREAM_ID_CHARS:
        raise SyncError(
            SyncErrorCode.INVALID_EVENT, f"stream_id must be 1-{MAX_STREAM_ID_CHARS} characters (got {len(stream_id)})"
        )


@module.reducer(("stream_id", at.STRING), ("readers", at.array(at.IDENTITY)))
def grant_stream_readers(ctx: ReducerContext, stream_id: str, readers: list[Identity]) -> None:
    """Let these identities read a stream (its events and head); idempotent. For producers and administrators of it."""
    require_trusted_issuer(ctx)
    scopes = scopes_of(ctx.claims)
    if Scope.APPEND.value not in scopes and Scope.ADMIN.value not in scopes:
        raise SyncError(SyncErrorCode.UNAUTHORIZED, "grant_stream_readers needs scope sync.append or sync.admin")
    _check_stream_id(stream_id)
    require_stream(ctx.claims, stream_id)
    if len(readers) > MAX_READERS_PER_GRANT:
        raise SyncError(
            SyncErrorCode.INVALID_EVENT, f"{len(readers)} readers in one grant, limit {MAX_READERS_PER_GRANT}"
        )
    for reader in dict.fromkeys(readers):
        if ctx.db.stream_reader.find(("stream_id", "reader_identity"), (stream_id, reader)) is None:
            granted = StreamReader(stream_id=stream_id, reader_identity=reader, granted_at=ctx.timestamp)
            ctx.db.stream_reader.insert(granted)


@module.reducer(("stream_id", at.STRING), ("reader", at.IDENTITY))
def revoke_stream_reader(ctx: ReducerContext, stream_id: str, reader: Identity) -> None:
    """Stop an identity reading a stream; its subscriptions lose the stream's rows in the same transaction."""
    require_trusted_issuer(ctx)
    if Scope.ADMIN.value not in scopes_of(ctx.claims):
        raise SyncError(SyncErrorCode.UNAUTHORIZED, "revoke_stream_reader needs scope sync.admin")
    _check_stream_id(stream_id)
    require_stream(ctx.claims, stream_id)
    ctx.db.stream_reader.delete_by(("stream_id", "reader_identity"), (stream_id, reader))
