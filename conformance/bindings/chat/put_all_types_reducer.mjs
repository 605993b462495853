// Module bindings for autopilot_sync.examples.chat, hand-written in the exact shape `spacetime generate --lang typescript`
// emits (see templates/basic-ts/src/module_bindings in the SpacetimeDB repository), as plain ESM.

/* eslint-disable */
/* tslint:disable */
import { t as __t } from "spacetimedb";
import { AllTypes } from "./types.mjs";

export default {
  get row() {
    return AllTypes;
  },
};
