// Module bindings for the sync module (autopilot_sync.module), hand-written in the exact shape
// `spacetime generate --lang typescript` emits (see ../chat/index.mjs), as plain ESM. Only `sync_event` is bound:
// the scenarios that use these bindings subscribe to nothing else and call no reducer through the SDK.
// Index and constraint names follow the module's RawModuleDefV9.

/* eslint-disable */
/* tslint:disable */
import {
  DbConnectionBuilder as __DbConnectionBuilder,
  DbConnectionImpl as __DbConnectionImpl,
  SubscriptionBuilderImpl as __SubscriptionBuilderImpl,
  convertToAccessorMap as __convertToAccessorMap,
  makeQueryBuilder as __makeQueryBuilder,
  procedures as __procedures,
  reducers as __reducers,
  schema as __schema,
  table as __table,
} from "spacetimedb";

import SyncEventRow from "./sync_event_table.mjs";

const tablesSchema = __schema({
  syncEvent: __table({
    name: 'sync_event',
    indexes: [
      { accessor: 'idempotency_key', name: 'sync_event_idempotency_key_idx_btree', algorithm: 'btree', columns: [
        'idempotencyKey',
      ] },
      { accessor: 'stream_id_seq', name: 'sync_event_stream_id_seq_idx_btree', algorithm: 'btree', columns: [
        'streamId',
        'seq',
      ] },
    ],
    constraints: [
      { name: 'sync_event_idempotency_key_key', constraint: 'unique', columns: ['idempotencyKey'] },
      { name: 'sync_event_stream_id_seq_key', constraint: 'unique', columns: ['streamId', 'seq'] },
    ],
  }, SyncEventRow),
});

const reducersSchema = __reducers();

const proceduresSchema = __procedures();

const REMOTE_MODULE = {
  versionInfo: {
    cliVersion: "2.0.0",
  },
  tables: tablesSchema.schemaType.tables,
  reducers: reducersSchema.reducersType.reducers,
  ...proceduresSchema,
};

/** The tables available in this remote SpacetimeDB module. Each table reference doubles as a query builder. */
export const tables = __makeQueryBuilder(tablesSchema.schemaType);

/** The reducers available in this remote SpacetimeDB module. */
export const reducers = __convertToAccessorMap(reducersSchema.reducersType.reducers);

/** Builder class to configure a new subscription to the remote SpacetimeDB instance. */
export class SubscriptionBuilder extends __SubscriptionBuilderImpl {}

/** Builder class to configure a new database connection to the remote SpacetimeDB instance. */
export class DbConnectionBuilder extends __DbConnectionBuilder {}

/** The typed database connection to manage connections to the remote SpacetimeDB instance. */
export class DbConnection extends __DbConnectionImpl {
  /** Creates a new {@link DbConnectionBuilder} to configure and connect to the remote SpacetimeDB instance. */
  static builder = () => {
    return new DbConnectionBuilder(REMOTE_MODULE, (config) => new DbConnection(config));
  };

  /** Creates a new {@link SubscriptionBuilder} to configure a subscription to the remote SpacetimeDB instance. */
  subscriptionBuilder = () => {
    return new SubscriptionBuilder(this);
  };
}

export { REMOTE_MODULE };
