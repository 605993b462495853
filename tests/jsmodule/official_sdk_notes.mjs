// The official SpacetimeDB TypeScript SDK against a host serving the ABI module (tests/jsmodule/abi_module.mjs.in).
//
//   node official_sdk_notes.mjs BASE_URL DATABASE   (run by tests/official_sdk_app.py)
//
// Connects through the generated bindings, subscribes, and calls reducers: an insert with an auto-increment id, an
// update by primary key, a SenderError, a unique violation, a throw and an infinite loop, then an insert again.
// Prints one JSON line of observations and exits 0, or prints the failure and exits 1.
import { DbConnection } from "./module_bindings/index.mjs";
import { connect, outcome, run, subscribe } from "./official_sdk_harness.mjs";

const [url, database] = process.argv.slice(2);
const seen = [];

await run(seen, async () => {
  const [conn] = await connect(DbConnection, url, database);
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
  return { results, rows };
});
