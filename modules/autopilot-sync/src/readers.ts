// Who may read what: stream readers, admitted members and the row-level security rules, the same SQL as the
// Python module (src/autopilot_sync/module/visibility.py), so subscriptions, one-off queries and `/sql` see the
// same rows on our host and on a real SpacetimeDB.
import { t } from 'spacetimedb/server';
import { claimsOf, requireStream, requireTrustedIssuer, Scope, scopesOf } from './auth';
import { currentConfig } from './config';
import { Code, refuse } from './errors';
import { codePoints } from './limits';
import spacetimedb from './schema';
import { uniqueView } from './unique';

/** Most readers one `grant_stream_readers` call may name. */
export const MAX_READERS_PER_GRANT = 256;
/** Longest stream id a grant may name (the control service's own stream-id limit). */
export const MAX_STREAM_ID_CHARS = 128;

export const sync_event_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT sync_event.* FROM sync_event JOIN stream_reader ON sync_event.stream_id = stream_reader.stream_id ' +
    'WHERE stream_reader.reader_identity = :sender',
);
export const stream_head_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT stream_head.* FROM stream_head JOIN stream_reader ON stream_head.stream_id = stream_reader.stream_id ' +
    'WHERE stream_reader.reader_identity = :sender',
);
export const stream_reader_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT * FROM stream_reader WHERE reader_identity = :sender',
);
export const stream_checkpoint_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT * FROM stream_checkpoint WHERE identity = :sender',
);
export const active_connection_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT active_connection.* FROM active_connection JOIN sync_member ' +
    'ON active_connection.realm = sync_member.realm WHERE sync_member.identity = :sender',
);
export const sync_member_visibility = spacetimedb.clientVisibilityFilter.sql(
  'SELECT * FROM sync_member WHERE identity = :sender',
);

function checkGrantStreamId(streamId: string): void {
  const length = codePoints(streamId);
  if (!streamId || length > MAX_STREAM_ID_CHARS) {
    throw refuse(Code.INVALID_EVENT, `stream_id must be 1-${MAX_STREAM_ID_CHARS} characters (got ${length})`);
  }
}

/** Let these identities read a stream (its events and head); idempotent. For producers and administrators of it. */
export const grant_stream_readers = spacetimedb.reducer(
  { stream_id: t.string(), readers: t.array(t.identity()) },
  (ctx, { stream_id, readers }) => {
    const claims = claimsOf(ctx);
    requireTrustedIssuer(claims, currentConfig(ctx).trustedIssuer);
    const scopes = scopesOf(claims);
    if (!scopes.has(Scope.APPEND) && !scopes.has(Scope.ADMIN)) {
      throw refuse(Code.UNAUTHORIZED, 'grant_stream_readers needs scope sync.append or sync.admin');
    }
    checkGrantStreamId(stream_id);
    requireStream(claims, stream_id);
    if (readers.length > MAX_READERS_PER_GRANT) {
      throw refuse(Code.INVALID_EVENT, `${readers.length} readers in one grant, limit ${MAX_READERS_PER_GRANT}`);
    }
    const seen = new Set<string>();
    for (const reader of readers) {
      const hex = reader.toHexString();
      if (seen.has(hex)) continue;
      seen.add(hex);
      if (uniqueView(ctx.db.stream_reader.stream_id_reader_identity).find([stream_id, reader]) === null) {
        ctx.db.stream_reader.insert({ stream_id, reader_identity: reader, granted_at: ctx.timestamp });
      }
    }
  },
);

/** Stop an identity reading a stream; its subscriptions lose the stream's rows in the same transaction. */
export const revoke_stream_reader = spacetimedb.reducer(
  { stream_id: t.string(), reader: t.identity() },
  (ctx, { stream_id, reader }) => {
    const claims = claimsOf(ctx);
    requireTrustedIssuer(claims, currentConfig(ctx).trustedIssuer);
    if (!scopesOf(claims).has(Scope.ADMIN)) {
      throw refuse(Code.UNAUTHORIZED, 'revoke_stream_reader needs scope sync.admin');
    }
    checkGrantStreamId(stream_id);
    requireStream(claims, stream_id);
    uniqueView(ctx.db.stream_reader.stream_id_reader_identity).delete([stream_id, reader]);
  },
);
