// Presence: lifecycle reducers and `heartbeat` (src/autopilot_sync/module/reducers.py, visibility.py).
import { claimsOf, requireTrustedIssuer, Scope, scopesOf } from './auth';
import { CONFIG_ROW, currentConfig } from './config';
import type { Ctx } from './context';
import { Code, refuse } from './errors';
import { nostrPubkeyOf, npub } from './nostr';
import spacetimedb from './schema';

/** The one presence group today: every member sees every connection. */
export const PRESENCE_REALM = 'sync';

/** Record the caller as a member (it may see presence) when its token lets it subscribe; kept across connects. */
function admitMember(ctx: Ctx, scopes: Set<string>): void {
  if (!scopes.has(Scope.SUBSCRIBE)) return;
  if (ctx.db.sync_member.identity.find(ctx.sender) === null) {
    ctx.db.sync_member.insert({ identity: ctx.sender, realm: PRESENCE_REALM, admitted_at: ctx.timestamp });
  }
}

/**
 * Admit readers and publishers only; record presence with the Nostr key the token proves. The owner passes without
 * a trusted issuer (its identity pins its token's issuer) and without scopes (SpacetimeDB runs `client_connected`
 * around an HTTP `/call` too), so its `set_trusted_issuer` always gets through; without scopes, no presence.
 */
export const client_connected = spacetimedb.clientConnected((ctx) => {
  const claims = claimsOf(ctx);
  const scopes = scopesOf(claims);
  const syncs = scopes.has(Scope.SUBSCRIBE) || scopes.has(Scope.APPEND);
  const config = ctx.db.sync_config.id.find(CONFIG_ROW);
  if (config !== null && config.owner.isEqual(ctx.sender)) {
    if (!syncs) return;
  } else {
    requireTrustedIssuer(claims, currentConfig(ctx).trustedIssuer);
  }
  if (!syncs) {
    throw refuse(Code.UNAUTHORIZED, 'connecting needs scope sync.subscribe or sync.append');
  }
  admitMember(ctx, scopes);
  if (ctx.connectionId === null) return;
  const pubkey = nostrPubkeyOf(claims);
  const kind = claims['client_kind'];
  ctx.db.active_connection.insert({
    connection_id: ctx.connectionId,
    identity: ctx.sender,
    nostr_pubkey_hex: pubkey ?? '',
    npub: pubkey ? npub(pubkey) : '',
    client_kind: typeof kind === 'string' ? kind : '',
    connected_at: ctx.timestamp,
    last_seen: ctx.timestamp,
    realm: PRESENCE_REALM,
  });
});

/** Presence ends with the connection. */
export const client_disconnected = spacetimedb.clientDisconnected((ctx) => {
  if (ctx.connectionId !== null) ctx.db.active_connection.connection_id.delete(ctx.connectionId);
});

/** Refresh `last_seen` of the caller's connection. */
export const heartbeat = spacetimedb.reducer((ctx) => {
  if (ctx.connectionId === null) return;
  const row = ctx.db.active_connection.connection_id.find(ctx.connectionId);
  if (row !== null) ctx.db.active_connection.connection_id.update({ ...row, last_seen: ctx.timestamp });
});
