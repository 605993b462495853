// Raising a stream's retained floor, the one way events leave a stream short of a reset: `trim_stream` and
// `apply_retention` both move it here (src/autopilot_sync/module/floor.py), so both leave the trace a client
// recognises as a stale cursor: `retained_from_seq` raised, `floor_chain` the chain value just below it.
import { Range } from 'spacetimedb/server';
import type { Ctx } from './context';

type HeadRow = NonNullable<ReturnType<Ctx['db']['stream_head']['stream_id']['find']>>;

/** Delete the stream's events below `retainFromSeq` and move its floor there (the caller checked the bounds). */
export function raiseFloor(ctx: Ctx, head: HeadRow, retainFromSeq: bigint): void {
  let floorChain = head.floor_chain;
  if (retainFromSeq > head.retained_from_seq) {
    const below = new Range<bigint>(
      { tag: 'included', value: head.retained_from_seq },
      { tag: 'included', value: retainFromSeq - 1n },
    );
    const rows = [...ctx.db.sync_event.stream_id_seq.filter([head.stream_id, below])];
    rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    for (const row of rows) {
      ctx.db.sync_event.delete(row);
      floorChain = row.chain; // ascending: ends as the chain value just below the new floor
    }
  }
  ctx.db.stream_head.stream_id.update({
    ...head,
    retained_from_seq: retainFromSeq,
    updated_at: ctx.timestamp,
    floor_chain: floorChain,
  });
}
