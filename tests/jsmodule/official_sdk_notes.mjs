// The official SpacetimeDB TypeScript SDK against a host serving the ABI module (tests/jsmodule/abi_module.mjs.in).
//
//   node official_sdk_notes.mjs BASE_URL DATABASE   (run next to ./module_bindings and ./node_modules)
//
// Connects through the generated bindings, subscribes, and calls reducers: an insert with an auto-increment id, an
// update by primary key, a SenderError, a unique violation, a throw and an infinite loop, then an insert again.
// Prints one JSON line of observations and exits 0, or prints the failure and exits 1.
import { InternalError, SenderError } from "spacetimedb";
import { DbConnection } from "./module_bindings/index.mjs";

const [url, database] = process.argv.slice(2);
const seen = [];

function connect() {
  return new Promise((resolve, reject) => {
    DbConnection.builder()
      .withUri(url)
      .withDatabaseName(database)
      .onConnect((conn) => resolve(conn))
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
    if (error instanceof InternalError) return "InternalError";
    return `other: ${error}`;
  }
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out", seen }));
  process.exit(1);
}, 60_000);

try {
  const conn = await connect();
  conn.db.note.onInsert((_ctx, row) => seen.push(`insert ${row.id} ${row.text}`));
  conn.db.note.onUpdate((_ctx, old, row) => seen.push(`update ${old.text}->${row.text}`));
  await subscribe(conn, ["SELECT * FROM note"]);
  const results = {
    add: await outcome(conn.reducers.addNote({ owner: "ann", rank: 1, text: "a1", tag: "t1" })),
    rename: await outcome(conn.reducers.rename({ id: 1n, text: "A1" })),
    refuse: await outcome(conn.reducers.refuse({})),
    duplicate: await outcome(conn.reducers.addNote({ owner: "bob", rank: 1, text: "dup", tag: "t1" })),
    explode: await outcome(conn.reducers.explode({})),
    spin: await outcome(conn.reducers.spin({})),
    after: await outcome(conn.reducers.addNote({ owner: "bob", rank: 2, text: "b2", tag: "t2" })),
  };
  const rows = [...conn.db.note.iter()].map((row) => `${row.id}:${row.text}`).sort();
  console.log(JSON.stringify({ results, seen, rows }));
  clearTimeout(timer);
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error), seen }));
  process.exit(1);
}
