// The official SpacetimeDB TypeScript SDK as a judge of our BSATN bytes.
//
// A long-running process: one JSON request per line on stdin, one JSON answer per line on stdout. Only the SDK's own
// BSATN machinery decodes and encodes (AlgebraicType.makeSerializer/makeDeserializer, BinaryReader, BinaryWriter, t).
//
// Requests (an optional "id" is echoed back):
//   {"op":"value","type":<SATS-JSON AlgebraicType>,"hex":"..."}
//   {"op":"client_message","hex":"..."}  {"op":"server_message","hex":"..."}
// Answers: {"hex": <the SDK's re-encoding of what it decoded>, "value": <JSON rendering of the decoded JS value>}
// or {"error": "..."}. Rendering: bigint -> decimal string; Uint8Array -> {"bytes": hex}; undefined/null -> null;
// non-finite numbers -> {"float": "NaN"|"Infinity"|"-Infinity"}; objects (including Identity, Timestamp, ...) ->
// their own enumerable fields; arrays -> arrays.
//
// The SDK does not export its message types, so the v2 ClientMessage/ServerMessage shapes are declared below with
// t.enum/t.object, field order read from crates/client-api-messages/src/websocket/v2.rs and common.rs.

import readline from 'node:readline';
import { AlgebraicType, BinaryReader, BinaryWriter, t } from 'spacetimedb';

// ----- SATS-JSON type -> SDK AlgebraicType -----

function optionName(name, index) {
  // Unnamed fields get a positional name: the SDK compiles field names into property accesses.
  if (name && typeof name === 'object' && 'some' in name) return name.some;
  return `_${index}`;
}

function fromSatsJson(ty) {
  const keys = Object.keys(ty);
  if (keys.length !== 1) throw new Error(`type must have exactly one key: ${JSON.stringify(ty)}`);
  const key = keys[0];
  const body = ty[key];
  switch (key) {
    case 'Product':
      return AlgebraicType.Product({
        elements: body.elements.map((e, i) => ({
          name: optionName(e.name, i),
          algebraicType: fromSatsJson(e.algebraic_type),
        })),
      });
    case 'Sum':
      return AlgebraicType.Sum({
        variants: body.variants.map((v, i) => ({
          name: optionName(v.name, i),
          algebraicType: fromSatsJson(v.algebraic_type),
        })),
      });
    case 'Array':
      return AlgebraicType.Array(fromSatsJson(body));
    case 'Ref':
      throw new Error('Ref types need a typespace, which the judge does not take');
    default:
      if (!(key in AlgebraicType) || typeof AlgebraicType[key] !== 'object') {
        throw new Error(`unknown algebraic type ${key}`);
      }
      return AlgebraicType[key];
  }
}

// ----- v2 message shapes, declared from the Rust sources -----

const QuerySetId = t.object('QuerySetId', { id: t.u32() });

const RowSizeHint = t.enum('RowSizeHint', {
  FixedSize: t.u16(),
  RowOffsets: t.array(t.u64()),
});
const BsatnRowList = t.object('BsatnRowList', {
  size_hint: RowSizeHint,
  rows_data: t.byteArray(),
});
const SingleTableRows = t.object('SingleTableRows', { table: t.string(), rows: BsatnRowList });
const QueryRows = t.object('QueryRows', { tables: t.array(SingleTableRows) });
const PersistentTableRows = t.object('PersistentTableRows', { inserts: BsatnRowList, deletes: BsatnRowList });
const EventTableRows = t.object('EventTableRows', { events: BsatnRowList });
const TableUpdateRows = t.enum('TableUpdateRows', {
  PersistentTable: PersistentTableRows,
  EventTable: EventTableRows,
});
const TableUpdate = t.object('TableUpdate', { table_name: t.string(), rows: t.array(TableUpdateRows) });
const QuerySetUpdate = t.object('QuerySetUpdate', { query_set_id: QuerySetId, tables: t.array(TableUpdate) });
const TransactionUpdate = t.object('TransactionUpdate', { query_sets: t.array(QuerySetUpdate) });

const ClientMessage = t.enum('ClientMessage', {
  Subscribe: t.object('Subscribe', {
    request_id: t.u32(),
    query_set_id: QuerySetId,
    query_strings: t.array(t.string()),
  }),
  Unsubscribe: t.object('Unsubscribe', {
    request_id: t.u32(),
    query_set_id: QuerySetId,
    flags: t.enum('UnsubscribeFlags', { Default: t.unit(), SendDroppedRows: t.unit() }),
  }),
  OneOffQuery: t.object('OneOffQuery', { request_id: t.u32(), query_string: t.string() }),
  CallReducer: t.object('CallReducer', {
    request_id: t.u32(),
    flags: t.u8(),
    reducer: t.string(),
    args: t.byteArray(),
  }),
  CallProcedure: t.object('CallProcedure', {
    request_id: t.u32(),
    flags: t.u8(),
    procedure: t.string(),
    args: t.byteArray(),
  }),
});

// `Result<QueryRows, Box<str>>` is declared as a plain two-variant enum with the same bytes, not `t.result`:
// the SDK 2.10.1 serializer for ok/err sums encodes the err arm with the ok arm's type (a bug upstream), which
// would make the judge's re-encoding wrong rather than ours.
const OneOffResult = t.enum('OneOffResult', { Ok: QueryRows, Err: t.string() });

const ServerMessage = t.enum('ServerMessage', {
  InitialConnection: t.object('InitialConnection', {
    identity: t.identity(),
    connection_id: t.connectionId(),
    token: t.string(),
  }),
  SubscribeApplied: t.object('SubscribeApplied', {
    request_id: t.u32(),
    query_set_id: QuerySetId,
    rows: QueryRows,
  }),
  UnsubscribeApplied: t.object('UnsubscribeApplied', {
    request_id: t.u32(),
    query_set_id: QuerySetId,
    rows: t.option(QueryRows),
  }),
  SubscriptionError: t.object('SubscriptionError', {
    request_id: t.option(t.u32()),
    query_set_id: QuerySetId,
    error: t.string(),
  }),
  TransactionUpdate,
  OneOffQueryResult: t.object('OneOffQueryResult', { request_id: t.u32(), result: OneOffResult }),
  ReducerResult: t.object('ReducerResult', {
    request_id: t.u32(),
    timestamp: t.timestamp(),
    result: t.enum('ReducerOutcome', {
      Ok: t.object('ReducerOk', { ret_value: t.byteArray(), transaction_update: TransactionUpdate }),
      OkEmpty: t.unit(),
      Err: t.byteArray(),
      InternalError: t.string(),
    }),
  }),
  ProcedureResult: t.object('ProcedureResult', {
    status: t.enum('ProcedureStatus', { Returned: t.byteArray(), InternalError: t.string() }),
    timestamp: t.timestamp(),
    total_host_execution_duration: t.timeDuration(),
    request_id: t.u32(),
  }),
});

// ----- decode, re-encode, render -----

function fromHex(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) {
    throw new Error('hex must be an even-length hex string');
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function render(value) {
  if (value === undefined || value === null) return null;
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
      return Number.isFinite(value) ? value : { float: String(value) };
    case 'boolean':
    case 'string':
      return value;
    default:
      break;
  }
  if (value instanceof Uint8Array) return { bytes: toHex(value) };
  if (Array.isArray(value)) return value.map(render);
  const out = {};
  for (const key of Object.keys(value)) out[key] = render(value[key]);
  return out;
}

function roundTrip(serialize, deserialize, hex) {
  const reader = new BinaryReader(fromHex(hex));
  const value = deserialize(reader);
  if (reader.remaining !== 0) throw new Error(`${reader.remaining} trailing bytes after the value`);
  const writer = new BinaryWriter(64);
  serialize(writer, value);
  return { hex: toHex(writer.getBuffer()), value: render(value) };
}

function handle(request) {
  switch (request.op) {
    case 'value': {
      const ty = fromSatsJson(request.type);
      return roundTrip(AlgebraicType.makeSerializer(ty), AlgebraicType.makeDeserializer(ty), request.hex);
    }
    case 'client_message':
      return roundTrip(
        (w, v) => ClientMessage.serialize(w, v),
        (r) => ClientMessage.deserialize(r),
        request.hex,
      );
    case 'server_message':
      return roundTrip(
        (w, v) => ServerMessage.serialize(w, v),
        (r) => ServerMessage.deserialize(r),
        request.hex,
      );
    case 'ping':
      return { pong: true };
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}`);
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  let id;
  try {
    const request = JSON.parse(line);
    id = request.id;
    answer = handle(request);
  } catch (err) {
    // The SDK sometimes throws plain strings, so render whatever was thrown.
    answer = { error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
  if (id !== undefined) answer.id = id;
  process.stdout.write(JSON.stringify(answer) + '\n');
}
