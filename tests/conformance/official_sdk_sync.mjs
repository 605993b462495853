// The official SpacetimeDB TypeScript SDK against a host serving the sync module (Python, or its TypeScript twin).
//
//   node official_sdk_sync.mjs BASE_URL DATABASE TOKEN EVENTS_JSON   (run by tests/official_sdk_app.py)
//
// With a control-issued producer token: makes itself a reader of stream `sdk`, subscribes to it, appends a batch,
// retries it (a duplicate: success, no new row), then sends a gap (sequence_conflict) and a wrong hash, each a
// SenderError carrying the module's code. Prints one JSON line of observations and exits 0, or the failure and 1.
import { Timestamp } from "spacetimedb";
import { DbConnection } from "./module_bindings/index.mjs";
import { connect, outcome, run, subscribe } from "./official_sdk_harness.mjs";

const [url, database, token, eventsJson] = process.argv.slice(2);
const events = JSON.parse(eventsJson).map((e) => ({
  streamId: e.stream_id,
  idempotencyKey: e.idempotency_key,
  kind: e.kind,
  payload: e.payload,
  payloadHash: e.payload_hash,
  expectedSeq: BigInt(e.expected_seq),
  publishedAt: new Timestamp(1_700_000_000_000_000n),
}));
const seen = [];

await run(seen, async () => {
  const [conn, identity] = await connect(DbConnection, url, database, token);
  conn.db.syncEvent.onInsert((_ctx, row) => seen.push(`${row.streamId}:${row.seq}:${row.kind}`));
  const results = { grant: await outcome(conn.reducers.grantStreamReaders({ streamId: "sdk", readers: [identity] })) };
  await subscribe(conn, ["SELECT * FROM sync_event WHERE stream_id = 'sdk'"]);
  results.append = await outcome(conn.reducers.appendSyncEvents({ batch: events.slice(0, 3) }));
  results.duplicate = await outcome(conn.reducers.appendSyncEvents({ batch: events.slice(0, 3) }));
  results.gap = await outcome(conn.reducers.appendSyncEvents({ batch: [events[4]] }));
  results.badHash = await outcome(conn.reducers.appendSyncEvents({ batch: [{ ...events[3], payloadHash: "sha256:" + "0".repeat(64) }] }));
  results.next = await outcome(conn.reducers.appendSyncEvents({ batch: [events[3]] }));
  const rows = [...conn.db.syncEvent.iter()].map((row) => Number(row.seq)).sort((a, b) => a - b);
  return { results, rows };
});
