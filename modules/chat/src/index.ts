// The chat module of SpacetimeDB's TypeScript quickstart ("Quickstart Chat App"), written from its documentation:
// users keyed by identity with an optional name and an online flag, and a message log. It is not ours; it is here
// to prove the embedded host runs any module built on the official library, not just the sync module.
import { schema, table, t, SenderError } from 'spacetimedb/server';

const user = table(
  { name: 'user', public: true },
  {
    identity: t.identity().primaryKey(),
    name: t.string().optional(),
    online: t.bool(),
  }
);

const message = table(
  { name: 'message', public: true },
  {
    sender: t.identity(),
    sent: t.timestamp(),
    text: t.string(),
  }
);

const spacetimedb = schema({ user, message });
export default spacetimedb;

function validateName(name: string): string {
  if (!name) {
    throw new SenderError('Names must not be empty');
  }
  return name;
}

export const set_name = spacetimedb.reducer({ name: t.string() }, (ctx, { name }) => {
  const validated = validateName(name);
  const existing = ctx.db.user.identity.find(ctx.sender);
  if (!existing) {
    throw new SenderError('Cannot set name for unknown user');
  }
  ctx.db.user.identity.update({ ...existing, name: validated });
});

function validateMessage(text: string): string {
  if (!text) {
    throw new SenderError('Messages must not be empty');
  }
  return text;
}

export const send_message = spacetimedb.reducer({ text: t.string() }, (ctx, { text }) => {
  const validated = validateMessage(text);
  console.info(`User ${ctx.sender.toHexString()}: ${validated}`);
  ctx.db.message.insert({ sender: ctx.sender, text: validated, sent: ctx.timestamp });
});

export const init = spacetimedb.init((_ctx) => {});

export const onConnect = spacetimedb.clientConnected((ctx) => {
  const existing = ctx.db.user.identity.find(ctx.sender);
  if (existing) {
    ctx.db.user.identity.update({ ...existing, online: true });
  } else {
    ctx.db.user.insert({ identity: ctx.sender, name: undefined, online: true });
  }
});

export const onDisconnect = spacetimedb.clientDisconnected((ctx) => {
  const existing = ctx.db.user.identity.find(ctx.sender);
  if (existing) {
    ctx.db.user.identity.update({ ...existing, online: false });
  } else {
    console.warn(`Disconnect event for unknown user with identity ${ctx.sender.toHexString()}`);
  }
});
