// Two chat users on the official SDK against a host running the quickstart chat module (modules/chat), built by
// `autopilot-sync build`, with bindings from `autopilot-sync client generate --lang typescript`.
// Usage: node chat_clients.mjs BASE_URL DATABASE. Prints one JSON line: what each client saw. Exits 1 on a timeout.
import { WebSocket as UndiciWebSocket } from 'undici';
import { type Identity, SenderError } from 'spacetimedb';
import { DbConnection } from './module_bindings/index';

// Node 20 has no global WebSocket; the SDK uses the global one (as docs/typescript.md says).
(globalThis as { WebSocket?: unknown }).WebSocket = UndiciWebSocket;

const [baseUrl, database] = process.argv.slice(2);
const WAIT_MS = 30_000;

interface Client {
  conn: DbConnection;
  identity: Identity;
}

function connect(): Promise<Client> {
  return new Promise((resolve, reject) => {
    DbConnection.builder()
      .withUri(baseUrl)
      .withDatabaseName(database)
      .onConnect((conn, identity) => {
        conn
          .subscriptionBuilder()
          .onApplied(() => resolve({ conn, identity }))
          .onError((_ctx) => reject(new Error('subscription failed')))
          .subscribe(['SELECT * FROM user', 'SELECT * FROM message']);
      })
      .onConnectError((_ctx, error) => reject(error))
      .build();
  });
}

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function view(client: Client) {
  const users = [...client.conn.db.user.iter()].map((u) => ({
    identity: u.identity.toHexString(),
    name: u.name ?? null,
    online: u.online,
  }));
  const messages = [...client.conn.db.message.iter()]
    .sort((a, b) => (a.sent.microsSinceUnixEpoch < b.sent.microsSinceUnixEpoch ? -1 : 1))
    .map((m) => ({ sender: m.sender.toHexString(), text: m.text }));
  return { identity: client.identity.toHexString(), users: users.sort((a, b) => (a.name ?? '').localeCompare(b.name ?? '')), messages };
}

async function main(): Promise<void> {
  const alice = await connect();
  const bob = await connect();
  await alice.conn.reducers.setName({ name: 'alice' });
  await bob.conn.reducers.setName({ name: 'bob' });
  await alice.conn.reducers.sendMessage({ text: 'hello from alice' });
  await bob.conn.reducers.sendMessage({ text: 'hi alice, bob here' });
  for (const client of [alice, bob]) {
    await until('both messages and both names at every client', () => {
      const seen = view(client);
      return seen.messages.length === 2 && seen.users.filter((u) => u.name !== null && u.online).length === 2;
    });
  }
  const both = { alice: view(alice), bob: view(bob) };

  let refused: { isSenderError: boolean; message: string } | null = null;
  try {
    await alice.conn.reducers.setName({ name: '' });
  } catch (error) {
    refused = { isSenderError: error instanceof SenderError, message: (error as Error).message };
  }

  const bobHex = bob.identity.toHexString();
  const flips: boolean[] = [];
  alice.conn.db.user.onUpdate((_ctx, oldRow, newRow) => {
    if (newRow.identity.toHexString() === bobHex) flips.push(oldRow.online, newRow.online);
  });
  bob.conn.disconnect();
  await until("bob's online flag to flip at alice", () => flips.length === 2);
  const afterDisconnect = view(alice);
  alice.conn.disconnect();
  console.log(JSON.stringify({ both, refused, flips, afterDisconnect }));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error instanceof Error ? error.stack : String(error));
    process.exit(1);
  }
);
