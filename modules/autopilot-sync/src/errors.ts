// The sync module's refusal: a `SenderError` whose message starts with `<code>: `, the same codes and texts as the
// Python module (src/autopilot_sync/contract/codes.py, docs/protocol.md), so SDKs, the runtime's retry classes and
// desktops classify failures of either module the same way.
import { SenderError } from 'spacetimedb/server';

export const Code = {
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN_STREAM: 'forbidden_stream',
  INVALID_EVENT: 'invalid_event',
  PAYLOAD_HASH_MISMATCH: 'payload_hash_mismatch',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  BATCH_TOO_LARGE: 'batch_too_large',
  IDEMPOTENCY_CONFLICT: 'idempotency_conflict',
  SEQUENCE_CONFLICT: 'sequence_conflict',
  UNKNOWN_STREAM: 'unknown_stream',
  CHECKPOINT_BEYOND_HEAD: 'checkpoint_beyond_head',
  CHECKPOINT_REGRESSION: 'checkpoint_regression',
  INVALID_TRIM: 'invalid_trim',
  INVALID_LIMITS: 'invalid_limits',
  ISSUER_NOT_CONFIGURED: 'issuer_not_configured',
} as const;

export type SyncErrorCode = (typeof Code)[keyof typeof Code];

/** A reducer refusal with a code: the caller's fault, reported as `<code>: <detail>`. */
export function refuse(code: SyncErrorCode, detail: string): SenderError {
  return new SenderError(`${code}: ${detail}`);
}
