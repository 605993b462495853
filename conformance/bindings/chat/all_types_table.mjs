// Module bindings for autopilot_sync.examples.chat, hand-written in the exact shape `spacetime generate --lang typescript`
// emits (see templates/basic-ts/src/module_bindings in the SpacetimeDB repository), as plain ESM.

/* eslint-disable */
/* tslint:disable */
import { t as __t } from "spacetimedb";

export default __t.row({
  id: __t.u32().primaryKey(),
  b: __t.bool(),
  i8: __t.i8(),
  u8: __t.u8(),
  i16: __t.i16(),
  u16: __t.u16(),
  i32: __t.i32(),
  u32: __t.u32(),
  i64: __t.i64(),
  u64: __t.u64(),
  i128: __t.i128(),
  u128: __t.u128(),
  i256: __t.i256(),
  u256: __t.u256(),
  f32: __t.f32(),
  f64: __t.f64(),
  s: __t.string(),
  bytes: __t.byteArray(),
  list: __t.array(__t.i32()),
  opt: __t.option(__t.string()),
  who: __t.identity(),
  conn: __t.connectionId(),
  ts: __t.timestamp(),
  dur: __t.timeDuration(),
});
