// Checkpoints and retention (src/autopilot_sync/module/reducers.py `ack_checkpoint`, `trim_stream`,
// `reset_stream`).
import { t } from 'spacetimedb/server';
import { claimsOf, requireScope, requireStream, requireTrustedIssuer, Scope } from './auth';
import { genesis } from './chain';
import { currentConfig } from './config';
import type { Ctx } from './context';
import { Code, refuse } from './errors';
import { raiseFloor } from './floor';
import { checkStreamId } from './limits';
import spacetimedb from './schema';
import { uniqueView } from './unique';

/** The caller's claims once its issuer, scope, stream id and stream are allowed, in the Python module's order. */
function authorize(ctx: Ctx, scope: string, action: string, streamId: string): void {
  const claims = claimsOf(ctx);
  const config = currentConfig(ctx);
  requireTrustedIssuer(claims, config.trustedIssuer);
  requireScope(claims, scope, action);
  checkStreamId(config.limits, streamId);
  requireStream(claims, streamId);
}

/** Record the last seq the caller applied on a stream (observability of replay lag). */
export const ack_checkpoint = spacetimedb.reducer({ stream_id: t.string(), seq: t.u64() }, (ctx, { stream_id, seq }) => {
  authorize(ctx, Scope.CHECKPOINT_WRITE, 'ack_checkpoint', stream_id);
  const head = ctx.db.stream_head.stream_id.find(stream_id);
  if (head === null) throw refuse(Code.UNKNOWN_STREAM, `stream ${stream_id} does not exist`);
  if (seq > head.head_seq) {
    throw refuse(Code.CHECKPOINT_BEYOND_HEAD, `stream ${stream_id} seq=${seq} head_seq=${head.head_seq}`);
  }
  const key = `${ctx.sender.toHexString()}:${stream_id}`;
  const found = ctx.db.stream_checkpoint.checkpoint_key.find(key);
  const checkpoint = { checkpoint_key: key, identity: ctx.sender, stream_id, seq, updated_at: ctx.timestamp };
  if (found === null) {
    ctx.db.stream_checkpoint.insert(checkpoint);
    return;
  }
  if (seq < found.seq) {
    throw refuse(Code.CHECKPOINT_REGRESSION, `stream ${stream_id} seq=${seq} is below the recorded ${found.seq}`);
  }
  if (seq > found.seq) ctx.db.stream_checkpoint.checkpoint_key.update(checkpoint);
});

/** Retention: delete events below `retain_from_seq` and raise the floor so stale cursors are detectable. */
export const trim_stream = spacetimedb.reducer(
  { stream_id: t.string(), retain_from_seq: t.u64() },
  (ctx, { stream_id, retain_from_seq }) => {
    authorize(ctx, Scope.ADMIN, 'trim_stream', stream_id);
    const head = ctx.db.stream_head.stream_id.find(stream_id);
    if (head === null) throw refuse(Code.UNKNOWN_STREAM, `stream ${stream_id} has no events`);
    const floor = head.retained_from_seq;
    if (retain_from_seq > head.head_seq + 1n || retain_from_seq < floor) {
      throw refuse(
        Code.INVALID_TRIM,
        `stream ${stream_id} retain_from_seq=${retain_from_seq} must be within ${floor}..${head.head_seq + 1n}`,
      );
    }
    raiseFloor(ctx, head, retain_from_seq);
  },
);

/** Start a stream over: delete its events, reset the head and bump its epoch (clients must rebuild). */
export const reset_stream = spacetimedb.reducer({ stream_id: t.string() }, (ctx, { stream_id }) => {
  authorize(ctx, Scope.ADMIN, 'reset_stream', stream_id);
  const head = ctx.db.stream_head.stream_id.find(stream_id);
  if (head === null) throw refuse(Code.UNKNOWN_STREAM, `stream ${stream_id} has no events`);
  uniqueView(ctx.db.sync_event.stream_id).delete(stream_id); // a point delete removes every event of the stream
  const epoch = head.epoch + 1n;
  const start = genesis(stream_id, epoch);
  ctx.db.stream_head.stream_id.update({
    stream_id,
    head_seq: 0n,
    retained_from_seq: 1n,
    epoch,
    updated_at: ctx.timestamp,
    head_chain: start,
    floor_chain: start,
  });
});
