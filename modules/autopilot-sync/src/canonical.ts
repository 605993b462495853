// Canonical JSON and the payload hash, exactly as the Python contract defines them
// (src/autopilot_sync/contract/canonical.py): Python's `json.loads`, then `json.dumps(value, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False, allow_nan=False)`, then `sha256:<hex>` of the UTF-8 bytes.
//
// `JSON.parse` cannot be used: it reads every number as a double (Python keeps integers exact and prints floats
// with `repr`), sorts nothing, and reports errors in other words. So this is a small parser that keeps number
// tokens as text and mirrors Python's grammar, error messages and positions (code-point indices).
import { sha256, toHex, utf8 } from './sha256';

/** Text that is not JSON, or a value JSON cannot represent canonically; the message is the Python module's. */
export class CanonicalJsonError extends Error {}

/** How deep the Python reader's recursion lets a payload nest (about 990 levels, as measured on CPython 3.11). */
const PARSE_DEPTH_LIMIT = 990;
/** CPython's default limit on digits in an integer it converts from text (`sys.get_int_max_str_digits`). */
const INT_MAX_STR_DIGITS = 4300;

type Json = null | boolean | { num: string } | string | Json[] | Map<string, Json>;

class DecodeError extends Error {
  constructor(
    readonly msg: string,
    readonly pos: number,
  ) {
    super(msg);
  }
}

class Parser {
  private depth = 0;
  constructor(private readonly s: string) {}

  private ws(i: number): number {
    const s = this.s;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
    return i;
  }

  document(): Json {
    if (this.s.startsWith('\ufeff')) throw new DecodeError('Unexpected UTF-8 BOM (decode using utf-8-sig)', 0);
    const [value, end] = this.value(this.ws(0));
    const after = this.ws(end);
    if (after !== this.s.length) throw new DecodeError('Extra data', after);
    return value;
  }

  private value(i: number): [Json, number] {
    const s = this.s;
    const c = s[i];
    if (c === '"') return this.string(i + 1);
    if (c === '{') return this.nested(() => this.object(i + 1));
    if (c === '[') return this.nested(() => this.array(i + 1));
    if (c === 'n' && s.startsWith('null', i)) return [null, i + 4];
    if (c === 't' && s.startsWith('true', i)) return [true, i + 4];
    if (c === 'f' && s.startsWith('false', i)) return [false, i + 5];
    if (c === 'N' && s.startsWith('NaN', i)) throw new CanonicalJsonError('payload contains NaN, which JSON does not allow');
    if (c === 'I' && s.startsWith('Infinity', i)) {
      throw new CanonicalJsonError('payload contains Infinity, which JSON does not allow');
    }
    if (c === '-' && s.startsWith('-Infinity', i)) {
      throw new CanonicalJsonError('payload contains -Infinity, which JSON does not allow');
    }
    return this.number(i);
  }

  private nested(parse: () => [Json, number]): [Json, number] {
    if (++this.depth > PARSE_DEPTH_LIMIT) {
      throw new CanonicalJsonError('payload is not JSON this reader can parse: nested too deeply');
    }
    const result = parse();
    this.depth--;
    return result;
  }

  private number(start: number): [Json, number] {
    const s = this.s;
    let i = start;
    const digit = (at: number) => at < s.length && s.charCodeAt(at) >= 0x30 && s.charCodeAt(at) <= 0x39;
    if (s[i] === '-') i++;
    if (s[i] === '0') i++;
    else if (digit(i) && s[i] !== '0') while (digit(i)) i++;
    else throw new DecodeError('Expecting value', start);
    let isFloat = false;
    if (s[i] === '.' && digit(i + 1)) {
      isFloat = true;
      i++;
      while (digit(i)) i++;
    }
    if (s[i] === 'e' || s[i] === 'E') {
      let j = i + 1;
      if (s[j] === '+' || s[j] === '-') j++;
      if (digit(j)) {
        isFloat = true;
        while (digit(j)) j++;
        i = j;
      }
    }
    const token = s.slice(start, i);
    if (isFloat) return [{ num: floatRepr(token) }, i];
    const digits = token.startsWith('-') ? token.length - 1 : token.length;
    if (digits > INT_MAX_STR_DIGITS) {
      throw new CanonicalJsonError(
        'payload is not JSON this reader can parse: ' +
          `Exceeds the limit (${INT_MAX_STR_DIGITS} digits) for integer string conversion: value has ${digits} ` +
          'digits; use sys.set_int_max_str_digits() to increase the limit',
      );
    }
    return [{ num: token === '-0' ? '0' : token }, i];
  }

  private string(i: number): [string, number] {
    const s = this.s;
    const begin = i - 1;
    let out = '';
    let chunk = i;
    for (;;) {
      if (i >= s.length) throw new DecodeError('Unterminated string starting at', begin);
      const c = s.charCodeAt(i);
      if (c === 0x22) return [out + s.slice(chunk, i), i + 1];
      if (c < 0x20) throw new DecodeError('Invalid control character at', i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(chunk, i);
      const escape = s[i + 1];
      if (escape === undefined) throw new DecodeError('Unterminated string starting at', begin);
      if (escape !== 'u') {
        const simple = SIMPLE_ESCAPES[escape];
        if (simple === undefined) throw new DecodeError('Invalid \\escape', i);
        out += simple;
        i += 2;
      } else {
        // CPython wants a character after the four digits (the closing quote at least) before it reads them.
        if (i + 6 >= s.length) throw new DecodeError('Invalid \\uXXXX escape', i + 1);
        let unit = this.hex4(i + 2, i + 1);
        i += 6;
        if (unit >= 0xd800 && unit <= 0xdbff && i + 6 < s.length && s[i] === '\\' && s[i + 1] === 'u') {
          const low = this.hex4(i + 2, i + 1);
          if (low >= 0xdc00 && low <= 0xdfff) {
            unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
            i += 6;
          }
        }
        out += String.fromCodePoint(unit);
      }
      chunk = i;
    }
  }

  private hex4(at: number, errorAt: number): number {
    const text = this.s.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(text)) throw new DecodeError('Invalid \\uXXXX escape', errorAt);
    return parseInt(text, 16);
  }

  private array(i: number): [Json, number] {
    const items: Json[] = [];
    i = this.ws(i);
    if (this.s[i] === ']') return [items, i + 1];
    for (;;) {
      const [item, end] = this.value(i);
      items.push(item);
      i = this.ws(end);
      if (this.s[i] === ']') return [items, i + 1];
      if (this.s[i] !== ',') throw new DecodeError("Expecting ',' delimiter", i);
      i = this.ws(i + 1);
    }
  }

  private object(i: number): [Json, number] {
    const members = new Map<string, Json>();
    i = this.ws(i);
    if (this.s[i] === '}') return [members, i + 1];
    for (;;) {
      if (this.s[i] !== '"') throw new DecodeError('Expecting property name enclosed in double quotes', i);
      const [key, afterKey] = this.string(i + 1);
      i = this.ws(afterKey);
      if (this.s[i] !== ':') throw new DecodeError("Expecting ':' delimiter", i);
      const [value, end] = this.value(this.ws(i + 1));
      members.set(key, value);
      i = this.ws(end);
      if (this.s[i] === '}') return [members, i + 1];
      if (this.s[i] !== ',') throw new DecodeError("Expecting ',' delimiter", i);
      i = this.ws(i + 1);
    }
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** Python's `repr(float(token))`: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
function floatRepr(token: string): string {
  const x = Number(token);
  if (!Number.isFinite(x)) {
    throw new CanonicalJsonError('not canonical JSON: Out of range float values are not JSON compliant');
  }
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  // Number#toString gives the shortest digits that round-trip, the closest when several do (as Python's repr).
  const [mantissa, exponentText] = String(Math.abs(x)).split('e');
  const [whole, fraction = ''] = mantissa.split('.');
  let digits = whole + fraction;
  let pointAt = whole.length + Number(exponentText ?? '0'); // value = 0.digits * 10^pointAt
  const leading = digits.length - digits.replace(/^0+/, '').length;
  digits = digits.slice(leading).replace(/0+$/, '');
  pointAt -= leading;
  if (pointAt > 16 || pointAt < -3) {
    const exponent = pointAt - 1;
    const magnitude = Math.abs(exponent);
    const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${head}e${exponent < 0 ? '-' : '+'}${magnitude < 10 ? '0' : ''}${magnitude}`;
  }
  if (pointAt <= 0) return `${sign}0.${'0'.repeat(-pointAt)}${digits}`;
  if (pointAt >= digits.length) return `${sign}${digits}${'0'.repeat(pointAt - digits.length)}.0`;
  return `${sign}${digits.slice(0, pointAt)}.${digits.slice(pointAt)}`;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Code-point order, as Python sorts `str` keys (UTF-16 order differs above U+D7FF). */
function compareCodePoints(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function write(value: Json, out: string[]): void {
  if (value === null) out.push('null');
  else if (value === true) out.push('true');
  else if (value === false) out.push('false');
  else if (typeof value === 'string') out.push(quote(value));
  else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item, i) => {
      if (i > 0) out.push(',');
      write(item, out);
    });
    out.push(']');
  } else if (value instanceof Map) {
    out.push('{');
    [...value.keys()].sort(compareCodePoints).forEach((key, i) => {
      if (i > 0) out.push(',');
      out.push(quote(key), ':');
      write(value.get(key)!, out);
    });
    out.push('}');
  } else out.push(value.num);
}

function quote(text: string): string {
  if (LONE_SURROGATE.test(text)) {
    throw new CanonicalJsonError('payload holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode');
  }
  return JSON.stringify(text); // the same escapes as Python with ensure_ascii=False once no lone surrogate is left
}

function codePointIndex(text: string, utf16Index: number): number {
  return [...text.slice(0, utf16Index)].length;
}

/** Parse JSON text and return its canonical form (CanonicalJsonError when it is not JSON). */
export function canonicalizeText(text: string): string {
  let value: Json;
  try {
    value = new Parser(text).document();
  } catch (e) {
    if (e instanceof DecodeError) {
      throw new CanonicalJsonError(`payload is not JSON: ${e.msg} at ${codePointIndex(text, e.pos)}`);
    }
    throw e;
  }
  const out: string[] = [];
  write(value, out);
  return out.join('');
}

/** `sha256:<hex>` of canonical JSON text. */
export function payloadHash(canonical: string): string {
  return payloadHashOfBytes(utf8(canonical));
}

/** `payloadHash` of canonical JSON already encoded as UTF-8 (the append path has the bytes from its size check). */
export function payloadHashOfBytes(canonicalUtf8: Uint8Array): string {
  return 'sha256:' + toHex(sha256(canonicalUtf8));
}

/** Whether canonical JSON nests arrays/objects deeper than `limit` (as the Python `nests_deeper_than`). */
export function nestsDeeperThan(canonical: string, limit: number): boolean {
  let openers = 0;
  for (const c of canonical) if (c === '[' || c === '{') openers++;
  if (openers <= limit) return false;
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const c of canonical) {
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (++depth > limit) return true;
    } else if (c === ']' || c === '}') depth--;
  }
  return false;
}
