// SHA-256 (FIPS 180-4) in plain TypeScript: a SpacetimeDB module has no `crypto` to import, and the payload hash
// and the stream chain (docs/protocol.md) are SHA-256 over exact bytes.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

// The message schedule, reused by every digest (a module runs one call at a time, and sha256 does not re-enter).
const W = new Int32Array(64);
// The padded message, reused the same way (grown for a longer one): no allocation per digest.
let PADDED = new Uint8Array(1024);

/** The 32-byte SHA-256 digest of `data`.
 *
 * Written for V8's int32 arithmetic (`| 0`, an Int32Array schedule, the state in locals): every intermediate
 * stays a small integer instead of a heap number, which makes the sync module's two digests per event (the
 * payload hash and the chain link) ~3x cheaper than a Uint32Array/destructuring form. Bits are bits: the digest
 * is the same. */
export function sha256(data: Uint8Array): Uint8Array {
  const length = data.length;
  const end = ((length + 9 + 63) >> 6) << 6;
  if (end > PADDED.length) PADDED = new Uint8Array(end * 2);
  const padded = PADDED;
  padded.set(data);
  padded.fill(0, length, end);
  padded[length] = 0x80;
  const bitsHigh = Math.floor(length / 0x20000000); // (length * 8) / 2^32
  const bitsLow = (length << 3) >>> 0;
  padded[end - 8] = bitsHigh >>> 24;
  padded[end - 7] = bitsHigh >>> 16;
  padded[end - 6] = bitsHigh >>> 8;
  padded[end - 5] = bitsHigh;
  padded[end - 4] = bitsLow >>> 24;
  padded[end - 3] = bitsLow >>> 16;
  padded[end - 2] = bitsLow >>> 8;
  padded[end - 1] = bitsLow;
  let h0 = 0x6a09e667 | 0, h1 = 0xbb67ae85 | 0, h2 = 0x3c6ef372 | 0, h3 = 0xa54ff53a | 0;
  let h4 = 0x510e527f | 0, h5 = 0x9b05688c | 0, h6 = 0x1f83d9ab | 0, h7 = 0x5be0cd19 | 0;
  const w = W;
  for (let offset = 0; offset < end; offset += 64) {
    for (let i = 0, at = offset; i < 16; i++, at += 4) {
      w[i] = (padded[at] << 24) | (padded[at + 1] << 16) | (padded[at + 2] << 8) | padded[at + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  const out = new Uint8Array(32);
  const state = [h0, h1, h2, h3, h4, h5, h6, h7];
  for (let i = 0; i < 8; i++) {
    const v = state[i];
    out[i * 4] = v >>> 24;
    out[i * 4 + 1] = v >>> 16;
    out[i * 4 + 2] = v >>> 8;
    out[i * 4 + 3] = v;
  }
  return out;
}

const HEX: string[] = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += HEX[bytes[i]];
  return text;
}

// The runtime's encoder (SpacetimeDB's V8 has it: the library itself encodes strings with it); native, and ~5x
// cheaper than the loop below for the sync module's ~250-byte payloads.
declare const TextEncoder: { new (): { encode(input: string): Uint8Array } } | undefined;
const ENCODER = typeof TextEncoder === 'function' ? new TextEncoder() : null;

/** UTF-8 bytes of text (callers refuse lone surrogates first: they have no UTF-8 form). A string with one anyway
 * keeps the loop's bytes (the surrogate's own three), not the encoder's U+FFFD, so the answer never depends on which
 * path ran. */
export function utf8(text: string): Uint8Array {
  const isWellFormed = (text as unknown as { isWellFormed?: () => boolean }).isWellFormed;
  if (ENCODER !== null && isWellFormed !== undefined && isWellFormed.call(text)) return ENCODER.encode(text);
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) size += 1;
    else if (c < 0x800) size += 2;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      size += 4; // a surrogate pair: one code point of four bytes
      i++;
    } else size += 3;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const char of text) {
    const c = char.codePointAt(0)!;
    if (c < 0x80) out[at++] = c;
    else if (c < 0x800) {
      out[at++] = 0xc0 | (c >> 6);
      out[at++] = 0x80 | (c & 63);
    } else if (c < 0x10000) {
      out[at++] = 0xe0 | (c >> 12);
      out[at++] = 0x80 | ((c >> 6) & 63);
      out[at++] = 0x80 | (c & 63);
    } else {
      out[at++] = 0xf0 | (c >> 18);
      out[at++] = 0x80 | ((c >> 12) & 63);
      out[at++] = 0x80 | ((c >> 6) & 63);
      out[at++] = 0x80 | (c & 63);
    }
  }
  return out;
}
