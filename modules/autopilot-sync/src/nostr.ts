// The Nostr key a control-issued token carries as its subject: 64 lowercase hex digits that are the x coordinate of
// a secp256k1 point (as the Python `PublicKey` checks), shown in presence as hex and as NIP-19 `npub`.

const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  base %= modulus;
  while (exponent > 0n) {
    if (exponent & 1n) result = (result * base) % modulus;
    base = (base * base) % modulus;
    exponent >>= 1n;
  }
  return result;
}

/** Whether `x` is the x coordinate of a point on secp256k1 (BIP-340 `lift_x` succeeds). */
function onCurve(x: bigint): boolean {
  if (x >= P) return false;
  const rhs = (modPow(x, 3n, P) + 7n) % P;
  return rhs === 0n || modPow(rhs, (P - 1n) / 2n, P) === 1n;
}

/** The key's hex when the subject is a valid x-only public key, else null (other tokens, other subjects). */
export function nostrPubkeyOf(claims: Record<string, unknown>): string | null {
  const subject = claims['sub'];
  if (typeof subject !== 'string' || !/^[0-9a-f]{64}$/.test(subject)) return null;
  return onCurve(BigInt('0x' + subject)) ? subject : null;
}

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const value of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ value;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i];
  }
  return chk;
}

/** NIP-19 `npub1…` (bech32, not bech32m) of a 64-hex-digit key. */
export function npub(hex: string): string {
  const bytes = hex.match(/../g)!.map((pair) => parseInt(pair, 16));
  const words: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = ((acc << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((acc >>> bits) & 31);
    }
  }
  if (bits > 0) words.push((acc << (5 - bits)) & 31);
  const hrp = 'npub';
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  const mod = polymod([...expanded, ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return hrp + '1' + [...words, ...checksum].map((w) => CHARSET[w]).join('');
}
