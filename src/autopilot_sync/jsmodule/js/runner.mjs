// Module runner child process (issue 18): runs one SpacetimeDB TypeScript module in its own Node process.
//
// Why a child: a module's exception, infinite loop or runaway allocation must not take the host down. In here an
// exception is caught and answered; a loop is ended by the parent killing this process after its time limit; the
// heap limit (--max-old-space-size) aborts only this process. The parent notices every case on the pipe.
//
// Usage: node --max-old-space-size=N runner.mjs MODULE.js IN_FD OUT_FD SPIN_US BELL_FD
// Frames both ways: u32 LE frame length, u32 LE header length, UTF-8 JSON header, raw body bytes.
// Everything after the module's import is synchronous: a syscall writes a request frame and blocks in readSync
// until the parent answers, exactly as a host function call would block inside V8.

import { readSync, writeSync } from 'node:fs';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { installTextEncoder } from './text_encoder.mjs';

const [modulePath, inFdText, outFdText, spinUsText, bellFdText] = process.argv.slice(2);
// The module gets no `process` (it could signal the host, read its environment or exit): the runner keeps what it
// needs, and the global is removed before the module is imported. Node's built-in modules are refused by the loader
// hooks, so the module reaches the outside only through its `spacetime:sys` host functions, as on SpacetimeDB.
const exitRunner = process.exit.bind(process);
installTextEncoder(); // before anything encodes: the runner's frames and the module's library share it
const IN_FD = Number(inFdText);
const OUT_FD = Number(outFdText);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SLEEP = new Int32Array(new SharedArrayBuffer(4));
const SPIN_MS = Number(spinUsText ?? 0) / 1000;
const BELL_FD = SPIN_MS > 0 && bellFdText !== undefined ? Number(bellFdText) : -1;

// Node 20 lacks these; the library bundle uses isSubsetOf when it builds unique-index views.
if (!Set.prototype.isSubsetOf) {
  Object.defineProperty(Set.prototype, 'isSubsetOf', {
    value(other) {
      for (const item of this) if (!other.has(item)) return false;
      return true;
    },
    writable: true,
    configurable: true,
  });
}
if (!Symbol.dispose) Object.defineProperty(Symbol, 'dispose', { value: Symbol('Symbol.dispose') });

// Bytes read from the parent and not yet used: inBuf[inStart, inEnd). One read usually brings a whole frame.
let inBuf = new Uint8Array(65536);
let inStart = 0;
let inEnd = 0;

// While waiting for the parent, watch its doorbell (a counter it bumps after each frame it writes, in a shared
// memory file read with pread) for up to SPIN_MS before the blocking read: a frame that comes within it costs no
// scheduler wake-up (runner.py `SPIN_US`). A missed or stale ring only means the read blocks, as without a bell.
const bell = new Uint8Array(4);
const bellView = new DataView(bell.buffer);
let bellSeen = 0;
function awaitBell() {
  const stop = performance.now() + SPIN_MS;
  for (;;) {
    readSync(BELL_FD, bell, 0, 4, 0);
    const rung = bellView.getUint32(0, true);
    if (rung !== bellSeen) {
      bellSeen = rung;
      return;
    }
    if (performance.now() >= stop) return;
  }
}

// Make at least `n` unread bytes available in inBuf, reading from the parent as needed.
function fill(n) {
  if (inEnd - inStart >= n) return;
  if (inStart > 0) {
    inBuf.copyWithin(0, inStart, inEnd);
    inEnd -= inStart;
    inStart = 0;
  }
  if (n > inBuf.length) {
    const grown = new Uint8Array(Math.max(n, inBuf.length * 2));
    grown.set(inBuf.subarray(0, inEnd));
    inBuf = grown;
  }
  while (inEnd < n) {
    if (BELL_FD >= 0) awaitBell();
    let r;
    try {
      r = readSync(IN_FD, inBuf, inEnd, inBuf.length - inEnd, null);
    } catch (e) {
      if (e.code === 'EAGAIN') { Atomics.wait(SLEEP, 0, 0, 1); continue; }
      throw e;
    }
    if (r === 0) exitRunner(0); // parent closed the pipe: nothing more to serve
    inEnd += r;
  }
}

function readFrame() {
  fill(8);
  const dv = new DataView(inBuf.buffer, inStart, 8);
  const total = dv.getUint32(0, true);
  const headerLen = dv.getUint32(4, true);
  fill(4 + total);
  const at = inStart + 8;
  const header = JSON.parse(decoder.decode(inBuf.subarray(at, at + headerLen)));
  const body = inBuf.slice(at + headerLen, inStart + 4 + total); // a copy: inBuf is reused by the next read
  inStart += 4 + total;
  if (inStart === inEnd) inStart = inEnd = 0;
  return { header, body };
}

function makeFrame(header, body) {
  const h = encoder.encode(JSON.stringify(header));
  const frame = new Uint8Array(8 + h.length + body.length);
  const dv = new DataView(frame.buffer);
  dv.setUint32(0, 4 + h.length + body.length, true);
  dv.setUint32(4, h.length, true);
  frame.set(h, 8);
  frame.set(body, 8 + h.length);
  return frame;
}

// One-way syscalls not yet written (one-way inserts, see `datastore_insert_bsatn`, and lookups sent as empty, see
// `pointScan`): they go out as ONE `sysn` frame in one write with the next frame that is written, so the host wakes
// once for them and the request that follows, and reads and parses one header for all of them. In order, always.
// The header's `ops` is flat: per syscall its kind, its ids (one; two for an update) and its body length; the bodies
// follow back to back.
const OP_INSERT = 0; // datastore_insert_bsatn(table id, row)
const OP_EMPTY_SCAN = 1; // datastore_index_scan_point_bsatn(index id, key), the module told it found nothing
const OP_UPDATE = 2; // datastore_update_bsatn(table id, index id, row)
let queuedOps = [];
let queuedBody = new Uint8Array(65536);
let queuedBytes = 0;
const QUEUED_MAX = 256 * 1024;

function queueOp(kind, id, bytes, indexId = -1) {
  // A copy: the library reuses the row buffer it hands a syscall.
  if (queuedBytes + bytes.length > queuedBody.length) {
    const grown = new Uint8Array(Math.max(queuedBytes + bytes.length, queuedBody.length * 2));
    grown.set(queuedBody.subarray(0, queuedBytes));
    queuedBody = grown;
  }
  queuedBody.set(bytes, queuedBytes);
  queuedBytes += bytes.length;
  if (kind === OP_UPDATE) queuedOps.push(kind, id, indexId, bytes.length);
  else queuedOps.push(kind, id, bytes.length);
  if (queuedBytes >= QUEUED_MAX) writeBytes(takeQueued(null));
}

// The queued syscalls as one `sysn` frame, followed by `frame` (when not null) in the same buffer.
function takeQueued(frame) {
  const h = encoder.encode(JSON.stringify({ t: 'sysn', ops: queuedOps }));
  const own = 8 + h.length + queuedBytes;
  const out = new Uint8Array(own + (frame === null ? 0 : frame.length));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 4 + h.length + queuedBytes, true);
  dv.setUint32(4, h.length, true);
  out.set(h, 8);
  out.set(queuedBody.subarray(0, queuedBytes), 8 + h.length);
  if (frame !== null) out.set(frame, own);
  queuedOps = [];
  queuedBytes = 0;
  return out;
}

function writeFrame(header, body = new Uint8Array(0)) {
  const frame = makeFrame(header, body);
  writeBytes(queuedOps.length > 0 ? takeQueued(frame) : frame);
}

function writeBytes(frame) {
  let sent = 0;
  while (sent < frame.length) {
    try {
      sent += writeSync(OUT_FD, frame, sent, frame.length - sent);
    } catch (e) {
      if (e.code === 'EAGAIN') { Atomics.wait(SLEEP, 0, 0, 1); continue; }
      throw e;
    }
  }
}

let hooks = null;

// One synchronous round trip to the parent. A refusal comes back as the library's errno class, as in SpacetimeDB.
function syscall(fn, args = [], body) {
  writeFrame({ t: 'sys', fn, a: args }, body);
  const { header, body: reply } = readFrame();
  if (header.t === 'errno') throw errnoError(header.code, header.msg ?? `syscall ${fn} failed with errno ${header.code}`);
  return { v: header.v, body: reply };
}

// A one-way frame: the host acts on it and sends no answer (console output needs none; saves a round trip).
function notify(header) {
  writeFrame(header);
}

function errnoError(code, msg) {
  const Ctor = hooks ? hooks.__get_error_constructor__(code) : Error;
  return new Ctor(msg);
}

// Table and index ids are stable for the life of the module, so each name crosses the pipe once per runner.
const tableIds = new Map();
const indexIds = new Map();
function cachedId(cache, fn, name) {
  let id = cache.get(name);
  if (id === undefined) {
    id = syscall(fn, [name]).v;
    cache.set(name, id);
  }
  return id;
}

// Console timers live in the runner: starting one needs no host, ending one logs its duration (one-way).
const timers = new Map();
let nextTimer = 1;

// The bytes the library hands a syscall: `len` bytes at the start of an ArrayBuffer (or a typed array view).
function bytesOf(buffer, len) {
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, len ?? buffer.byteLength);
  return new Uint8Array(buffer, 0, len ?? buffer.byteLength);
}

// Generated columns (auto-increment) come back as BSATN and are written over the row buffer, as SpacetimeDB does.
function writeBack(buffer, body) {
  bytesOf(buffer).set(body);
  return body.length;
}

function scanArgs(buffer, prefixLen, prefixElems, rstartLen, rendLen) {
  return [[prefixLen, prefixElems, rstartLen, rendLen], bytesOf(buffer, prefixLen + rstartLen + rendLen)];
}

// Scans ask for their rows inline ('rows' as the last argument): a small result comes back in the scan's reply and
// the library's iterator calls are answered here, with the host's rules (whole rows only, `__buffer_too_small__`
// with the next row's size, the final batch flagged), saving one round trip per scan. Ids of these iterators start
// at LOCAL_ITER (host ids count from 1 per call); they are dropped when the call ends, as the host's are.
const WITH_ROWS = 'rows';
const LOCAL_ITER = 0x40000000;
const NO_SUCH_ITER = 6;
const localIters = new Map();
let nextLocalIter = LOCAL_ITER;
const NO_TABLES = new Set();
let oneWay = NO_TABLES; // tables whose inserts go one way in the current reducer call
// The current reducer call's caller's claims (JSON text), sent with the call so `get_jwt_payload` for the caller's
// own connection costs no round trip; null outside a call, or when the caller has none (then the host is asked).
let callJwt = null;
let callConn = '0';

// Point lookups sent one way, as if empty: in a call with one-way inserts, a point scan of an index whose last
// SPECULATE_AFTER answered scans were all empty (the sync module's idempotency check) is queued like an insert and
// the module goes on with no rows. The host runs the scan in order with the queued inserts; if it finds a row, the
// run is void and the call runs again with every syscall answered (as a failed one-way insert does), so the module
// never acts on a wrong answer. The host lists in `ns` the indexes where that happened: never sent one way again.
const SPECULATE_AFTER = 8;
const emptyStreak = new Map();
let noSpeculate = NO_TABLES;
const NO_ROWS = { v: { rows: [] }, body: new Uint8Array(0) };

function pointScan(indexId, key) {
  if (oneWay !== NO_TABLES && !noSpeculate.has(indexId) && (emptyStreak.get(indexId) ?? 0) >= SPECULATE_AFTER) {
    queueOp(OP_EMPTY_SCAN, indexId, key);
    return scanResult(NO_ROWS);
  }
  const reply = syscall('datastore_index_scan_point_bsatn', [indexId, WITH_ROWS], key);
  const empty = typeof reply.v !== 'number' && reply.v.rows.length === 0;
  emptyStreak.set(indexId, empty ? (emptyStreak.get(indexId) ?? 0) + 1 : 0);
  return scanResult(reply);
}

function scanResult({ v, body }) {
  if (typeof v === 'number') return v; // a host iterator: the result was too big to inline
  const rows = [];
  let at = 0;
  for (const size of v.rows) {
    rows.push(body.subarray(at, at + size));
    at += size;
  }
  const id = nextLocalIter++;
  localIters.set(id, rows);
  return id;
}

function advanceLocal(iter, buffer, rows) {
  const out = bytesOf(buffer);
  let used = 0;
  let taken = 0;
  while (taken < rows.length && used + rows[taken].length <= out.length) {
    out.set(rows[taken], used);
    used += rows[taken].length;
    taken++;
  }
  if (taken === 0 && rows.length > 0) throw { __buffer_too_small__: rows[0].length };
  rows.splice(0, taken);
  if (rows.length > 0) return used;
  localIters.delete(iter);
  return -used;
}

const moduleHooks = Symbol('moduleHooks');
const sys = {
  moduleHooks,
  register_hooks(h) { hooks = h; },
  table_id_from_name: (name) => cachedId(tableIds, 'table_id_from_name', name),
  index_id_from_name: (name) => cachedId(indexIds, 'index_id_from_name', name),
  datastore_table_row_count: (tableId) => BigInt(syscall('datastore_table_row_count', [tableId]).v),
  datastore_table_scan_bsatn: (tableId) => scanResult(syscall('datastore_table_scan_bsatn', [tableId, WITH_ROWS])),
  datastore_index_scan_point_bsatn: (indexId, point, len) => pointScan(indexId, bytesOf(point, len)),
  datastore_index_scan_range_bsatn(indexId, buffer, prefixLen, prefixElems, rstartLen, rendLen) {
    const [args, body] = scanArgs(buffer, prefixLen, prefixElems, rstartLen, rendLen);
    return scanResult(syscall('datastore_index_scan_range_bsatn', [indexId, ...args, WITH_ROWS], body));
  },
  row_iter_bsatn_advance(iter, buffer) {
    if (iter >= LOCAL_ITER) {
      const rows = localIters.get(iter);
      if (rows === undefined) throw errnoError(NO_SUCH_ITER, `no such iterator: ${iter}`);
      return advanceLocal(iter, buffer, rows);
    }
    const { v, body } = syscall('row_iter_bsatn_advance', [iter, buffer.byteLength]);
    // The library grows its buffer and retries when the next row does not fit, as with SpacetimeDB's host.
    if (v.too_small) throw { __buffer_too_small__: v.too_small };
    bytesOf(buffer).set(body);
    return v.done ? -body.length : body.length;
  },
  row_iter_bsatn_close(iter) {
    if (iter < LOCAL_ITER) syscall('row_iter_bsatn_close', [iter]);
    else if (!localIters.delete(iter)) throw errnoError(NO_SUCH_ITER, `no such iterator: ${iter}`);
  },
  datastore_insert_bsatn(tableId, buffer, len) {
    // A table without generated columns whose inserts the host lets go one way (the call's `ow`): the library reads
    // nothing back, so the row is queued and the module goes on. A failed one-way insert makes the host run the whole
    // call again with every insert answered (JsModule `call_reducer`), so the module still sees the error in place.
    if (oneWay.has(tableId)) {
      queueOp(OP_INSERT, tableId, bytesOf(buffer, len));
      return 0;
    }
    return writeBack(buffer, syscall('datastore_insert_bsatn', [tableId], bytesOf(buffer, len)).body);
  },
  datastore_update_bsatn(tableId, indexId, buffer, len) {
    // As an insert: a table without generated columns gets nothing back, so the update goes one way; a failed one
    // (no such row, a unique violation) voids the run, which is then run again with every syscall answered.
    if (oneWay.has(tableId)) {
      queueOp(OP_UPDATE, tableId, bytesOf(buffer, len), indexId);
      return 0;
    }
    return writeBack(buffer, syscall('datastore_update_bsatn', [tableId, indexId], bytesOf(buffer, len)).body);
  },
  datastore_delete_by_index_scan_point_bsatn: (indexId, point, len) =>
    syscall('datastore_delete_by_index_scan_point_bsatn', [indexId], bytesOf(point, len)).v,
  datastore_delete_by_index_scan_range_bsatn(indexId, buffer, prefixLen, prefixElems, rstartLen, rendLen) {
    const [args, body] = scanArgs(buffer, prefixLen, prefixElems, rstartLen, rendLen);
    return syscall('datastore_delete_by_index_scan_range_bsatn', [indexId, ...args], body).v;
  },
  datastore_delete_all_by_eq_bsatn: (tableId, relation, len) =>
    syscall('datastore_delete_all_by_eq_bsatn', [tableId], bytesOf(relation, len)).v,
  datastore_clear: (tableId) => BigInt(syscall('datastore_clear', [tableId]).v),
  volatile_nonatomic_schedule_immediate(reducerName, args) {
    syscall('volatile_nonatomic_schedule_immediate', [String(reducerName)], bytesOf(args));
  },
  console_log: (level, message) => { notify({ t: 'log', lvl: level, msg: String(message) }); },
  console_timer_start(name) {
    const id = nextTimer++;
    timers.set(id, { name: String(name), start: performance.now() });
    return id;
  },
  console_timer_end(spanId) {
    const span = timers.get(spanId);
    if (span === undefined) throw errnoError(7, `no such console timer: ${spanId}`);
    timers.delete(spanId);
    const ms = performance.now() - span.start;
    notify({ t: 'log', lvl: 2, msg: `Timing span "${span.name}": ${ms.toFixed(3)}ms` });
  },
  identity: () => BigInt(syscall('identity').v),
  get_jwt_payload(connectionId) {
    // The caller's own claims came with the call (`jwt`): answered here, as the host would (anything else asks it).
    if (callJwt !== null && String(connectionId) === callConn) return encoder.encode(callJwt);
    return syscall('get_jwt_payload', [String(connectionId)]).body;
  },
  procedure_http_request: () => syscall('procedure_http_request').v,
  procedure_start_mut_tx: () => BigInt(syscall('procedure_start_mut_tx').v),
  procedure_commit_mut_tx: () => { syscall('procedure_commit_mut_tx'); },
  procedure_abort_mut_tx: () => { syscall('procedure_abort_mut_tx'); },
};
globalThis.__stdbSys = sys;

function describeError(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function serve() {
  for (;;) {
    const { header, body } = readFrame();
    try {
      if (header.t === 'describe') {
        writeFrame({ t: 'ok' }, hooks.__describe_module__());
      } else if (header.t === 'call') {
        const args = new DataView(body.buffer, body.byteOffset, body.byteLength);
        oneWay = header.ow ? new Set(header.ow) : NO_TABLES;
        callJwt = typeof header.jwt === 'string' ? header.jwt : null;
        callConn = header.conn;
        noSpeculate = header.ns ? new Set(header.ns) : NO_TABLES;
        try {
          hooks.__call_reducer__(header.id, BigInt(header.sender), BigInt(header.conn), BigInt(header.ts), args);
        } finally {
          oneWay = NO_TABLES;
          noSpeculate = NO_TABLES;
          callJwt = null;
          localIters.clear();
          nextLocalIter = LOCAL_ITER;
        }
        writeFrame({ t: 'ok' });
      } else if (header.t === 'proc') {
        // A procedure: runs outside any transaction; `ctx.withTx` opens one through procedure_start_mut_tx.
        let ret;
        try {
          ret = hooks.__call_procedure__(header.id, BigInt(header.sender), BigInt(header.conn), BigInt(header.ts), body);
        } finally {
          localIters.clear();
          nextLocalIter = LOCAL_ITER;
        }
        writeFrame({ t: 'ok' }, ret);
      } else if (header.t === 'view') {
        // A view: a read-only function of the caller (`__call_view__`) or of nobody (`__call_view_anon__`); the
        // answer is the library's ViewResultHeader followed by the rows (or a query to run instead).
        let ret;
        try {
          ret = header.anon
            ? hooks.__call_view_anon__(header.id, body)
            : hooks.__call_view__(header.id, BigInt(header.sender), body);
        } finally {
          localIters.clear();
          nextLocalIter = LOCAL_ITER;
        }
        writeFrame({ t: 'ok' }, ret instanceof Uint8Array ? ret : ret.data);
      } else if (header.t === 'ping') {
        writeFrame({ t: 'ok' });
      } else {
        writeFrame({ t: 'err', kind: 'protocol', msg: `unknown request ${JSON.stringify(header.t)}` });
      }
    } catch (e) {
      // A SenderError is reported by its message alone, as SpacetimeDB's V8 host does (`String(exc.message)`).
      if (hooks && e instanceof hooks.__sender_error_class__) writeFrame({ t: 'err', kind: 'sender', msg: String(e.message) });
      else writeFrame({ t: 'err', kind: 'panic', msg: describeError(e) });
    }
  }
}

const entry = pathToFileURL(modulePath).href;
register('./hooks.mjs', import.meta.url, { data: { entry } });
delete globalThis.process;
delete globalThis.fetch; // no network either (SpacetimeDB reducers have none)
try {
  const ns = await import(entry);
  if (hooks === null) {
    const provider = ns.default;
    if (provider === undefined || typeof provider[moduleHooks] !== 'function') {
      throw new Error('the module neither called register_hooks nor default-exports a schema with module hooks');
    }
    hooks = provider[moduleHooks](ns);
  }
} catch (e) {
  writeFrame({ t: 'fatal', msg: describeError(e) });
  exitRunner(1);
}
writeFrame({ t: 'ready' });
serve();
