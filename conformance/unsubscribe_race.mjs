// The official SpacetimeDB TypeScript SDK as a reader while a writer commits and the reader unsubscribes one of two
// overlapping query sets (driven step by step by tests/conformance/test_official_sdk_durability.py).
//
//   node conformance/unsubscribe_race.mjs BASE_URL DATABASE TOKEN STREAM
//
// Subscribes set A (`stream_id = STREAM`) and set B (`... AND seq >= 1`) on the sync module's `sync_event`, prints
// {"step":"subscribed"}, then obeys one command per stdin line:
//   unsubscribe  -> unsubscribes B (the SDK sends SendDroppedRows), prints {"step":"unsubscribe-sent"}, and later
//                   {"step":"unsubscribed"} when B's onEnd fires;
//   cache N      -> waits (up to 10 s) until the cache holds N rows of STREAM, then prints {"step":"cache","seqs":[...]}
//                   with the seqs it holds (sooner or later, whatever it holds), and exits.
// The SDK is used unchanged.

import { createInterface } from "node:readline";
import { WebSocket as UndiciWebSocket } from "undici";
import { setGlobalLogLevel } from "spacetimedb";
import { DbConnection } from "./bindings/sync/index.mjs";

const [BASE_URL, DATABASE, TOKEN, STREAM] = process.argv.slice(2);
globalThis.WebSocket = UndiciWebSocket;
setGlobalLogLevel(process.env.AUTOPILOT_SYNC_CONFORMANCE_SDK_LOG ?? "warn");

const say = (record) => process.stdout.write(JSON.stringify(record) + "\n");

function fail(error) {
  say({ step: "error", error: String(error?.stack ?? error) });
  process.exit(1);
}

const conn = await new Promise((resolve, reject) => {
  DbConnection.builder()
    .withUri(BASE_URL)
    .withDatabaseName(DATABASE)
    .withToken(TOKEN)
    .onConnect((connection) => resolve(connection))
    .onConnectError((_ctx, error) => reject(error))
    .build();
}).catch(fail);

function subscribe(query) {
  return new Promise((resolve, reject) => {
    const handle = conn
      .subscriptionBuilder()
      .onApplied(() => resolve(handle))
      .onError((_ctx, error) => reject(error))
      .subscribe(query);
  });
}

const setA = `SELECT * FROM sync_event WHERE stream_id = '${STREAM}'`;
await subscribe(setA).catch(fail);
const setB = await subscribe(`${setA} AND seq >= 1`).catch(fail);
say({ step: "subscribed" });

const held = () =>
  [...conn.db.syncEvent.iter()]
    .filter((row) => row.streamId === STREAM)
    .map((row) => Number(row.seq))
    .sort((a, b) => a - b);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

for await (const line of createInterface({ input: process.stdin })) {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === "unsubscribe") {
    setB.unsubscribeThen(() => say({ step: "unsubscribed" }));
    say({ step: "unsubscribe-sent" });
  } else if (command === "cache") {
    const want = Number(argument);
    for (let waited = 0; held().length < want && waited < 10_000; waited += 20) await sleep(20);
    await sleep(300); // and nothing deletes them right after
    say({ step: "cache", seqs: held() });
    conn.disconnect();
    process.exit(0);
  }
}
