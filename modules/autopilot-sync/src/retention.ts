// Retention the owner sets (src/autopilot_sync/module/retention.py): per stream, keep at most N events and/or
// nothing older than an age, applied by a scheduled reducer that raises floors exactly as `trim_stream` does. One
// run deletes at most RETENTION_BATCH_EVENTS events; streams are visited in key order, one floor move each per run.
import { ScheduleAt, t } from 'spacetimedb/server';
import { CONFIG_ROW, requireOwner } from './config';
import type { Ctx } from './context';
import { Code, refuse } from './errors';
import { type EventRow, raiseFloor } from './floor';
import spacetimedb, { sync_retention_tick } from './schema';
import { uniqueView } from './unique';

/** Most events one `apply_retention` run deletes (over all streams); the rest waits for the next tick. */
export const RETENTION_BATCH_EVENTS = 10_000n;
/** Shortest interval between retention runs the owner may set (0.1 s). */
export const MIN_RETENTION_EVERY_MICROS = 100_000n;

/** Set per-stream retention (owner only); 0 turns a bound off, both 0 turn retention (and its timer) off. */
export const set_sync_retention = spacetimedb.reducer(
  { max_events: t.u64(), max_age_micros: t.u64(), every_micros: t.u64() },
  (ctx, { max_events, max_age_micros, every_micros }) => {
    const row = requireOwner(ctx, 'set_sync_retention');
    const enabled = max_events > 0n || max_age_micros > 0n;
    if (enabled && every_micros < MIN_RETENTION_EVERY_MICROS) {
      throw refuse(Code.INVALID_LIMITS, `every_micros must be at least ${MIN_RETENTION_EVERY_MICROS} (0.1 s)`);
    }
    ctx.db.sync_config.id.update({
      ...row,
      updated_at: ctx.timestamp,
      retain_max_events: max_events,
      retain_max_age_micros: max_age_micros,
    });
    for (const tick of [...ctx.db.sync_retention_tick.iter()]) ctx.db.sync_retention_tick.delete(tick);
    if (enabled) ctx.db.sync_retention_tick.insert({ scheduled_id: 0n, scheduled_at: ScheduleAt.interval(every_micros) });
  },
);

/** The first seq from `seq` (below `limit`) whose event was committed at or after `cutoff` (µs). */
function pastOldEvents(ctx: Ctx, streamId: string, seq: bigint, limit: bigint, cutoff: bigint): bigint {
  while (seq < limit) {
    const found = uniqueView<EventRow>(ctx.db.sync_event.stream_id_seq).find([streamId, seq]);
    if (found !== null && found.committed_at.microsSinceUnixEpoch >= cutoff) break;
    seq += 1n;
  }
  return seq;
}

const max = (a: bigint, b: bigint) => (a > b ? a : b);
const min = (a: bigint, b: bigint) => (a < b ? a : b);

/** The scheduled run: raise every stream's floor to what the owner's policy keeps, deleting what falls below. */
export const apply_retention = spacetimedb.reducer(
  { onSchedule: sync_retention_tick },
  { tick: sync_retention_tick.rowType },
  (ctx) => {
    const config = ctx.db.sync_config.id.find(CONFIG_ROW);
    if (config === null) return;
    const maxEvents = config.retain_max_events;
    const maxAge = config.retain_max_age_micros;
    if (maxEvents === 0n && maxAge === 0n) return;
    const cutoff = ctx.timestamp.microsSinceUnixEpoch - maxAge;
    let budget = RETENTION_BATCH_EVENTS;
    const heads = [...ctx.db.stream_head.iter()];
    heads.sort((a, b) => (a.stream_id < b.stream_id ? -1 : a.stream_id > b.stream_id ? 1 : 0));
    for (const head of heads) {
      if (budget === 0n) return;
      const floor = head.retained_from_seq;
      let target = floor;
      if (maxEvents > 0n) target = max(target, head.head_seq - maxEvents + 1n);
      target = min(target, floor + budget);
      if (maxAge > 0n) target = pastOldEvents(ctx, head.stream_id, target, min(head.head_seq + 1n, floor + budget), cutoff);
      if (target > floor) {
        raiseFloor(ctx, head, target);
        budget -= target - floor;
      }
    }
  },
);
