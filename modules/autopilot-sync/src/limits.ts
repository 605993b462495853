// Bounds on every string a reducer stores and on payload nesting (src/autopilot_sync/module/limits.py): the same
// defaults, checks, order and messages. The numbers live in the `sync_config` row (config.ts).
import { nestsDeeperThan } from './canonical';
import { Code, refuse } from './errors';
import { utf8 } from './sha256';

export interface SyncLimits {
  max_payload_bytes: bigint;
  max_batch_events: number;
  max_stream_id_bytes: number;
  max_idempotency_key_bytes: number;
  max_kind_bytes: number;
  max_payload_depth: number;
}

/** What a fresh database starts with. */
export const DEFAULT_LIMITS: SyncLimits = {
  max_payload_bytes: 262144n,
  max_batch_events: 1000,
  max_stream_id_bytes: 256,
  max_idempotency_key_bytes: 512,
  max_kind_bytes: 128,
  max_payload_depth: 64,
};

/** Characters as Python counts them (code points). */
export function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** UTF-8 length of text. */
export function utf8Length(text: string): number {
  return utf8(text).length;
}

/** Whether every UTF-16 unit of text is ASCII (every id, key and kind in practice): one loop, no allocation. */
function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Refuse an empty field, one over `limit` UTF-8 bytes, or one that is not valid Unicode. */
export function checkField(name: string, value: string, limit: number): void {
  if (!value) throw refuse(Code.INVALID_EVENT, `${name} must not be empty`);
  if (isAscii(value)) {
    // One code point and one UTF-8 byte per unit, no surrogate: the checks below reduce to this one.
    if (value.length > limit) throw refuse(Code.INVALID_EVENT, `${name} is over ${limit} bytes, the limit`);
    return;
  }
  if (codePoints(value) > limit) throw refuse(Code.INVALID_EVENT, `${name} is over ${limit} bytes, the limit`);
  if (LONE_SURROGATE.test(value)) {
    throw refuse(Code.INVALID_EVENT, `${name} is not valid UTF-8 text (a lone surrogate)`);
  }
  const size = utf8(value).length;
  if (size > limit) throw refuse(Code.INVALID_EVENT, `${name} is ${size} bytes, limit ${limit}`);
}

export function checkEventFields(limits: SyncLimits, streamId: string, idempotencyKey: string, kind: string): void {
  checkField('stream_id', streamId, limits.max_stream_id_bytes);
  checkField('idempotency_key', idempotencyKey, limits.max_idempotency_key_bytes);
  checkField('kind', kind, limits.max_kind_bytes);
}

export function checkStreamId(limits: SyncLimits, streamId: string): void {
  checkField('stream_id', streamId, limits.max_stream_id_bytes);
}

export function checkPayloadDepth(canonical: string, limit: number): void {
  if (nestsDeeperThan(canonical, limit)) {
    throw refuse(Code.INVALID_EVENT, `payload nests deeper than ${limit} levels`);
  }
}
