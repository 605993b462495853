// The module runner's TextEncoder: the runtime's own, with an `encode` that is cheap per call (issue 18; measured in
// docs/performance.md "Round 6 — jstwin2").
//
// Why: the library encodes every string it writes with `new TextEncoder().encode(value)` (each string column of
// each row inserted, each string of each index key looked up), and Node 20's native `encode` costs a few µs per call
// whatever the length (a trip into C++ and a fresh buffer): for the sync module's twin that was ~8 calls per event,
// more than its SHA-256. SpacetimeDB's V8 host ships its own TextEncoder too; what a module may rely on is the
// result, and that is the native one's, byte for byte, by construction:
// - a short string of ASCII is its own UTF-8 (one byte per UTF-16 unit), written by a loop;
// - anything else goes through the native `encodeInto` (which, as `encode`, writes U+FFFD for a lone surrogate)
//   into a reused scratch buffer, copied out; text too long for the scratch bound takes the native `encode`.
// It is a subclass, so `instanceof`, `encoding` and `encodeInto` are the native ones.

const NativeTextEncoder = globalThis.TextEncoder;
/** Longest string tried as ASCII first (a longer one is cheaper through `encodeInto` than a JavaScript loop). */
const ASCII_LOOP_MAX = 64;
/** Largest scratch buffer kept (3 bytes per UTF-16 unit at most); longer text takes the native `encode`. */
const SCRATCH_MAX = 1 << 20;
let scratch = new Uint8Array(4096);

export class TextEncoder extends NativeTextEncoder {
  encode(input = '') {
    const text = `${input}`;
    const n = text.length;
    if (n <= ASCII_LOOP_MAX) {
      const out = new Uint8Array(n);
      let i = 0;
      for (; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) break;
        out[i] = c;
      }
      if (i === n) return out;
    }
    const room = n * 3;
    if (room > scratch.length) {
      if (room > SCRATCH_MAX) return super.encode(text);
      scratch = new Uint8Array(Math.min(SCRATCH_MAX, room * 2));
    }
    const { written } = super.encodeInto(text, scratch);
    return scratch.slice(0, written);
  }
}

/** Make this the TextEncoder every script in the runner sees (the module's library included), as the native one
 * is installed: writable, configurable, not enumerable. */
export function installTextEncoder() {
  Object.defineProperty(globalThis, 'TextEncoder', {
    value: TextEncoder,
    writable: true,
    configurable: true,
    enumerable: false,
  });
}
