// A small module with procedures (issue 18): the host's tests call each one with the official SDK and with
// autopilot-sync's own client. Procedures run outside any transaction and return a value; `ctx.withTx` opens a
// transaction that commits (or rolls back) as a reducer's does.
import { schema, table, t, SenderError, ScheduleAt } from 'spacetimedb/server';

const counter = table(
  { name: 'counter', public: true },
  {
    name: t.string().primaryKey(),
    value: t.u64(),
  }
);

// Rows here schedule `tick_proc`, a procedure: it runs once at `at`, outside any transaction.
const tick = table(
  { name: 'tick', public: true },
  { tickId: t.u64().primaryKey().autoInc(), at: t.scheduleAt(), name: t.string() }
);

const spacetimedb = schema({ counter, tick });
export default spacetimedb;

// No transaction: a pure function of its arguments.
export const add = spacetimedb.procedure({ a: t.u32(), b: t.u32() }, t.u32(), (_ctx, { a, b }) => a + b);

// Who called: the caller's identity, as a hex string.
export const whoami = spacetimedb.procedure(t.string(), (ctx) => ctx.sender.toHexString());

// The database's identity, outside any transaction.
export const module_identity = spacetimedb.procedure(t.string(), (ctx) => ctx.databaseIdentity.toHexString());

// One transaction: read, then insert or update; returns the new value.
export const bump = spacetimedb.procedure({ name: t.string(), by: t.u64() }, t.u64(), (ctx, { name, by }) =>
  ctx.withTx((tx) => {
    const row = tx.db.counter.name.find(name);
    const value = (row?.value ?? 0n) + by;
    if (row) tx.db.counter.name.update({ name, value });
    else tx.db.counter.insert({ name, value });
    return value;
  })
);

// Two transactions, each its own commit: the second sees the first.
export const bump_twice = spacetimedb.procedure({ name: t.string() }, t.u64(), (ctx, { name }) => {
  for (let i = 0; i < 2; i++) {
    ctx.withTx((tx) => {
      const row = tx.db.counter.name.find(name);
      if (row) tx.db.counter.name.update({ name, value: row.value + 1n });
      else tx.db.counter.insert({ name, value: 1n });
    });
  }
  return ctx.withTx((tx) => tx.db.counter.name.find(name)?.value ?? 0n);
});

// A transaction whose body throws is rolled back; the procedure fails with the error.
export const write_then_throw = spacetimedb.procedure({ name: t.string() }, t.unit(), (ctx, { name }) => {
  ctx.withTx((tx) => {
    tx.db.counter.insert({ name, value: 99n });
    throw new SenderError(`refused after writing ${name}`);
  });
  return {};
});

// Outbound HTTP: this host refuses it (docs/modules.md).
export const fetch_url = spacetimedb.procedure({ url: t.string() }, t.string(), (ctx, { url }) =>
  ctx.http.fetch(url).text()
);

// Runs forever: the per-call time limit ends it.
export const spin = spacetimedb.procedure(t.unit(), () => {
  for (;;) {
    // no way out
  }
});

// Stuck inside a transaction: the time limit kills the runner and the host rolls the open transaction back.
export const spin_in_tx = spacetimedb.procedure({ name: t.string() }, t.unit(), (ctx, { name }) => {
  ctx.withTx((tx) => {
    tx.db.counter.insert({ name, value: 1n });
    for (;;) {
      // no way out, with a row written
    }
  });
  return {};
});

// A transaction inside a transaction: the host refuses the second (one open transaction per procedure).
export const nested_tx = spacetimedb.procedure({ name: t.string() }, t.unit(), (ctx, { name }) => {
  ctx.withTx((tx) => {
    tx.db.counter.insert({ name, value: 1n });
    ctx.withTx(() => undefined);
  });
  return {};
});

// Scheduled: the host deletes the one-shot row, then runs the procedure with it as the owner.
export const tick_proc = spacetimedb.procedure({ onSchedule: tick }, { arg: tick.rowType }, t.unit(), (ctx, { arg }) => {
  ctx.withTx((tx) => {
    tx.db.counter.insert({ name: `ticked ${arg.name}`, value: 1n });
  });
  return {};
});

export const schedule_tick = spacetimedb.reducer({ name: t.string() }, (ctx, { name }) => {
  ctx.db.tick.insert({ tickId: 0n, at: ScheduleAt.time(ctx.timestamp.microsSinceUnixEpoch + 50_000n), name });
});

// A reducer next to the procedures, so the test sees both kinds of call on one module.
export const reset = spacetimedb.reducer({ name: t.string() }, (ctx, { name }) => {
  ctx.db.counter.name.delete(name);
});
