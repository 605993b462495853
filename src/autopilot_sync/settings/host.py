"""Settings of the embedded Spacetime host (`AUTOPILOT_SYNC_HOST_*`)."""

from __future__ import annotations

from pathlib import Path

from autopilot_sync.settings.base import ServiceSettings, setting
from autopilot_sync.settings.fields import (
    BOOL,
    Count,
    CountOrZero,
    DatabaseName,
    FilePath,
    Identities,
    IdentityHex,
    IssuerUrls,
    Listen,
    ListenAddress,
    MicrosecondsOrZero,
    ModulePath,
    Seconds,
    SecondsOrZero,
)


class HostSettings(ServiceSettings, service="host"):
    """The embedded host: where it listens, where its commit log lives, which module it serves, whom it trusts."""

    listen: ListenAddress = setting(
        Listen,
        default=ListenAddress("127.0.0.1", 3000),
        description="Address of the HTTP API and the subscribe WebSocket.",
    )
    data_dir: Path = setting(
        FilePath, default=Path("./var/host"), description="Directory of the commit log and snapshots."
    )
    cache_dir: Path = setting(
        FilePath,
        default=Path("~/.cache/autopilot-sync"),
        description="Directory of start-up work shared by this user's hosts, kept by digest (today: which row-level "
        "security filters compiled), so a first start on a new data directory skips what an earlier start of the "
        "same host version already did; losing it, or a directory that cannot be written, costs only that work.",
    )
    database: str = setting(
        DatabaseName,
        default="autopilot-sync",
        description="Name of the database the host serves under /v1/database/:name.",
    )
    module: str = setting(
        ModulePath,
        default="autopilot_sync.module",
        description="The module the host serves: a dotted Python path, or a built TypeScript module file (.js or "
        ".mjs, as `spacetime build` or `autopilot-sync build` makes it) run in a Node child process; empty starts "
        "the host with no database, waiting for `POST /v1/database`. Once a module was published over HTTP (or the "
        "database deleted), the data directory's record wins over this setting.",
    )
    create_identities: tuple[str, ...] = setting(
        Identities,
        default=(),
        description="Identities (hex) allowed to create the database with `POST /v1/database` when the host has "
        "none; the creator becomes its owner. Empty allows the owner identity only.",
    )
    js_heap_mb: int = setting(
        Count,
        default=256,
        description="V8 heap limit of a TypeScript module's runner, in MiB; a module that exceeds it fails that call "
        "and a fresh runner serves the next.",
    )
    js_call_timeout_ms: int = setting(
        Count,
        default=5000,
        description="Longest a TypeScript module's reducer call may run, in milliseconds; past it the runner is "
        "killed, the call fails and is rolled back (calls run on the host's event loop: this bounds a stall).",
    )
    trusted_issuers: tuple[str, ...] = setting(
        IssuerUrls,
        default=(),
        description="OIDC issuers whose tokens the host accepts, compared exactly with the `iss` claim; "
        "empty trusts only tokens the host issued itself.",
    )
    owner_identity: str = setting(
        IdentityHex,
        default="",
        description="Identity (hex) of the database owner, as SpacetimeDB's publisher: it runs `init` and the start "
        "hook, reads past row-level security, and is the module's administrator (e.g. the sync module's "
        "`set_sync_limits`); empty means no caller over the network is the owner.",
    )
    observer_identities: tuple[str, ...] = setting(
        Identities,
        default=(),
        description="Identities (hex) that read every row as the owner does (private tables, past row-level "
        "security) and are otherwise ordinary callers: no owner reducer, no write. For read-only services such as "
        "the sync metrics exporter (docs/security.md).",
    )
    token_leeway_seconds: int = setting(
        SecondsOrZero,
        default=60,
        description="Clock skew tolerated on a token's exp and nbf (jsonwebtoken's default is 60); a WebSocket "
        "closes with 1008 'token expired' this long after the token it was opened with expired.",
    )
    snapshot_every_commits: int = setting(
        Count, default=10000, description="Write a snapshot after this many commits so restart replays a bounded log."
    )
    snapshot_every_bytes: int = setting(
        Count,
        default=67108864,
        description="Also write a snapshot once this many bytes of commit-log records were written since the last "
        "whole one, so a host with few large commits (batches of events) still replays a bounded log at restart.",
    )
    snapshot_delta_every_bytes: int = setting(
        Count,
        default=4194304,
        description="With a log table (such as sync_event): write an incremental snapshot, holding only what the "
        "log tables appended since the previous snapshot, once this many bytes of commit-log records were written "
        "since it, so a restart replays little log while a snapshot costs what changed, not the whole table.",
    )
    snapshot_deltas_max: int = setting(
        CountOrZero,
        default=15,
        description="Incremental snapshots between two whole ones (a start reads the chain back to the whole one); "
        "0 writes every snapshot whole. A whole one is also written once SNAPSHOT_EVERY_BYTES of log records were "
        "written since the last whole one.",
    )
    snapshots_kept: int = setting(
        Count,
        default=2,
        description="Whole snapshots kept on disk (with the incremental ones after them); commit-log segments older "
        "than the oldest kept one are deleted, so a damaged newest snapshot can fall back to an older one.",
    )
    segment_max_bytes: int = setting(
        Count,
        default=67108864,
        description="Size bound of one commit-log segment, in bytes; the log also starts a new segment at every "
        "snapshot.",
    )
    module_log_max_bytes: int = setting(
        Count,
        default=10485760,
        description="Size of the module log file (`GET /v1/database/:name/logs`), in bytes; when full it becomes "
        "`module.log.1` and a new one starts, so module logs take at most twice this on disk.",
    )
    max_message_bytes: int = setting(
        Count, default=33554432, description="Largest WebSocket message accepted from a client, in bytes."
    )
    fsync: bool = setting(
        BOOL,
        default=True,
        description="fsync the commit log before acknowledging a commit; false loses acknowledged commits on a "
        "crash and is for throwaway tests only.",
    )
    inline_fsync_max_micros: int = setting(
        MicrosecondsOrZero,
        default=0,
        description="A commit-log fsync runs on the event loop itself (no hand-off to the fsync thread and back, "
        "~100 us less per durable call) while the disk's recent fsyncs each took at most this long; one slower "
        "fsync sends flushes back to the thread. While an fsync runs on the loop the host serves nothing else, so a "
        "disk that stalls freezes every connection for that fsync: set it (e.g. 1000) only for local NVMe whose "
        "fsyncs never stall. 0 (the default): always the thread.",
    )
    ping_interval_seconds: int = setting(
        Seconds, default=15, description="How often the host pings each WebSocket client (the real host uses 15)."
    )
    idle_timeout_seconds: int = setting(
        Seconds,
        default=30,
        description="A WebSocket client silent this long (no message, no pong) is dropped, so presence returns "
        "to the truth after half-open connections. Only the client's silence counts: not while the host owes it "
        "answers or has not read what it sent, nor while the host was too busy to listen.",
    )
    send_queue_max_messages: int = setting(
        Count, default=16384, description="Server messages queued for one client before it is disconnected as too slow."
    )
    send_queue_max_bytes: int = setting(
        Count,
        default=268435456,
        description="Encoded bytes queued for one client before it is disconnected as too slow.",
    )
    max_connections_per_identity: int = setting(
        Count,
        default=1024,
        description="WebSocket connections one identity may hold at once; one more is refused with HTTP 429 before "
        "the upgrade (benchmarks that open thousands of sockets with one key raise it).",
    )
    max_query_sets_per_connection: int = setting(
        Count,
        default=64,
        description="Query sets one WebSocket connection may hold; one more Subscribe gets a SubscriptionError "
        "(each matching set costs every commit a little: docs/security.md).",
    )
    max_queries_per_set: int = setting(
        Count, default=256, description="Queries one Subscribe may carry; more get a SubscriptionError."
    )
    max_queries_per_connection: int = setting(
        Count,
        default=1024,
        description="Queries (summed over its query sets) one WebSocket connection may hold; a Subscribe that would "
        "pass it gets a SubscriptionError.",
    )
    max_unindexed_queries_per_connection: int = setting(
        Count,
        default=64,
        description="Queries without a top-level `column = literal` or range term (every commit to their table "
        "must test them) one WebSocket connection may hold; one more gets a SubscriptionError.",
    )
    http_header_timeout_seconds: int = setting(
        Seconds,
        default=20,
        description="An HTTP connection that has not sent a complete request head this long after it opened (or "
        "after its previous response) is closed: half-sent requests cannot hold connections.",
    )
    http_body_timeout_seconds: int = setting(
        Seconds, default=30, description="A request body not fully received this long after its head gets HTTP 408."
    )
    http_max_pending_connections: int = setting(
        Count,
        default=1024,
        description="HTTP connections that have not yet sent a complete first request; one more is closed at once.",
    )
