// Authorization from the caller's JWT claims as the library exposes them (`ctx.senderAuth.jwt`): scopes, stream
// patterns, the trusted issuer (src/autopilot_sync/contract/scopes.py, src/autopilot_sync/module/auth.py).
//
// A real SpacetimeDB accepts a token from any OIDC issuer, so the claims alone prove nothing about who granted the
// scopes: the module compares the token's `iss` with the issuer the owner configured (`set_trusted_issuer`).
import type { Ctx } from './context';
import { Code, refuse } from './errors';

export const Scope = {
  SUBSCRIBE: 'sync.subscribe',
  CHECKPOINT_WRITE: 'sync.checkpoint.write',
  APPEND: 'sync.append',
  ADMIN: 'sync.admin',
} as const;

/** The caller's verified claims (an empty object for a call without a token). */
export function claimsOf(ctx: Ctx): Record<string, unknown> {
  const jwt = ctx.senderAuth.jwt;
  return jwt ? (jwt.fullPayload as Record<string, unknown>) : {};
}

/** Scopes from the `scopes` claim (array or space-separated), falling back to OAuth's `scope`. */
export function scopesOf(claims: Record<string, unknown>): Set<string> {
  const raw = 'scopes' in claims ? claims['scopes'] : claims['scope'];
  if (typeof raw === 'string') return new Set(raw.split(/\s+/).filter((s) => s !== ''));
  if (Array.isArray(raw)) return new Set(raw.map((item) => pyStr(item)));
  return new Set();
}

/** `str(value)` for the JSON values a claim can hold, as the Python module compares them. */
function pyStr(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  return String(value);
}

/** Whether the `streams` claim covers a stream: ids, `prefix*` or `*` (absent = all streams). */
export function streamAllowed(claims: Record<string, unknown>, streamId: string): boolean {
  if (!('streams' in claims) || claims['streams'] === null) return true;
  let patterns = claims['streams'];
  if (typeof patterns === 'string') patterns = [patterns];
  if (!Array.isArray(patterns)) return false;
  for (const pattern of patterns) {
    const text = pyStr(pattern);
    if (text === '*' || text === streamId || (text.endsWith('*') && streamId.startsWith(text.slice(0, -1)))) {
      return true;
    }
  }
  return false;
}

export function requireScope(claims: Record<string, unknown>, scope: string, action: string): void {
  if (!scopesOf(claims).has(scope)) throw refuse(Code.UNAUTHORIZED, `${action} needs scope ${scope}`);
}

export function requireStream(claims: Record<string, unknown>, streamId: string): void {
  if (!streamAllowed(claims, streamId)) throw refuse(Code.FORBIDDEN_STREAM, `token does not cover stream ${streamId}`);
}

/** The refusal of every claim-bearing call while the database trusts no issuer (the same text as the Python module). */
export const NO_ISSUER_YET = 'this database trusts no token issuer yet: the owner calls set_trusted_issuer';

/** Refuse every token until the owner names an issuer (fail closed), then every token of another issuer. */
export function requireTrustedIssuer(claims: Record<string, unknown>, trusted: string): void {
  if (trusted === '') throw refuse(Code.ISSUER_NOT_CONFIGURED, NO_ISSUER_YET);
  const issuer = claims['iss'];
  if (issuer !== trusted) {
    const shown = typeof issuer === 'string' ? [...issuer].slice(0, 100).join('') : '(none)';
    throw refuse(Code.UNAUTHORIZED, `token issuer ${shown} is not the issuer this database trusts`);
  }
}
