// The official SpacetimeDB TypeScript SDK subscribing to the views of tests/tsbuild/views_module on our host.
//
//   node views_client.mjs BASE_URL DATABASE   (run next to ./module_bindings and ./node_modules)
//
// Two connections (two identities) subscribe to `my_notes` (a view of its caller) and `open_tasks` (anonymous),
// call reducers that change what the views read, and print one JSON line of what each saw; exits 1 on failure.
import { DbConnection } from "./module_bindings/index.mjs";

const [url, database] = process.argv.slice(2);
const seen = { alice: [], bob: [] };

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out", seen }));
  process.exit(1);
}, 60_000);

function connect(who) {
  return new Promise((resolve, reject) => {
    DbConnection.builder()
      .withUri(url)
      .withDatabaseName(database)
      .onConnect((conn) => resolve(conn))
      .onConnectError((_ctx, error) => reject(error))
      .build();
  }).then(async (conn) => {
    conn.db.myNotes.onInsert((_ctx, row) => seen[who].push(`note+ ${row.text}`));
    conn.db.myNotes.onDelete((_ctx, row) => seen[who].push(`note- ${row.text}`));
    conn.db.openTasks.onInsert((_ctx, row) => seen[who].push(`open+ ${row.title}`));
    conn.db.openTasks.onDelete((_ctx, row) => seen[who].push(`open- ${row.title}`));
    await new Promise((resolve, reject) => {
      conn.subscriptionBuilder().onApplied(resolve).onError((_ctx, error) => reject(error)).subscribe([
        "SELECT * FROM my_notes",
        "SELECT * FROM open_tasks",
      ]);
    });
    return conn;
  });
}

async function until(what, test) {
  for (let i = 0; i < 500; i++) {
    if (test()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

try {
  const alice = await connect("alice");
  const bob = await connect("bob");
  await alice.reducers.addNote({ text: "alice's note" });
  await bob.reducers.addNote({ text: "bob's note" });
  await alice.reducers.addTask({ title: "write views" });
  await until("the open task at both", () => seen.alice.includes("open+ write views") && seen.bob.includes("open+ write views"));
  await bob.reducers.finishTask({ title: "write views" });
  await until("the task to leave both", () => seen.alice.includes("open- write views") && seen.bob.includes("open- write views"));
  const rows = {
    alice: [...alice.db.myNotes.iter()].map((row) => row.text),
    bob: [...bob.db.myNotes.iter()].map((row) => row.text),
    open: [...alice.db.openTasks.iter()].map((row) => row.title),
  };
  console.log(JSON.stringify({ seen, rows }));
  clearTimeout(timer);
  alice.disconnect();
  bob.disconnect();
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error), seen }));
  process.exit(1);
}
