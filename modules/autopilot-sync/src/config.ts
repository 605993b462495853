// The module's limits and trusted issuer live in its own `sync_config` row, set by the database owner
// (src/autopilot_sync/module/config.py, docs/adr/0004-module-limits-in-a-config-table.md): `init` runs as the
// publisher, records it as owner with the default limits; only the owner may change them.
import { t } from 'spacetimedb/server';
import type { Ctx } from './context';
import { Code, refuse } from './errors';
import { DEFAULT_LIMITS, type SyncLimits, utf8Length } from './limits';
import spacetimedb from './schema';

/** The primary key of the one `sync_config` row. */
export const CONFIG_ROW = 0;
/** Longest trusted issuer `set_trusted_issuer` accepts, in UTF-8 bytes. */
export const MAX_ISSUER_BYTES = 512;

export interface SyncConfig {
  limits: SyncLimits;
  trustedIssuer: string;
}

/** The limits and trusted issuer in force for this transaction (the defaults before the row exists). */
export function currentConfig(ctx: Ctx): SyncConfig {
  const row = ctx.db.sync_config.id.find(CONFIG_ROW);
  if (row === null) return { limits: DEFAULT_LIMITS, trustedIssuer: '' };
  return {
    limits: {
      max_payload_bytes: row.max_payload_bytes,
      max_batch_events: row.max_batch_events,
      max_stream_id_bytes: row.max_stream_id_bytes,
      max_idempotency_key_bytes: row.max_idempotency_key_bytes,
      max_kind_bytes: row.max_kind_bytes,
      max_payload_depth: row.max_payload_depth,
    },
    trustedIssuer: row.trusted_issuer,
  };
}

/** A fresh database: the publisher (the owner) becomes the administrator of the default limits. */
export const init = spacetimedb.init((ctx) => {
  if (ctx.db.sync_config.id.find(CONFIG_ROW) === null) {
    ctx.db.sync_config.insert({
      id: CONFIG_ROW,
      owner: ctx.sender,
      ...DEFAULT_LIMITS,
      updated_at: ctx.timestamp,
      retain_max_events: 0n,
      retain_max_age_micros: 0n,
      trusted_issuer: '',
    });
  }
});

/** The config row, when the caller is the database owner it records; anyone else is refused, typed. */
export function requireOwner(ctx: Ctx, action: string) {
  const row = ctx.db.sync_config.id.find(CONFIG_ROW);
  if (row === null || !row.owner.isEqual(ctx.sender)) {
    throw refuse(Code.UNAUTHORIZED, `${action} is for the database owner only`);
  }
  return row;
}

/** Replace every limit at once (owner only); the next reducer call is judged by the new numbers. */
export const set_sync_limits = spacetimedb.reducer(
  {
    max_payload_bytes: t.u64(),
    max_batch_events: t.u32(),
    max_stream_id_bytes: t.u32(),
    max_idempotency_key_bytes: t.u32(),
    max_kind_bytes: t.u32(),
    max_payload_depth: t.u32(),
  },
  (ctx, limits) => {
    const row = requireOwner(ctx, 'set_sync_limits');
    const zero = Object.entries(limits)
      .filter(([, value]) => BigInt(value) < 1n)
      .map(([name]) => name);
    if (zero.length > 0) throw refuse(Code.INVALID_LIMITS, `${zero.join(', ')} must be at least 1`);
    ctx.db.sync_config.id.update({ ...row, ...limits, owner: ctx.sender, updated_at: ctx.timestamp });
  },
);

/** Name the one token issuer (the control service) whose tokens' claims count; '' trusts none again (owner only). */
export const set_trusted_issuer = spacetimedb.reducer({ issuer: t.string() }, (ctx, { issuer }) => {
  const row = requireOwner(ctx, 'set_trusted_issuer');
  const size = utf8Length(issuer);
  if (size > MAX_ISSUER_BYTES) {
    throw refuse(Code.INVALID_LIMITS, `trusted issuer is ${size} bytes, limit ${MAX_ISSUER_BYTES}`);
  }
  ctx.db.sync_config.id.update({ ...row, trusted_issuer: issuer, updated_at: ctx.timestamp });
});
