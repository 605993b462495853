// The official SpacetimeDB TypeScript SDK against a host serving the sync module (Python, or its TypeScript twin).
//
//   node official_sdk_sync.mjs BASE_URL DATABASE TOKEN EVENTS_JSON   (next to ./module_bindings and ./node_modules)
//
// With a control-issued producer token: makes itself a reader of stream `sdk`, subscribes to it, appends a batch,
// retries it (a duplicate: success, no new row), then sends a gap (sequence_conflict) and a wrong hash, each a
// SenderError carrying the module's code. Prints one JSON line of observations and exits 0, or the failure and 1.
import { SenderError, Timestamp } from "spacetimedb";
import { DbConnection } from "./module_bindings/index.mjs";

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

function connect() {
  return new Promise((resolve, reject) => {
    DbConnection.builder()
      .withUri(url)
      .withDatabaseName(database)
      .withToken(token)
      .onConnect((conn, identity) => resolve([conn, identity]))
      .onConnectError((_ctx, error) => reject(error))
      .build();
  });
}

function subscribe(conn, queries) {
  return new Promise((resolve, reject) => {
    conn.subscriptionBuilder().onApplied(resolve).onError((_ctx, error) => reject(error)).subscribe(queries);
  });
}

async function outcome(promise) {
  try {
    await promise;
    return "ok";
  } catch (error) {
    if (error instanceof SenderError) return `SenderError: ${error.message}`;
    return `other: ${error}`;
  }
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out", seen }));
  process.exit(1);
}, 60_000);

try {
  const [conn, identity] = await connect();
  conn.db.syncEvent.onInsert((_ctx, row) => seen.push(`${row.streamId}:${row.seq}:${row.kind}`));
  const results = { grant: await outcome(conn.reducers.grantStreamReaders({ streamId: "sdk", readers: [identity] })) };
  await subscribe(conn, ["SELECT * FROM sync_event WHERE stream_id = 'sdk'"]);
  results.append = await outcome(conn.reducers.appendSyncEvents({ batch: events.slice(0, 3) }));
  results.duplicate = await outcome(conn.reducers.appendSyncEvents({ batch: events.slice(0, 3) }));
  results.gap = await outcome(conn.reducers.appendSyncEvents({ batch: [events[4]] }));
  results.badHash = await outcome(conn.reducers.appendSyncEvents({ batch: [{ ...events[3], payloadHash: "sha256:" + "0".repeat(64) }] }));
  results.next = await outcome(conn.reducers.appendSyncEvents({ batch: [events[3]] }));
  const rows = [...conn.db.syncEvent.iter()].map((row) => Number(row.seq)).sort((a, b) => a - b);
  console.log(JSON.stringify({ results, seen, rows }));
  clearTimeout(timer);
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error), seen }));
  process.exit(1);
}
