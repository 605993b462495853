"""The sync metrics exporter: per-stream lag and replay gap, read from the sync tables over the protocol.

Why a service of its own and not a collector inside the host: the host is a generic engine that runs any module, and
the numbers belong to the sync module's tables, which may be served by our host, a TypeScript build of the module,
or a real SpacetimeDB. So the exporter is an ordinary SDK client (`autopilot_sync.client`) that subscribes to
`stream_head`, `stream_checkpoint` and `active_connection` and serves Prometheus gauges computed from its cache at
scrape time. It reads as one of the host's observers (`AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES`), which row-level
security lets see every reader's checkpoint as it does the owner, but which may call no owner reducer
(docs/security.md "The sync metrics exporter").

- `lags.py` — pure: rows in, lags and Prometheus families out;
- `service.py` — the process: token, subscription, observer check, `/metrics`, `/healthz`;
- `cli.py` — `autopilot-sync exporter` and `autopilot-sync exporter identity`.
"""
