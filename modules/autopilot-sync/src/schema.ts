// The sync module's tables, column for column as the Python module declares them (src/autopilot_sync/module/
// schema.py, config.py, visibility.py): the same names, column order and types (so every row's BSATN is the same
// and the generated `sync_bindings` read both modules), primary keys, indexes, unique constraints and defaults.
import { schema, table, t } from 'spacetimedb/server';

/** Presence: one row per live connection, written only by the lifecycle reducers. */
export const active_connection = table(
  { name: 'active_connection', public: true },
  {
    connection_id: t.connectionId().primaryKey(),
    identity: t.identity().index('btree'),
    nostr_pubkey_hex: t.string(),
    npub: t.string(),
    client_kind: t.string(),
    connected_at: t.timestamp(),
    last_seen: t.timestamp(),
    // the presence group a row shows to; added after the first release, at the end, with a default
    realm: t.string().index('btree').default('sync'),
  },
);

/** One row per stream: its head, retained floor, epoch and chain values. */
export const stream_head = table(
  { name: 'stream_head', public: true },
  {
    stream_id: t.string().primaryKey(),
    head_seq: t.u64(),
    retained_from_seq: t.u64(),
    epoch: t.u64(),
    updated_at: t.timestamp(),
    head_chain: t.string().default(''),
    floor_chain: t.string().default(''),
  },
);

/** The events: (stream_id, seq) unique; idempotency keys scoped per stream (an index, kept unique by the reducer). */
export const sync_event = table(
  {
    name: 'sync_event',
    public: true,
    indexes: [
      { accessor: 'stream_id_seq', algorithm: 'btree', columns: ['stream_id', 'seq'] },
      { accessor: 'stream_id_idempotency_key', algorithm: 'btree', columns: ['stream_id', 'idempotency_key'] },
      { accessor: 'stream_id', algorithm: 'btree', columns: ['stream_id'] },
    ],
    // The library's types allow one column per unique constraint; RawModuleDef allows a column list, and the
    // Python module's constraint is on the pair.
    constraints: [{ name: 'sync_event_stream_id_seq_key', constraint: 'unique', columns: ['stream_id', 'seq'] as unknown as ['stream_id'] }],
  },
  {
    stream_id: t.string(),
    seq: t.u64(),
    idempotency_key: t.string(),
    kind: t.string(),
    payload: t.string(),
    payload_hash: t.string(),
    published_at: t.timestamp(),
    committed_at: t.timestamp(),
    epoch: t.u64().default(0n),
    chain: t.string().default(''),
  },
);

/** The last seq a client reports applied, per (identity, stream). */
export const stream_checkpoint = table(
  { name: 'stream_checkpoint', public: true },
  {
    checkpoint_key: t.string().primaryKey(),
    identity: t.identity().index('btree'),
    stream_id: t.string().index('btree'),
    seq: t.u64(),
    updated_at: t.timestamp(),
  },
);

/** The module's limits and the token issuer it trusts: one row, changed only by the database owner. */
export const sync_config = table(
  { name: 'sync_config', public: false },
  {
    id: t.u32().primaryKey(),
    owner: t.identity(),
    max_payload_bytes: t.u64(),
    max_batch_events: t.u32(),
    max_stream_id_bytes: t.u32(),
    max_idempotency_key_bytes: t.u32(),
    max_kind_bytes: t.u32(),
    max_payload_depth: t.u32(),
    updated_at: t.timestamp(),
    // retention (retention.ts): most events kept per stream and oldest age kept, 0 = no bound
    retain_max_events: t.u64().default(0n),
    retain_max_age_micros: t.u64().default(0n),
    // the one token issuer whose claims count, '' = none named (auth.ts)
    trusted_issuer: t.string().default(''),
  },
);

/** Who may read a stream (written by its producer). */
export const stream_reader = table(
  {
    name: 'stream_reader',
    public: true,
    indexes: [
      { accessor: 'stream_id_reader_identity', algorithm: 'btree', columns: ['stream_id', 'reader_identity'] },
      { accessor: 'stream_id', algorithm: 'btree', columns: ['stream_id'] },
      { accessor: 'reader_identity', algorithm: 'btree', columns: ['reader_identity'] },
    ],
    constraints: [
      {
        name: 'stream_reader_stream_id_reader_identity_key',
        constraint: 'unique',
        columns: ['stream_id', 'reader_identity'] as unknown as ['stream_id'],
      },
    ],
  },
  {
    stream_id: t.string(),
    reader_identity: t.identity(),
    granted_at: t.timestamp(),
  },
);

/** Identities the module admitted as subscribers: they may see presence. */
export const sync_member = table(
  { name: 'sync_member', public: true },
  {
    identity: t.identity().primaryKey(),
    realm: t.string().index('btree'),
    admitted_at: t.timestamp(),
  },
);

/** The owner's retention timer: one row while retention is on, running `apply_retention` (retention.ts). */
export const sync_retention_tick = table(
  { name: 'sync_retention_tick', public: false },
  {
    scheduled_id: t.u64().primaryKey().autoInc(),
    scheduled_at: t.scheduleAt(),
  },
);

/** One event as producers send it to `append_sync_events` (the Python module's inline product, named). */
export const AppendSyncEventsBatchItem = t.object('AppendSyncEventsBatchItem', {
  stream_id: t.string(),
  idempotency_key: t.string(),
  kind: t.string(),
  payload: t.string(),
  payload_hash: t.string(),
  expected_seq: t.u64(),
  published_at: t.timestamp(),
});

const spacetimedb = schema({
  active_connection,
  stream_head,
  sync_event,
  stream_checkpoint,
  sync_config,
  stream_reader,
  sync_member,
  sync_retention_tick,
});

export default spacetimedb;
