// Module bindings for autopilot_sync.examples.chat, hand-written in the exact shape `spacetime generate --lang typescript`
// emits (see templates/basic-ts/src/module_bindings in the SpacetimeDB repository), as plain ESM: the TypeScript-only
// parts (type aliases, `satisfies`) are left out, every runtime value is the same.
//
// Tables and reducers are listed in alphabetical order, as the generator does; lifecycle reducers (client_connected,
// client_disconnected) are not invokable and so are not emitted. Index and constraint names follow the module's
// RawModuleDefV9 (`GET /v1/database/chat/schema?version=9`).

/* eslint-disable */
/* tslint:disable */
import {
  DbConnectionBuilder as __DbConnectionBuilder,
  DbConnectionImpl as __DbConnectionImpl,
  SubscriptionBuilderImpl as __SubscriptionBuilderImpl,
  convertToAccessorMap as __convertToAccessorMap,
  makeQueryBuilder as __makeQueryBuilder,
  procedures as __procedures,
  reducerSchema as __reducerSchema,
  reducers as __reducers,
  schema as __schema,
  table as __table,
} from "spacetimedb";

// Import all reducer arg schemas
import AddPeopleReducer from "./add_people_reducer.mjs";
import AddPersonReducer from "./add_person_reducer.mjs";
import DeletePersonReducer from "./delete_person_reducer.mjs";
import FailReducer from "./fail_reducer.mjs";
import PanicReducer from "./panic_reducer.mjs";
import PutAllTypesReducer from "./put_all_types_reducer.mjs";
import RemindReducer from "./remind_reducer.mjs";
import ScheduleReminderReducer from "./schedule_reminder_reducer.mjs";
import SendMessageReducer from "./send_message_reducer.mjs";
import SetAgeReducer from "./set_age_reducer.mjs";

// Import all procedure arg schemas

// Import all table schema definitions
import AllTypesRow from "./all_types_table.mjs";
import MessageRow from "./message_table.mjs";
import OnlineRow from "./online_table.mjs";
import PersonRow from "./person_table.mjs";
import ReminderRow from "./reminder_table.mjs";

/** The schema information for all tables in this module. This is defined the same was as the tables would have been defined in the server. */
const tablesSchema = __schema({
  allTypes: __table({
    name: 'all_types',
    indexes: [
      { accessor: 'id', name: 'all_types_id_idx_btree', algorithm: 'btree', columns: [
        'id',
      ] },
    ],
    constraints: [
      { name: 'all_types_id_key', constraint: 'unique', columns: ['id'] },
    ],
  }, AllTypesRow),
  message: __table({
    name: 'message',
    indexes: [
      { accessor: 'id', name: 'message_id_idx_btree', algorithm: 'btree', columns: [
        'id',
      ] },
      { accessor: 'sender', name: 'message_sender_idx_btree', algorithm: 'btree', columns: [
        'sender',
      ] },
    ],
    constraints: [
      { name: 'message_id_key', constraint: 'unique', columns: ['id'] },
    ],
  }, MessageRow),
  online: __table({
    name: 'online',
    indexes: [
      { accessor: 'connection_id', name: 'online_connection_id_idx_btree', algorithm: 'btree', columns: [
        'connectionId',
      ] },
    ],
    constraints: [
      { name: 'online_connection_id_key', constraint: 'unique', columns: ['connectionId'] },
    ],
  }, OnlineRow),
  person: __table({
    name: 'person',
    indexes: [
      { accessor: 'id', name: 'person_id_idx_btree', algorithm: 'btree', columns: [
        'id',
      ] },
      { accessor: 'name', name: 'person_name_idx_btree', algorithm: 'btree', columns: [
        'name',
      ] },
    ],
    constraints: [
      { name: 'person_id_key', constraint: 'unique', columns: ['id'] },
      { name: 'person_name_key', constraint: 'unique', columns: ['name'] },
    ],
  }, PersonRow),
  reminder: __table({
    name: 'reminder',
    indexes: [
      { accessor: 'scheduled_id', name: 'reminder_scheduled_id_idx_btree', algorithm: 'btree', columns: [
        'scheduledId',
      ] },
    ],
    constraints: [
      { name: 'reminder_scheduled_id_key', constraint: 'unique', columns: ['scheduledId'] },
    ],
  }, ReminderRow),
});

/** The schema information for all reducers in this module. This is defined the same way as the reducers would have been defined in the server, except the body of the reducer is omitted in code generation. */
const reducersSchema = __reducers(
  __reducerSchema("add_people", AddPeopleReducer),
  __reducerSchema("add_person", AddPersonReducer),
  __reducerSchema("delete_person", DeletePersonReducer),
  __reducerSchema("fail", FailReducer),
  __reducerSchema("panic", PanicReducer),
  __reducerSchema("put_all_types", PutAllTypesReducer),
  __reducerSchema("remind", RemindReducer),
  __reducerSchema("schedule_reminder", ScheduleReminderReducer),
  __reducerSchema("send_message", SendMessageReducer),
  __reducerSchema("set_age", SetAgeReducer),
);

/** The schema information for all procedures in this module. This is defined the same way as the procedures would have been defined in the server. */
const proceduresSchema = __procedures();

/** The remote SpacetimeDB module schema, both runtime and type information. */
const REMOTE_MODULE = {
  versionInfo: {
    cliVersion: "2.0.0",
  },
  tables: tablesSchema.schemaType.tables,
  reducers: reducersSchema.reducersType.reducers,
  ...proceduresSchema,
};

const tableAccessorAliases = {
  "all_types": "allTypes",
};

function __withTableAccessorAliases(target, freeze = false) {
  const out = Object.create(Object.getPrototypeOf(target));
  Object.defineProperties(out, Object.getOwnPropertyDescriptors(target));
  for (const [deprecatedAccessor, targetAccessor] of Object.entries(tableAccessorAliases)) {
    if (deprecatedAccessor in out) {
      continue;
    }
    Object.defineProperty(out, deprecatedAccessor, {
      enumerable: true,
      configurable: false,
      get: () => out[targetAccessor],
    });
  }
  return freeze ? Object.freeze(out) : out;
}

/** The tables available in this remote SpacetimeDB module. Each table reference doubles as a query builder. */
const tablesBase = __makeQueryBuilder(tablesSchema.schemaType);
export const tables = __withTableAccessorAliases(tablesBase, true);

/** The reducers available in this remote SpacetimeDB module. */
export const reducers = __convertToAccessorMap(reducersSchema.reducersType.reducers);

/** The procedures available in this remote SpacetimeDB module. */
export const procedures = __convertToAccessorMap(proceduresSchema.procedures);

/** Builder class to configure a new subscription to the remote SpacetimeDB instance. */
export class SubscriptionBuilder extends __SubscriptionBuilderImpl {}

/** Builder class to configure a new database connection to the remote SpacetimeDB instance. */
export class DbConnectionBuilder extends __DbConnectionBuilder {}

/** The typed database connection to manage connections to the remote SpacetimeDB instance. This class has type information specific to the generated module. */
export class DbConnection extends __DbConnectionImpl {
  constructor(config) {
    super(config);
    this.db = __withTableAccessorAliases(this.db);
  }

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
