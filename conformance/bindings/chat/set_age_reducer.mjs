// Module bindings for autopilot_sync.examples.chat, hand-written in the exact shape `spacetime generate --lang typescript`
// emits (see templates/basic-ts/src/module_bindings in the SpacetimeDB repository), as plain ESM.

/* eslint-disable */
/* tslint:disable */
import { t as __t } from "spacetimedb";

export default {
  name: __t.string(),
  age: __t.u32(),
};
