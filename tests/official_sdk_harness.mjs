// The plumbing every official-SDK test script shares (`tests/official_sdk_app.py` copies it next to the script as
// ./official_sdk_harness.mjs, with ./node_modules linked to conformance/node_modules and ./module_bindings generated).
//
// A script imports its generated `DbConnection`, then: `run(seen, async () => observations)` prints one JSON line
// `{...observations, seen}` and exits 0, or the failure (or a 60 s timeout) with `seen` and exits 1.
import { InternalError, SenderError } from "spacetimedb";

/** Connect through the generated bindings (with `token` when given); resolves `[conn, identity]`. */
export function connect(DbConnection, url, database, token) {
  return new Promise((resolve, reject) => {
    let builder = DbConnection.builder().withUri(url).withDatabaseName(database);
    if (token) builder = builder.withToken(token);
    builder
      .onConnect((conn, identity) => resolve([conn, identity]))
      .onConnectError((_ctx, error) => reject(error))
      .build();
  });
}

/** Subscribe to `queries`; resolves when the subscription is applied. */
export function subscribe(conn, queries) {
  return new Promise((resolve, reject) => {
    conn.subscriptionBuilder().onApplied(resolve).onError((_ctx, error) => reject(error)).subscribe(queries);
  });
}

/** A reducer call's outcome as text: `ok`, `SenderError: <message>`, `InternalError`, or `other: <error>`. */
export async function outcome(promise) {
  try {
    await promise;
    return "ok";
  } catch (error) {
    if (error instanceof SenderError) return `SenderError: ${error.message}`;
    if (error instanceof InternalError) return "InternalError";
    return `other: ${error}`;
  }
}

/** Run `body`, print its observations (and `seen`) as one JSON line, and exit: 0 when it finished, else 1. */
export async function run(seen, body) {
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ error: "timed out", seen }));
    process.exit(1);
  }, 60_000);
  try {
    const observed = await body();
    console.log(JSON.stringify({ ...observed, seen }));
    clearTimeout(timer);
    process.exit(0);
  } catch (error) {
    console.log(JSON.stringify({ error: String(error), seen }));
    process.exit(1);
  }
}
