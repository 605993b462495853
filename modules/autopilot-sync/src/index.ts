// The TypeScript twin of the autopilot-sync module (issue 18): what a team publishes to SpacetimeDB. Every export
// below is a reducer or a row-level-security rule, named as in the Python module (src/autopilot_sync/module/).
export { default } from './schema';
export { init, set_sync_limits, set_trusted_issuer } from './config';
export { grant_stream_readers, revoke_stream_reader } from './readers';
export {
  sync_event_visibility,
  stream_head_visibility,
  stream_reader_visibility,
  stream_checkpoint_visibility,
  active_connection_visibility,
  sync_member_visibility,
} from './readers';
export { client_connected, client_disconnected, heartbeat } from './presence';
export { append_sync_events, append_sync_event } from './append';
export { ack_checkpoint, trim_stream, reset_stream } from './streams';
export { set_sync_retention, apply_retention } from './retention';
