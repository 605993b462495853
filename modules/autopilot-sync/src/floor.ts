// Raising a stream's retained floor, the one way events leave a stream short of a reset: `trim_stream` and
// `apply_retention` both move it here (src/autopilot_sync/module/floor.py), so both leave the trace a client
// recognises as a stale cursor: `retained_from_seq` raised, `floor_chain` the chain value just below it.
import type { Ctx } from './context';
import { uniqueView } from './unique';

type HeadRow = NonNullable<ReturnType<Ctx['db']['stream_head']['stream_id']['find']>>;
export type EventRow = ReturnType<Ctx['db']['sync_event']['iter']> extends IteratorObject<infer R, any> ? R : never;

/** Delete the stream's events below `retainFromSeq` and move its floor there (the caller checked the bounds). */
export function raiseFloor(ctx: Ctx, head: HeadRow, retainFromSeq: bigint): void {
  let floorChain = head.floor_chain;
  const events = uniqueView<EventRow>(ctx.db.sync_event.stream_id_seq);
  for (let seq = head.retained_from_seq; seq < retainFromSeq; seq++) {
    const row = events.find([head.stream_id, seq]);
    if (row === null) continue;
    ctx.db.sync_event.delete(row);
    floorChain = row.chain; // ascending: ends as the chain value just below the new floor
  }
  ctx.db.stream_head.stream_id.update({
    ...head,
    retained_from_seq: retainFromSeq,
    updated_at: ctx.timestamp,
    floor_chain: floorChain,
  });
}
