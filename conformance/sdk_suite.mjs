// The official SpacetimeDB TypeScript SDK (npm `spacetimedb`, pinned in package.json) as the judge of our host.
//
//   node conformance/sdk_suite.mjs [BASE_URL] [DATABASE]
//   (or AUTOPILOT_SYNC_CONFORMANCE_URL / AUTOPILOT_SYNC_CONFORMANCE_DATABASE; defaults http://127.0.0.1:3000, chat)
//
// Runs every scenario against a live host serving autopilot_sync.examples.chat through the SDK's own
// `DbConnectionBuilder` / `DbConnectionImpl` (via the hand-written bindings in ./bindings/chat), prints one JSON line
// per scenario ({"scenario", "status": "pass"|"fail", "checks": [...], "error"?, "observed"?, "ms"}) and exits 1 when
// any scenario failed. Safe to rerun against the same database: every name and id it writes is unique to the run.
//
// The SDK is used unchanged. Two read-only observers are installed around it: a WebSocket subclass (the SDK picks
// up `globalThis.WebSocket`) that records the URL, the offered and chosen subprotocols and every raw frame, and a
// `fetch` wrapper that records the token exchange. They never alter a byte.

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { WebSocket as UndiciWebSocket } from "undici";
import {
  ConnectionId,
  Identity,
  InternalError,
  SenderError,
  TimeDuration,
  Timestamp,
  setGlobalLogLevel,
} from "spacetimedb";
import { DbConnection } from "./bindings/chat/index.mjs";

const BASE_URL = process.argv[2] ?? process.env.AUTOPILOT_SYNC_CONFORMANCE_URL ?? "http://127.0.0.1:3000";
const DATABASE = process.argv[3] ?? process.env.AUTOPILOT_SYNC_CONFORMANCE_DATABASE ?? "chat";
const ONLY = (process.env.AUTOPILOT_SYNC_CONFORMANCE_ONLY ?? "").split(",").filter(Boolean);
const WAIT_MS = Number(process.env.AUTOPILOT_SYNC_CONFORMANCE_WAIT_MS ?? 8000);
const QUIET_MS = 600; // how long "nothing more arrives" is watched for
const RUN = randomBytes(4).toString("hex");

setGlobalLogLevel(process.env.AUTOPILOT_SYNC_CONFORMANCE_SDK_LOG ?? "warn");

// ---------------------------------------------------------------------------------------------------------------
// Observers (read-only)

/** Every WebSocket the SDK opened, in order (the suite connects one client at a time). */
const sockets = [];

class ObservedWebSocket extends UndiciWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const parsed = new URL(url);
    const record = {
      url: parsed,
      offered: Array.isArray(protocols) ? [...protocols] : [protocols],
      chosen: undefined,
      received: [], // { tag, wireBytes, bodyBytes }
      sent: [], // byte lengths of client frames
      closed: undefined,
    };
    this.record = record;
    sockets.push(record);
    this.addEventListener("open", () => {
      record.chosen = this.protocol;
    });
    this.addEventListener("message", (event) => {
      const bytes = new Uint8Array(event.data);
      const tag = bytes[0];
      let bodyBytes;
      try {
        bodyBytes = tag === 2 ? gunzipSync(bytes.subarray(1)).length : tag === 0 ? bytes.length - 1 : undefined;
      } catch {
        bodyBytes = undefined;
      }
      record.received.push({
        tag,
        wireBytes: bytes.length,
        bodyBytes,
        head: Buffer.from(bytes.subarray(0, 48)).toString("hex"),
      });
    });
    this.addEventListener("close", (event) => {
      record.closed = { code: event.code, reason: event.reason };
    });
  }

  send(data) {
    this.record?.sent.push(data.byteLength ?? data.length);
    return super.send(data);
  }
}
globalThis.WebSocket = ObservedWebSocket;

/** Every HTTP request the SDK made: { method, url, status }. */
const httpCalls = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const response = await realFetch(input, init);
  httpCalls.push({ method: init?.method ?? "GET", url: String(input), status: response.status });
  return response;
};

// ---------------------------------------------------------------------------------------------------------------
// Helpers

class CheckFailed extends Error {}

/** A scenario's assertion log. */
class Checks {
  constructor() {
    this.passed = [];
    this.observed = {};
  }
  ok(condition, what, detail) {
    if (!condition) {
      throw new CheckFailed(
        detail === undefined ? what : `${what}: ${typeof detail === "string" ? detail : show(detail)}`,
      );
    }
    this.passed.push(what);
  }
  equal(actual, expected, what) {
    const a = show(actual);
    const e = show(expected);
    this.ok(a === e, what, `expected ${e}, got ${a}`);
  }
  note(key, value) {
    this.observed[key] = value;
  }
}

/** JSON-able canonical form of SDK values (bigint, Identity, ConnectionId, Timestamp, TimeDuration, bytes). */
function canon(value) {
  if (typeof value === "bigint") return `${value}n`;
  if (value === undefined) return "<none>";
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && Object.is(value, -0)) return "-0";
    return value;
  }
  if (value instanceof Identity) return `Identity(${value.toHexString()})`;
  if (value instanceof ConnectionId) return `ConnectionId(${value.toHexString()})`;
  if (value instanceof Timestamp) return `Timestamp(${value.microsSinceUnixEpoch}us)`;
  if (value instanceof TimeDuration) return `TimeDuration(${value.micros}us)`;
  if (value instanceof Uint8Array) return `bytes(${Buffer.from(value).toString("hex")})`;
  if (Array.isArray(value)) return value.map(canon);
  const out = {};
  for (const key of Object.keys(value).sort()) out[key] = canon(value[key]);
  return out;
}

function show(value) {
  return JSON.stringify(canon(value));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolve with `promise`, or reject after `ms` with a message naming what was awaited. */
function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Settle a promise into {ok, value} | {ok: false, error} (with a timeout). */
async function settle(promise, what) {
  try {
    return { ok: true, value: await within(promise, what) };
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    return { ok: false, error };
  }
}

const openConnections = new Set();

/**
 * Build a connection with the SDK and wait for onConnect (resolves) or onConnectError (rejects with the SDK's
 * error). `token` undefined = anonymous.
 */
function connect({ token, compression } = {}) {
  return new Promise((resolve, reject) => {
    let builder = DbConnection.builder().withUri(BASE_URL).withDatabaseName(DATABASE);
    if (token !== undefined) builder = builder.withToken(token);
    if (compression !== undefined) builder = builder.withCompression(compression);
    const state = { disconnected: false, disconnectError: undefined };
    builder = builder
      .onConnect((conn, identity, tok) => {
        const opened = sockets.slice(firstSocket);
        if (opened.length !== 1) {
          reject(new CheckFailed(`expected the SDK to open exactly one WebSocket, it opened ${opened.length}`));
          return;
        }
        resolve({ conn, identity, token: tok, state, socket: opened[0] });
      })
      .onConnectError((_ctx, error) => reject(Object.assign(new Error("connectError"), { sdkError: error })))
      .onDisconnect((_ctx, error) => {
        state.disconnected = true;
        state.disconnectError = error;
      });
    const firstSocket = sockets.length;
    const conn = builder.build();
    openConnections.add(conn);
  });
}

function connected(what = "onConnect", options = {}) {
  return within(connect(options), what);
}

function disconnect(...conns) {
  for (const conn of conns) {
    openConnections.delete(conn);
    try {
      conn.disconnect();
    } catch {
      // already closed
    }
  }
}

/** Subscribe and wait for onApplied (resolves with the handle) or onError (rejects with the SDK's error). */
function subscribed(conn, queries, what = `onApplied for ${queries}`) {
  return within(
    new Promise((resolve, reject) => {
      const handle = conn
        .subscriptionBuilder()
        .onApplied((ctx) => resolve({ handle, ctx }))
        .onError((_ctx, error) => reject(Object.assign(new Error("subscription error"), { sdkError: error })))
        .subscribe(queries);
    }),
    what,
  );
}

/**
 * Collect table events ("insert" | "update" | "delete") on `table` until stopped. Returns
 * { events: [{kind, ctx, row, oldRow}], next(pred, what), stop() }.
 */
function watch(table, kinds = ["insert", "update", "delete"]) {
  const events = [];
  const waiters = [];
  const handlers = {
    insert: (ctx, row) => push({ kind: "insert", ctx, row }),
    delete: (ctx, row) => push({ kind: "delete", ctx, row }),
    update: (ctx, oldRow, row) => push({ kind: "update", ctx, row, oldRow }),
  };
  function push(event) {
    events.push(event);
    for (const waiter of [...waiters]) {
      if (waiter.pred(event)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  }
  if (kinds.includes("insert")) table.onInsert(handlers.insert);
  if (kinds.includes("update")) table.onUpdate(handlers.update);
  if (kinds.includes("delete")) table.onDelete(handlers.delete);
  return {
    events,
    next(pred, what) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return within(new Promise((resolve) => waiters.push({ pred, resolve })), what);
    },
    stop() {
      table.removeOnInsert(handlers.insert);
      table.removeOnUpdate(handlers.update);
      table.removeOnDelete(handlers.delete);
    },
  };
}

function describeError(error) {
  if (!error) return String(error);
  const inner = error.sdkError ?? error;
  return { name: inner?.name, message: inner?.message ?? String(inner), constructor: inner?.constructor?.name };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

const shared = {}; // facts handed from one scenario to the next (the anonymous token)

const scenarios = [];
function scenario(name, fn) {
  scenarios.push({ name, fn });
}

scenario("01_connect_anonymous", async (c) => {
  const { conn, identity, token, socket } = await connected();
  const hex = identity.toHexString();
  c.note("identity", hex);
  c.ok(identity instanceof Identity, "onConnect gives an Identity");
  c.ok(/^c200[0-9a-f]{60}$/.test(hex), "identity hex is 64 chars starting with c200", hex);
  c.ok(typeof token === "string" && token.split(".").length === 3, "onConnect gives a JWT token", token);
  c.ok(conn.identity?.toHexString() === hex, "conn.identity equals the onConnect identity");
  c.ok(conn.isActive === true, "conn.isActive after onConnect");
  c.ok(socket !== undefined, "the SDK opened a WebSocket");
  c.note("ws_url", socket.url.toString());
  c.equal(socket.url.pathname, `/v1/database/${DATABASE}/subscribe`, "WebSocket path");
  c.equal(socket.offered, ["v3.bsatn.spacetimedb", "v2.bsatn.spacetimedb"], "SDK offers v3 then v2");
  c.equal(conn.ws.protocol, "v3.bsatn.spacetimedb", "SDK reports the negotiated subprotocol v3");
  c.equal(socket.url.searchParams.get("compression"), "Gzip", "SDK sends compression=Gzip");
  c.ok(!socket.url.searchParams.has("token"), "anonymous connect sends no token");
  // SDK 2.10.1 puts `connection_id` on the base URL, which `new URL("v1/database/...", base)` then drops: the host
  // picks the connection id and the SDK adopts the one InitialConnection carries.
  c.note("ws_connection_id_param", socket.url.searchParams.get("connection_id"));
  c.ok(/^[0-9a-f]{32}$/.test(conn.connectionId.toHexString()), "conn.connectionId (from InitialConnection) is 32 hex");
  const first = socket.received[0];
  c.ok(first && (first.tag === 0 || first.tag === 2), "first server frame has compression tag 0 or 2", first);
  c.note("initial_frame", first);
  shared.anon = { identity: hex, token };
  disconnect(conn);
});

scenario("02_connect_with_token", async (c) => {
  if (!shared.anon) throw new CheckFailed("needs the token from 01_connect_anonymous");
  const before = httpCalls.length;
  const { conn, identity, token, socket } = await connected("onConnect with token", { token: shared.anon.token });
  c.equal(identity.toHexString(), shared.anon.identity, "same identity as the anonymous connect");
  c.equal(token, shared.anon.token, "onConnect hands back the long-lived token the SDK was given");
  const exchange = httpCalls.slice(before).find((call) => call.url.endsWith("/v1/identity/websocket-token"));
  c.ok(exchange !== undefined, "SDK called POST /v1/identity/websocket-token");
  c.equal([exchange.method, exchange.status], ["POST", 200], "token exchange method and status");
  const shortToken = socket.url.searchParams.get("token");
  c.ok(shortToken && shortToken !== shared.anon.token, "WebSocket URL carries the exchanged short-lived token");
  const claims = JSON.parse(Buffer.from(shortToken.split(".")[1], "base64url").toString());
  c.note("short_token_claims", claims);
  c.ok(claims.exp - claims.iat <= 60, "exchanged token lives at most 60 s", claims);
  c.equal(conn.ws.protocol, "v3.bsatn.spacetimedb", "negotiated v3 again");
  disconnect(conn);
});

scenario("03_subscribe_insert_reducer_ok", async (c) => {
  const { conn, identity } = await connected();
  const { ctx } = await subscribed(conn, "SELECT * FROM person");
  c.ok(ctx.db.person !== undefined, "onApplied context exposes db.person");
  const initial = conn.db.person.count();
  c.note("initial_person_rows", String(initial));
  const events = watch(conn.db.person);
  const name = `alice-${RUN}`;
  const call = conn.reducers.addPerson({ name, age: 25 });
  const inserted = await events.next((e) => e.kind === "insert" && e.row.name === name, `onInsert of ${name}`);
  const result = await settle(call, "addPerson promise");
  c.ok(result.ok, "addPerson promise resolves (reducer committed)", describeError(result.error));
  c.ok(
    typeof inserted.row.id === "bigint" && inserted.row.id > 0n,
    "row.id is an auto-incremented u64 bigint",
    inserted.row,
  );
  c.equal(inserted.row.age, 25, "row.age");
  c.equal(Object.keys(inserted.row).sort(), ["age", "id", "name"], "row has exactly the person columns");
  c.equal(inserted.ctx.event.tag, "Reducer", "the caller's insert comes from its ReducerResult (event tag Reducer)");
  c.equal(inserted.ctx.event.value.reducer.name, "add_person", "event names the reducer");
  c.equal(inserted.ctx.event.value.reducer.args, { name, age: 25 }, "event carries the reducer args");
  c.ok(inserted.ctx.event.value.timestamp instanceof Timestamp, "event carries the reducer timestamp");
  c.equal(conn.db.person.name.find(name), inserted.row, "cache: unique index person.name finds the row");
  c.equal(conn.db.person.count(), initial + 1n, "cache count grew by one");
  c.equal(events.events.filter((e) => e.ctx.event.tag === "Reducer").length, 1, "exactly one row event for the call");
  shared.person = { name, id: inserted.row.id, identity: identity.toHexString() };
  events.stop();
  disconnect(conn);
});

scenario("04_update_and_delete", async (c) => {
  const { conn } = await connected();
  await subscribed(conn, "SELECT * FROM person");
  const name = `bob-${RUN}`;
  const events = watch(conn.db.person);
  await within(conn.reducers.addPerson({ name, age: 25 }), "addPerson");
  const inserted = await events.next((e) => e.kind === "insert" && e.row.name === name, `onInsert of ${name}`);
  await within(conn.reducers.setAge({ name, age: 40 }), "setAge promise");
  const updated = await events.next((e) => e.kind === "update" && e.row.name === name, `onUpdate of ${name}`);
  c.equal(updated.oldRow, inserted.row, "onUpdate old row is the inserted row");
  c.equal(updated.row, { ...inserted.row, age: 40 }, "onUpdate new row has the new age and the same id");
  c.ok(!events.events.some((e) => e.kind === "delete" && e.row.name === name), "a primary-key update is not a delete");
  c.equal(conn.db.person.id.find(inserted.row.id)?.age, 40, "cache holds the new row under the same primary key");
  await within(conn.reducers.deletePerson({ name }), "deletePerson promise");
  const deleted = await events.next((e) => e.kind === "delete" && e.row.name === name, `onDelete of ${name}`);
  c.equal(deleted.row, updated.row, "onDelete gives the last row");
  c.equal(conn.db.person.name.find(name), null, "cache no longer holds the row");
  events.stop();
  disconnect(conn);
});

scenario("05_reducer_errors", async (c) => {
  const { conn } = await connected();
  await subscribed(conn, "SELECT * FROM person");
  const events = watch(conn.db.person);
  const failed = await settle(conn.reducers.fail({ message: "boom" }), "fail promise");
  c.ok(!failed.ok, 'fail("boom") rejects');
  c.note("fail_error", describeError(failed.error));
  c.ok(
    failed.error instanceof SenderError,
    "rejection is a SenderError (ReducerOutcome::Err)",
    describeError(failed.error),
  );
  c.equal(failed.error.message, "boom", "SenderError carries the user error text");
  await sleep(QUIET_MS);
  c.ok(
    !events.events.some((e) => e.row?.name === "ghost-boom"),
    "the failed reducer's write was rolled back (no ghost row)",
  );
  c.ok(conn.db.person.name.find("ghost-boom") === null, "cache has no ghost row");

  const panicked = await settle(conn.reducers.panic({}), "panic promise");
  c.ok(!panicked.ok, "panic() rejects");
  c.note("panic_error", describeError(panicked.error));
  c.ok(
    panicked.error instanceof InternalError,
    "rejection is an InternalError (ReducerOutcome::InternalError)",
    describeError(panicked.error),
  );
  c.ok(panicked.error.message.length > 0, "InternalError carries a message");

  // The SDK lets you call a reducer the bindings do not know: DbConnectionImpl.callReducer(name, argsBuffer).
  const unknown = await settle(
    conn.callReducer("no_such_reducer", new Uint8Array(0), undefined),
    "unknown reducer promise",
  );
  c.ok(!unknown.ok, "an unknown reducer rejects");
  c.note("unknown_reducer_error", describeError(unknown.error));
  c.ok(unknown.error instanceof InternalError, "unknown reducer is an InternalError", describeError(unknown.error));
  // SpacetimeDB's text (ReducerCallError::NoSuchReducer in crates/core/src/host/module_host.rs) carries no name.
  c.equal(unknown.error.message, "no such reducer", "the error is SpacetimeDB's 'no such reducer'");

  const after = await settle(
    conn.reducers.addPerson({ name: `after-errors-${RUN}`, age: 1 }),
    "addPerson after errors",
  );
  c.ok(after.ok, "the connection still works after reducer errors", describeError(after.error));
  c.ok(conn.isActive, "connection still active");
  events.stop();
  disconnect(conn);
});

scenario("06_two_clients_unsubscribe", async (c) => {
  const a = await connected("onConnect A");
  const b = await connected("onConnect B");
  const { handle } = await subscribed(b.conn, "SELECT * FROM message", "B onApplied for message");
  const seenAtB = watch(b.conn.db.message);
  const text1 = `hello-${RUN}`;
  const sent = await settle(a.conn.reducers.sendMessage({ text: text1 }), "A sendMessage");
  c.ok(sent.ok, "A's sendMessage resolves", describeError(sent.error));
  const got = await seenAtB.next((e) => e.kind === "insert" && e.row.text === text1, "B onInsert of A's message");
  c.equal(got.row.sender, a.identity, "message.sender is A's identity");
  c.ok(got.row.sent instanceof Timestamp, "message.sent is a Timestamp");
  c.ok(
    Math.abs(Number(got.row.sent.microsSinceUnixEpoch / 1000n) - Date.now()) < 60_000,
    "message.sent is about now",
    got.row.sent,
  );
  c.equal(got.ctx.event.tag, "Transaction", "B sees it as a TransactionUpdate (event tag Transaction)");
  const cachedBefore = b.conn.db.message.count();
  c.ok(cachedBefore >= 1n, "B's cache holds the message");

  const ended = within(new Promise((resolve) => handle.unsubscribeThen(resolve)), "B unsubscribe onEnd");
  await ended;
  c.ok(handle.isEnded(), "B's handle reports ended");
  c.equal(b.conn.db.message.count(), 0n, "UnsubscribeApplied (SendDroppedRows) emptied B's message cache");
  c.ok(
    seenAtB.events.some((e) => e.kind === "delete" && e.row.text === text1),
    "B got onDelete for dropped rows",
  );

  const insertsBefore = seenAtB.events.filter((e) => e.kind === "insert").length;
  const text2 = `after-unsub-${RUN}`;
  await within(a.conn.reducers.sendMessage({ text: text2 }), "A second sendMessage");
  await sleep(QUIET_MS);
  c.equal(seenAtB.events.filter((e) => e.kind === "insert").length, insertsBefore, "no inserts at B after unsubscribe");
  const bFrames = b.socket.received.length;
  c.note("b_frames", bFrames);
  seenAtB.stop();
  disconnect(a.conn, b.conn);
});

scenario("07_where_clause", async (c) => {
  const writer = await connected("onConnect writer");
  const old = `old-${RUN}`;
  const young = `young-${RUN}`;
  await within(writer.conn.reducers.addPerson({ name: old, age: 50 }), "add old");
  await within(writer.conn.reducers.addPerson({ name: young, age: 20 }), "add young");
  const reader = await connected("onConnect reader");
  const events = watch(reader.conn.db.person);
  await subscribed(reader.conn, "SELECT * FROM person WHERE age > 30");
  const cached = [...reader.conn.db.person.iter()];
  c.ok(cached.length >= 1, "SubscribeApplied delivered matching rows");
  c.ok(
    cached.every((row) => row.age > 30),
    "every row in the cache matches age > 30",
    cached.filter((r) => r.age <= 30),
  );
  c.ok(reader.conn.db.person.name.find(old) !== null, `${old} (age 50) arrived`);
  c.ok(reader.conn.db.person.name.find(young) === null, `${young} (age 20) did not arrive`);

  const later = `later-${RUN}`;
  await within(writer.conn.reducers.addPerson({ name: `small-${RUN}`, age: 30 }), "add age 30");
  await within(writer.conn.reducers.addPerson({ name: later, age: 31 }), "add age 31");
  await events.next((e) => e.kind === "insert" && e.row.name === later, `onInsert of ${later}`);
  c.ok(!events.events.some((e) => e.row.name === `small-${RUN}`), "age 30 (not > 30) never arrives");

  await within(writer.conn.reducers.setAge({ name: old, age: 10 }), "move old out of the predicate");
  const leaving = await events.next((e) => e.row.name === old && e.kind !== "insert", `event for ${old} leaving`);
  c.equal(leaving.kind, "delete", "a row updated out of the predicate is seen as a delete");
  c.equal(leaving.row.age, 50, "the delete carries the row as the client last saw it");
  c.ok(reader.conn.db.person.name.find(old) === null, "cache dropped the row");

  await within(writer.conn.reducers.setAge({ name: young, age: 60 }), "move young into the predicate");
  const entering = await events.next((e) => e.row.name === young, `event for ${young} entering`);
  c.equal(entering.kind, "insert", "a row updated into the predicate is seen as an insert");
  c.equal(entering.row.age, 60, "with its new value");

  await within(writer.conn.reducers.setAge({ name: young, age: 70 }), "update inside the predicate");
  const inside = await events.next((e) => e.row.name === young && e.kind === "update", `onUpdate for ${young}`);
  c.equal([inside.oldRow.age, inside.row.age], [60, 70], "an update that stays inside the predicate is an update");
  c.ok(
    [...reader.conn.db.person.iter()].every((row) => row.age > 30),
    "cache still only holds matching rows",
  );
  events.stop();
  disconnect(writer.conn, reader.conn);
});

function extremeRow(id) {
  return {
    id,
    b: true,
    i8: -128,
    u8: 255,
    i16: -32768,
    u16: 65535,
    i32: -2147483648,
    u32: 4294967295,
    i64: -(2n ** 63n),
    u64: 2n ** 64n - 1n,
    i128: -(2n ** 127n),
    u128: 2n ** 128n - 1n,
    i256: -(2n ** 255n),
    u256: 2n ** 256n - 1n,
    f32: Math.fround(-3.4028234663852886e38),
    f64: Number.MAX_VALUE,
    s: "héllo, wörld ✓ 🚀 \u0000 end",
    bytes: new Uint8Array([0, 1, 127, 128, 255]),
    list: [-2147483648, 0, 2147483647],
    opt: "some value",
    who: Identity.fromString("c2" + "ff".repeat(31)),
    conn: new ConnectionId(2n ** 128n - 1n),
    ts: new Timestamp(2n ** 63n - 1n),
    dur: new TimeDuration(-(2n ** 63n)),
  };
}

function otherExtremeRow(id) {
  return {
    id,
    b: false,
    i8: 127,
    u8: 0,
    i16: 32767,
    u16: 0,
    i32: 2147483647,
    u32: 0,
    i64: 2n ** 63n - 1n,
    u64: 0n,
    i128: 2n ** 127n - 1n,
    u128: 0n,
    i256: 2n ** 255n - 1n,
    u256: 0n,
    f32: Math.fround(1.401298464324817e-45),
    f64: -0,
    s: "",
    bytes: new Uint8Array(0),
    list: [],
    opt: undefined,
    who: Identity.zero(),
    conn: new ConnectionId(0n),
    ts: new Timestamp(-(2n ** 63n)),
    dur: new TimeDuration(2n ** 63n - 1n),
  };
}

scenario("08_all_types_round_trip", async (c) => {
  const { conn } = await connected();
  await subscribed(conn, "SELECT * FROM all_types");
  const events = watch(conn.db.allTypes);
  const base = (parseInt(RUN, 16) % 2_000_000_000) + 1;
  for (const row of [extremeRow(base), otherExtremeRow(base + 1)]) {
    const sent = await settle(conn.reducers.putAllTypes({ row }), `putAllTypes id=${row.id}`);
    c.ok(sent.ok, `putAllTypes(id=${row.id}) resolves`, describeError(sent.error));
    const got = await events.next(
      (e) => e.kind === "insert" && e.row.id === row.id,
      `onInsert of all_types id=${row.id}`,
    );
    c.equal(got.row, row, `row id=${row.id} round-trips through the SDK cache unchanged`);
    c.equal(conn.db.allTypes.id.find(row.id), row, `cache lookup by id=${row.id} gives the same row`);
  }
  // A second subscriber sees the stored rows in SubscribeApplied (rows encoded by the host's snapshot path).
  const other = await connected("onConnect second client");
  await subscribed(other.conn, `SELECT * FROM all_types WHERE id = ${base}`);
  c.equal(other.conn.db.allTypes.id.find(base), extremeRow(base), "SubscribeApplied row (WHERE id = ...) is unchanged");
  c.equal(other.conn.db.allTypes.count(), 1n, "the WHERE id = n subscription holds exactly one row");
  // Replace by id: the SDK sees an update with the old and new rows.
  const replacement = { ...otherExtremeRow(base), s: "replaced" };
  await within(conn.reducers.putAllTypes({ row: replacement }), "putAllTypes replace");
  const upd = await events.next((e) => e.kind === "update" && e.row.id === base, "onUpdate of replaced row");
  c.equal([upd.oldRow, upd.row], [extremeRow(base), replacement], "replacing by primary key is an update (old, new)");
  events.stop();
  disconnect(conn, other.conn);
});

scenario("09_subscription_error", async (c) => {
  const { conn, state } = await connected();
  let error;
  try {
    await subscribed(conn, "SELECT * FROM no_such_table", "onApplied/onError for a nonexistent table");
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    error = e.sdkError;
  }
  c.ok(error !== undefined, "subscribing to a nonexistent table calls onError (not onApplied)");
  c.note("subscription_error", describeError(error));
  c.ok(
    error instanceof Error && error.message.length > 0,
    "onError gives an Error with a message",
    describeError(error),
  );
  c.ok(/no_such_table/.test(error.message), "the message names the table", error.message);
  await sleep(100);
  c.ok(conn.isActive && !state.disconnected, "the connection stays open (SubscriptionError carried a request_id)");
  const again = await subscribed(conn, "SELECT * FROM person", "a valid subscription after the error");
  c.ok(again.handle.isActive(), "a later valid subscription applies");
  const bad = await settle(
    new Promise((resolve, reject) =>
      conn
        .subscriptionBuilder()
        .onApplied(resolve)
        .onError((_ctx, e) => reject(e))
        .subscribe("SELEKT nonsense"),
    ),
    "onError for invalid SQL",
  );
  c.ok(
    !bad.ok && bad.error.message.length > 0,
    "invalid SQL calls onError with a message",
    bad.ok ? "applied" : describeError(bad.error),
  );
  c.note("bad_sql_error", bad.ok ? null : describeError(bad.error));
  disconnect(conn);
});

scenario("10_garbage_token_rejected", async (c) => {
  const before = httpCalls.length;
  let connectedOk = false;
  let error;
  try {
    await connected("onConnectError for a garbage token", { token: "garbage.token.value" });
    connectedOk = true;
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    error = e.sdkError;
  }
  c.ok(!connectedOk, "onConnect never fires for a garbage token");
  c.ok(error instanceof Error, "onConnectError receives an Error", describeError(error));
  c.note("connect_error", describeError(error));
  const exchange = httpCalls.slice(before).find((call) => call.url.endsWith("/v1/identity/websocket-token"));
  c.ok(exchange !== undefined, "the SDK tried the token exchange");
  c.equal(exchange.status, 401, "the host answers the token exchange with 401");
  c.ok(/Failed to verify token/.test(error.message), "the SDK reports the failed verification", error.message);
});

scenario("11_large_transaction_compressed", async (c) => {
  const caller = await connected("onConnect caller");
  const reader = await connected("onConnect reader");
  await subscribed(reader.conn, "SELECT * FROM person");
  await subscribed(caller.conn, "SELECT * FROM person");
  const names = Array.from({ length: 500 }, (_, i) => `bulk-${RUN}-${String(i).padStart(3, "0")}`);
  const wanted = new Set(names);
  const atReader = watch(reader.conn.db.person, ["insert"]);
  const atCaller = watch(caller.conn.db.person, ["insert"]);
  const framesBefore = reader.socket.received.length;
  const callerFramesBefore = caller.socket.received.length;
  const sent = await settle(caller.conn.reducers.addPeople({ names }), "addPeople(500) promise");
  c.ok(sent.ok, "addPeople with 500 names resolves", describeError(sent.error));
  const done = () => atReader.events.filter((e) => wanted.has(e.row.name)).length === names.length;
  const start = Date.now();
  while (!done() && Date.now() - start < WAIT_MS) await sleep(25);
  const got = atReader.events.filter((e) => wanted.has(e.row.name));
  c.equal(got.length, 500, "reader got 500 onInsert callbacks");
  c.equal(new Set(got.map((e) => e.ctx.event.id)).size, 1, "all 500 came in one transaction event");
  c.equal(got.map((e) => e.row.name).sort(), [...names].sort(), "every name arrived exactly once");
  c.equal(
    atCaller.events.filter((e) => wanted.has(e.row.name)).length,
    500,
    "caller got its 500 inserts via ReducerResult",
  );
  const frames = reader.socket.received.slice(framesBefore);
  const big = frames.filter((f) => (f.bodyBytes ?? 0) > 1024);
  c.note("reader_frames", frames);
  c.note("caller_frames", caller.socket.received.slice(callerFramesBefore));
  c.ok(big.length >= 1, "the transaction arrived in a frame whose body is over 1 KiB", frames);
  c.ok(
    big.every((f) => f.tag === 2),
    "bodies over 1 KiB are gzip-compressed (tag 2)",
    big,
  );
  c.ok(
    big.every((f) => f.wireBytes < f.bodyBytes),
    "compression made them smaller",
    big,
  );
  const callerBig = caller.socket.received.slice(callerFramesBefore).filter((f) => (f.bodyBytes ?? 0) > 1024);
  c.ok(
    callerBig.length >= 1 && callerBig.every((f) => f.tag === 2),
    "the caller's ReducerResult was compressed too",
    callerBig,
  );
  const small = [...reader.socket.received, ...caller.socket.received].filter(
    (f) => f.bodyBytes !== undefined && f.bodyBytes <= 1024,
  );
  c.note("small_frames_tags", [...new Set(small.map((f) => f.tag))]);
  c.ok(
    small.every((f) => f.tag === 0),
    "bodies of 1 KiB or less are sent uncompressed (tag 0), as the real server does",
    small.filter((f) => f.tag !== 0),
  );
  atReader.stop();
  atCaller.stop();
  disconnect(caller.conn, reader.conn);
});

scenario("12_scheduled_reducer", async (c) => {
  const { conn } = await connected();
  await subscribed(conn, ["SELECT * FROM message", "SELECT * FROM reminder"]);
  const messages = watch(conn.db.message, ["insert"]);
  const reminders = watch(conn.db.reminder);
  const text = `ping-${RUN}`;
  await within(conn.reducers.scheduleReminder({ text, delayMicros: 200_000n }), "scheduleReminder");
  const scheduled = await reminders.next(
    (e) => e.kind === "insert" && e.row.text === text,
    "onInsert of the reminder row",
  );
  c.equal(scheduled.row.scheduledAt.tag, "Time", "reminder.scheduled_at is ScheduleAt::Time");
  c.ok(
    scheduled.row.scheduledAt.value instanceof Timestamp,
    "ScheduleAt::Time carries a Timestamp",
    scheduled.row.scheduledAt,
  );
  const scheduledFor = scheduled.row.scheduledAt.value.microsSinceUnixEpoch;
  c.note("scheduled_for_minus_now_ms", Number(scheduledFor / 1000n) - Date.now());
  let fired;
  try {
    fired = await messages.next((e) => e.row.text === `reminder: ${text}`, "the scheduled reducer's message");
  } finally {
    c.note(
      "reminder_events",
      reminders.events.map((e) => [e.kind, e.row.text, e.ctx.event.tag]),
    );
    c.note(
      "reminder_rows_in_cache",
      [...conn.db.reminder.iter()].map((r) => r.text),
    );
    c.note(
      "message_events",
      messages.events.map((e) => e.row.text),
    );
  }
  c.equal(fired.ctx.event.tag, "Transaction", "the scheduled run reaches the client as a TransactionUpdate");
  const gone = await reminders.next(
    (e) => e.kind === "delete" && e.row.text === text,
    "onDelete of the fired one-shot reminder",
  );
  c.ok(gone !== undefined, "a one-shot schedule row is deleted after it fires");
  messages.stop();
  reminders.stop();
  disconnect(conn);
});

scenario("13_join_subscription", async (c) => {
  // The chat module's only indexed pair: message.sender (btree) joined from online.identity. `message JOIN person`
  // has no pair (person has no Identity column), and `message.* ... JOIN online` would probe online.identity, which
  // has no index (the host refuses it, as the real one).
  const reader = await connected("onConnect reader");
  const writer = await connected("onConnect writer");
  const who = writer.identity.toHexString();
  const events = watch(reader.conn.db.online);
  const sql = `SELECT online.* FROM online JOIN message ON online.identity = message.sender WHERE online.identity = 0x${who}`;
  await subscribed(reader.conn, sql);
  c.equal([...reader.conn.db.online.iter()].length, 0, "no online row before the writer sent a message");
  const refused = await settle(
    subscribed(reader.conn, "SELECT message.* FROM message JOIN online ON message.sender = online.identity"),
    "onError for a join probing an unindexed column",
  );
  c.ok(!refused.ok, "a join whose lookup column has no index is refused");
  c.ok(
    String(refused.error?.sdkError?.message ?? refused.error?.sdkError ?? "").includes(
      "Subscriptions require indexes on join columns",
    ),
    "with the real host's words",
    describeError(refused.error),
  );
  await within(writer.conn.reducers.sendMessage({ text: `join-${RUN}` }), "writer sendMessage");
  const joined = await events.next((e) => e.kind === "insert", "onInsert of the writer's online row");
  c.equal(joined.row.identity.toHexString(), who, "the joined row is the writer's online row");
  c.equal(
    joined.row.connectionId.toHexString(),
    writer.conn.connectionId.toHexString(),
    "with the writer's connection id",
  );
  await within(writer.conn.reducers.sendMessage({ text: `join2-${RUN}` }), "writer sends a second message");
  await sleep(200);
  c.equal(events.events.length, 1, "a second partner changes nothing the client sees", events.events.map((e) => e.kind));
  c.equal([...reader.conn.db.online.iter()].length, 1, "the cache holds the row once");
  disconnect(writer.conn);
  const left = await events.next((e) => e.kind === "delete", "onDelete when the writer disconnects");
  c.equal(left.row.identity.toHexString(), who, "the deleted row is the writer's");
  c.equal([...reader.conn.db.online.iter()].length, 0, "the cache is empty again");
  events.stop();
  disconnect(reader.conn);
});

// ---------------------------------------------------------------------------------------------------------------
// Runner

scenario("14_client_connected_refusal_is_a_disconnect", async (c) => {
  // SpacetimeDB upgrades first and runs client_connected after (crates/client-api/src/routes/subscribe.rs
  // handle_websocket), so a refusal reaches the SDK as a closed socket: onDisconnect, never onConnect/onConnectError.
  const token = process.env.AUTOPILOT_SYNC_CONFORMANCE_BANNED_TOKEN;
  c.ok(typeof token === "string" && token.length > 0, "the runner passed a token whose subject the module bans");
  const firstSocket = sockets.length;
  const outcome = await within(
    new Promise((resolve) => {
      const conn = DbConnection.builder()
        .withUri(BASE_URL)
        .withDatabaseName(DATABASE)
        .withToken(token)
        .onConnect(() => resolve({ kind: "connect" }))
        .onConnectError((_ctx, error) => resolve({ kind: "connectError", error }))
        .onDisconnect((_ctx, error) => resolve({ kind: "disconnect", error }))
        .build();
      openConnections.add(conn);
    }),
    "onDisconnect for a connection client_connected refuses",
  );
  c.note("outcome", { kind: outcome.kind, error: outcome.error ? describeError(outcome.error) : null });
  c.equal(outcome.kind, "disconnect", "the SDK reports onDisconnect (the socket was upgraded, then closed)");
  const socket = sockets[firstSocket];
  c.ok(socket !== undefined, "the SDK opened a WebSocket");
  c.equal(socket.chosen, "v3.bsatn.spacetimedb", "the upgrade succeeded with v3");
  c.equal(socket.received.length, 0, "no InitialConnection arrived");
  c.note("close", socket.closed);
  c.equal(socket.closed?.code, 1008, "the host closed with 1008");
  c.equal(socket.closed?.reason, "forbidden: this subject is banned", "the close reason is the module's message");
});

// The one scenario list both SDKs run (conformance/scenarios.json): run in its order, and refuse to run when the
// scenarios written here and the list differ, so neither side can drop a scenario silently.
const LIST = JSON.parse(readFileSync(new URL("./scenarios.json", import.meta.url), "utf8")).scenarios.map((s) => s.id);

async function main() {
  const written = scenarios.map((s) => s.name);
  const missing = LIST.filter((id) => !written.includes(id));
  const unlisted = written.filter((name) => !LIST.includes(name));
  if (missing.length || unlisted.length) {
    throw new Error(`scenarios.json and sdk_suite.mjs differ: not written ${missing}; not listed ${unlisted}`);
  }
  let failures = 0;
  for (const { name, fn } of LIST.map((id) => scenarios.find((s) => s.name === id))) {
    if (ONLY.length && !ONLY.some((prefix) => name.startsWith(prefix))) continue;
    const checks = new Checks();
    const started = Date.now();
    const line = { scenario: name, status: "pass" };
    try {
      await fn(checks);
    } catch (error) {
      failures += 1;
      line.status = "fail";
      line.error = error instanceof CheckFailed ? error.message : `${error?.stack ?? error}`;
      if (error?.sdkError) line.sdk_error = describeError(error);
    }
    line.checks = checks.passed;
    if (Object.keys(checks.observed).length) line.observed = canon(checks.observed);
    line.ms = Date.now() - started;
    for (const conn of openConnections) disconnect(conn);
    console.log(JSON.stringify(line));
  }
  console.log(JSON.stringify({ summary: true, base_url: BASE_URL, database: DATABASE, run: RUN, failures }));
  return failures;
}

main().then(
  (failures) => {
    // undici keeps sockets alive for a while; do not wait for them.
    setTimeout(() => process.exit(failures ? 1 : 0), 50);
  },
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
