// The per-stream hash chain, byte for byte as docs/protocol.md "Stream hash chain" and
// src/autopilot_sync/contract/stream_chain.py define it: SHA-256 over BSATN-shaped fields.
import { sha256, toHex, utf8 } from './sha256';

const GENESIS_TAG = 'autopilot-sync/stream-chain/v1';

function str(text: string): Uint8Array {
  const data = utf8(text);
  const out = new Uint8Array(4 + data.length);
  new DataView(out.buffer).setUint32(0, data.length, true);
  out.set(data, 4);
  return out;
}

function u64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The value of one lowercase hex digit (the caller has matched [0-9a-f]). */
function nibble(code: number): number {
  return code <= 0x39 ? code - 0x30 : code - 0x57;
}

function raw(chain: string): Uint8Array {
  const match = /^sha256:([0-9a-f]{64})$/.exec(chain);
  if (match === null) throw new Error(`not a chain value (sha256: and 64 lowercase hex digits): ${chain.slice(0, 80)}`);
  const hex = match[1];
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (nibble(hex.charCodeAt(i * 2)) << 4) | nibble(hex.charCodeAt(i * 2 + 1));
  return out;
}

/** The chain value before seq 1 of an epoch that starts empty. */
export function genesis(streamId: string, epoch: bigint): string {
  return 'sha256:' + toHex(sha256(concat([str(GENESIS_TAG), str(streamId), u64(epoch)])));
}

// The bytes one link hashes, written in place: reused by every call (a module runs one call at a time), grown when
// an event's strings need more. One buffer instead of seven arrays and their concatenation per event.
let linkBuf = new Uint8Array(512);
let linkView = new DataView(linkBuf.buffer);

/** Write `text` as a BSATN string (u32 LE length, UTF-8) at `at`; the offset after it. ASCII (every id, kind and
 * key in practice) is written by a loop; any other text takes `utf8`'s bytes, so the value never depends on the path.
 * The buffer has room for the worst case (3 bytes per UTF-16 unit) already. */
function putStr(text: string, at: number): number {
  const n = text.length;
  let i = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) break;
    linkBuf[at + 4 + i] = c;
  }
  if (i === n) {
    linkView.setUint32(at, n, true);
    return at + 4 + n;
  }
  const data = utf8(text);
  linkView.setUint32(at, data.length, true);
  linkBuf.set(data, at + 4);
  return at + 4 + data.length;
}

/** The chain value of one event, committing to its predecessor's value and the event's identity. */
export function link(
  prev: string,
  streamId: string,
  epoch: bigint,
  seq: bigint,
  kind: string,
  idempotencyKey: string,
  payloadHash: string,
): string {
  const room = 32 + 16 + 16 + 3 * (streamId.length + kind.length + idempotencyKey.length + payloadHash.length);
  if (room > linkBuf.length) {
    linkBuf = new Uint8Array(room * 2);
    linkView = new DataView(linkBuf.buffer);
  }
  linkBuf.set(raw(prev), 0);
  let at = putStr(streamId, 32);
  linkView.setBigUint64(at, epoch, true);
  linkView.setBigUint64(at + 8, seq, true);
  at = putStr(kind, at + 16);
  at = putStr(idempotencyKey, at);
  at = putStr(payloadHash, at);
  return 'sha256:' + toHex(sha256(linkBuf.subarray(0, at)));
}
