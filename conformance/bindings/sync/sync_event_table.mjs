// Module bindings for the sync module (autopilot_sync.module), hand-written in the exact shape
// `spacetime generate --lang typescript` emits, as plain ESM; only the `sync_event` table, which is all the
// durability scenarios read.

/* eslint-disable */
/* tslint:disable */
import { t as __t } from "spacetimedb";

export default __t.row({
  streamId: __t.string().name("stream_id"),
  seq: __t.u64(),
  idempotencyKey: __t.string().name("idempotency_key"),
  kind: __t.string(),
  payload: __t.string(),
  payloadHash: __t.string().name("payload_hash"),
  publishedAt: __t.timestamp().name("published_at"),
  committedAt: __t.timestamp().name("committed_at"),
  epoch: __t.u64(),
  chain: __t.string(),
});
