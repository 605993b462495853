// The official SpacetimeDB TypeScript SDK calling the procedures of tests/tsbuild/procedures_module on our host.
//
//   node procedures_client.mjs BASE_URL DATABASE   (run next to ./module_bindings and ./node_modules)
//
// Connects through bindings generated from the host's schema route, subscribes to `counter`, calls each procedure
// through `conn.procedures`, and prints one JSON line of what it saw; exits 1 on any unexpected failure.
import { DbConnection } from "./module_bindings/index.mjs";

const [url, database] = process.argv.slice(2);
const seen = [];

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out", seen }));
  process.exit(1);
}, 60_000);

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

async function failure(promise) {
  try {
    return `returned ${await promise}`;
  } catch (error) {
    // The SDK rejects a failed procedure with the host's text itself (a string), not an Error.
    return typeof error === "string" ? `rejected: ${error}` : `other: ${error}`;
  }
}

try {
  const conn = await connect();
  conn.db.counter.onInsert((_ctx, row) => seen.push(`insert ${row.name}=${row.value}`));
  conn.db.counter.onUpdate((_ctx, _old, row) => seen.push(`update ${row.name}=${row.value}`));
  await new Promise((resolve, reject) => {
    conn.subscriptionBuilder().onApplied(resolve).onError((_ctx, error) => reject(error)).subscribe([
      "SELECT * FROM counter",
    ]);
  });
  const results = {
    add: await conn.procedures.add({ a: 2, b: 3 }),
    whoamiIsCaller: (await conn.procedures.whoami({})) === conn.identity.toHexString(),
    bump: String(await conn.procedures.bump({ name: "s", by: 3n })),
    seenAfterBump: [...seen],
    bumpTwice: String(await conn.procedures.bumpTwice({ name: "s" })),
    throws: await failure(conn.procedures.writeThenThrow({ name: "z" })),
    fetch: await failure(conn.procedures.fetchUrl({ url: "http://127.0.0.1:9/" })),
    after: await conn.procedures.add({ a: 40, b: 2 }),
  };
  const rows = [...conn.db.counter.iter()].map((row) => `${row.name}=${row.value}`);
  console.log(JSON.stringify({ results, seen, rows }));
  clearTimeout(timer);
  conn.disconnect();
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error), seen }));
  process.exit(1);
}
