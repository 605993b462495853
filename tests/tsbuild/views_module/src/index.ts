// A small module with views (issue 18): the host's tests subscribe to them with the official SDK and with
// autopilot-sync's own client. `my_notes` is a view of its caller (each caller sees their own notes), `open_tasks`
// an anonymous view (the same rows for everyone), `recent` answers with a query instead of rows, and the others
// misbehave (throw, loop forever, try to write) so the tests can see the host contain them.
import { schema, table, t } from 'spacetimedb/server';

const note = table(
  { name: 'note', public: true },
  {
    id: t.u64().primaryKey().autoInc(),
    owner: t.identity().index(),
    text: t.string(),
  }
);

const task = table(
  { name: 'task', public: true },
  {
    id: t.u64().primaryKey().autoInc(),
    title: t.string(),
    done: t.bool(),
  }
);

const spacetimedb = schema({ note, task });
export default spacetimedb;

export const add_note = spacetimedb.reducer({ text: t.string() }, (ctx, { text }) => {
  ctx.db.note.insert({ id: 0n, owner: ctx.sender, text });
});

export const add_task = spacetimedb.reducer({ title: t.string() }, (ctx, { title }) => {
  ctx.db.task.insert({ id: 0n, title, done: false });
});

export const finish_task = spacetimedb.reducer({ title: t.string() }, (ctx, { title }) => {
  for (const row of ctx.db.task.iter()) {
    if (row.title === title) ctx.db.task.id.update({ ...row, done: true });
  }
});

// The caller's own notes: a per-caller view.
export const my_notes = spacetimedb.view({ public: true }, t.array(note.rowType), (ctx) => [
  ...ctx.db.note.owner.filter(ctx.sender),
]);

// Tasks not done yet, the same for everyone: an anonymous view (rows it builds itself, duplicates allowed).
export const open_tasks = spacetimedb.anonymousView(
  { public: true },
  t.array(t.row('OpenTask', { title: t.string() })),
  (ctx) => [...ctx.db.task.iter()].filter((row) => !row.done).map((row) => ({ title: row.title }))
);

// The first task, if any: an option-returning view (zero or one row).
export const first_task = spacetimedb.anonymousView({ public: true }, t.option(task.rowType), (ctx) =>
  ctx.db.task.iter().next().value ?? undefined
);

// Done tasks as a query: the view answers with SQL (`RawSql`) and the host runs it.
export const done_tasks = spacetimedb.anonymousView({ public: true }, t.array(task.rowType), (ctx) =>
  ctx.from.task.where((row) => row.done.eq(true))
);

export const broken_view = spacetimedb.anonymousView({ public: true }, t.array(task.rowType), () => {
  throw new Error('this view is broken');
});

export const endless_view = spacetimedb.anonymousView({ public: true }, t.array(task.rowType), () => {
  for (;;) {
    // never returns: the host's time limit ends it
  }
});

// A view reaching past its read-only `ctx.db` to write: the host refuses the write and the view fails.
export const sneaky_view = spacetimedb.anonymousView({ public: true }, t.array(task.rowType), (ctx) => {
  (ctx.db as any).task.insert({ id: 0n, title: 'written by a view', done: false });
  return [];
});
