// Appending events: hash-checked, idempotent by key, gap-free per stream, the whole call atomic
// (src/autopilot_sync/module/reducers.py `append_sync_events`, `_append_one`, `_Heads`).
import type { Timestamp } from 'spacetimedb';
import { t } from 'spacetimedb/server';
import { claimsOf, requireScope, requireStream, requireTrustedIssuer, Scope } from './auth';
import { CanonicalJsonError, canonicalizeText, payloadHashOfBytes } from './canonical';
import { genesis, link } from './chain';
import { currentConfig } from './config';
import type { Ctx } from './context';
import { Code, refuse } from './errors';
import { checkEventFields, checkPayloadDepth, type SyncLimits } from './limits';
import spacetimedb, { AppendSyncEventsBatchItem } from './schema';
import { utf8 } from './sha256';

export const FIRST_EPOCH = 1n;

interface EventInput {
  stream_id: string;
  idempotency_key: string;
  kind: string;
  payload: string;
  payload_hash: string;
  expected_seq: bigint;
  published_at: Timestamp;
}

type HeadRow = NonNullable<ReturnType<Ctx['db']['stream_head']['stream_id']['find']>>;

/** Stream heads a call reads and moves, written back once per stream at the end of the call. */
class Heads {
  private readonly rows = new Map<string, HeadRow | null>();
  private readonly moved = new Map<string, [bigint, string]>();

  constructor(private readonly ctx: Ctx) {}

  private row(streamId: string): HeadRow | null {
    if (!this.rows.has(streamId)) this.rows.set(streamId, this.ctx.db.stream_head.stream_id.find(streamId));
    return this.rows.get(streamId)!;
  }

  headSeq(streamId: string): bigint {
    const moved = this.moved.get(streamId);
    if (moved !== undefined) return moved[0];
    return this.row(streamId)?.head_seq ?? 0n;
  }

  epoch(streamId: string): bigint {
    return this.row(streamId)?.epoch ?? FIRST_EPOCH;
  }

  headChain(streamId: string): string {
    const moved = this.moved.get(streamId);
    if (moved !== undefined) return moved[1];
    const row = this.row(streamId);
    return row !== null ? row.head_chain : genesis(streamId, FIRST_EPOCH);
  }

  advance(streamId: string, seq: bigint, chain: string): void {
    this.moved.set(streamId, [seq, chain]);
  }

  write(): void {
    const now = this.ctx.timestamp;
    for (const [streamId, [seq, chain]] of this.moved) {
      const row = this.rows.get(streamId) ?? null;
      if (row === null) {
        this.ctx.db.stream_head.insert({
          stream_id: streamId,
          head_seq: seq,
          retained_from_seq: 1n,
          epoch: FIRST_EPOCH,
          updated_at: now,
          head_chain: chain,
          floor_chain: genesis(streamId, FIRST_EPOCH),
        });
      } else {
        this.ctx.db.stream_head.stream_id.update({ ...row, head_seq: seq, updated_at: now, head_chain: chain });
      }
    }
  }
}

function appendOne(
  ctx: Ctx,
  claims: Record<string, unknown>,
  limits: SyncLimits,
  heads: Heads,
  event: EventInput,
): void {
  const { stream_id: streamId, idempotency_key: key, kind } = event;
  checkEventFields(limits, streamId, key, kind);
  requireStream(claims, streamId);
  let canonical: string;
  try {
    canonical = canonicalizeText(event.payload);
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw refuse(Code.INVALID_EVENT, e.message);
    throw e;
  }
  const canonicalUtf8 = utf8(canonical);
  const size = canonicalUtf8.length;
  if (BigInt(size) > limits.max_payload_bytes) {
    throw refuse(Code.PAYLOAD_TOO_LARGE, `payload is ${size} bytes, limit ${limits.max_payload_bytes}`);
  }
  checkPayloadDepth(canonical, limits.max_payload_depth);
  const computed = payloadHashOfBytes(canonicalUtf8);
  if (computed !== event.payload_hash) {
    throw refuse(
      Code.PAYLOAD_HASH_MISMATCH,
      `payload_hash ${event.payload_hash} but the canonical payload hashes to ${computed}`,
    );
  }
  for (const existing of ctx.db.sync_event.stream_id_idempotency_key.filter([streamId, key])) {
    if (existing.payload_hash === computed) return; // a retry of a committed event: the duplicate is the success
    throw refuse(
      Code.IDEMPOTENCY_CONFLICT,
      `key ${key} was committed on this stream as seq ${existing.seq} with ${existing.payload_hash}`,
    );
  }
  const expected = event.expected_seq;
  const headSeq = heads.headSeq(streamId);
  if (expected !== headSeq + 1n) {
    throw refuse(Code.SEQUENCE_CONFLICT, `stream ${streamId} expected_seq=${expected} head_seq=${headSeq}`);
  }
  const epoch = heads.epoch(streamId);
  const chain = link(heads.headChain(streamId), streamId, epoch, expected, kind, key, computed);
  ctx.db.sync_event.insert({
    stream_id: streamId,
    seq: expected,
    idempotency_key: key,
    kind,
    payload: canonical,
    payload_hash: computed,
    published_at: event.published_at,
    committed_at: ctx.timestamp,
    epoch,
    chain,
  });
  heads.advance(streamId, expected, chain);
}

/** Append events atomically: hash-checked, idempotent by key, gap-free per stream. */
export const append_sync_events = spacetimedb.reducer({ batch: t.array(AppendSyncEventsBatchItem) }, (ctx, { batch }) => {
  const claims = claimsOf(ctx);
  const config = currentConfig(ctx);
  requireTrustedIssuer(claims, config.trustedIssuer);
  requireScope(claims, Scope.APPEND, 'append_sync_events');
  const limits = config.limits;
  if (batch.length > limits.max_batch_events) {
    throw refuse(Code.BATCH_TOO_LARGE, `${batch.length} events in one call, limit ${limits.max_batch_events}`);
  }
  const heads = new Heads(ctx);
  for (const event of batch) appendOne(ctx, claims, limits, heads, event);
  heads.write();
});

/** The single-event form of `append_sync_events`. */
export const append_sync_event = spacetimedb.reducer(
  {
    stream_id: t.string(),
    idempotency_key: t.string(),
    kind: t.string(),
    payload: t.string(),
    payload_hash: t.string(),
    expected_seq: t.u64(),
    published_at: t.timestamp(),
  },
  (ctx, event) => {
    const claims = claimsOf(ctx);
    const config = currentConfig(ctx);
    requireTrustedIssuer(claims, config.trustedIssuer);
    requireScope(claims, Scope.APPEND, 'append_sync_event');
    const heads = new Heads(ctx);
    appendOne(ctx, claims, config.limits, heads, event);
    heads.write();
  },
);
