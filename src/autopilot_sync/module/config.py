"""The sync module's limits live in its own database: one `sync_config` row, changed only by the database owner.

Why a table and not the host's environment: a limit is a rule of the module, so it must hold wherever the module
runs — our host, or a real SpacetimeDB running the TypeScript twin, which has no environment variables of ours to
read. SpacetimeDB's way is exactly this: `init` runs as the identity that published the database, the module
records that identity, and an administrative reducer compares `ctx.sender` with it (docs/adr/0004-module-limits-
in-a-config-table.md). Every limit change is a committed transaction, so it is durable, replicated to the log and
visible (to the owner) like any other row.

- `init` (a fresh database) and the start hook (every start of our host, which also upgrades a data directory
  written before this table existed) seed the row with the defaults and record the owner;
- `set_sync_limits` (owner only) replaces the limits; every reducer reads them from the row of its own transaction;
- `set_sync_retention` (owner only, `module/retention.py`) sets the two retention columns added after the first
  release (at the end, with defaults: a data directory written before them upgrades in place, keeping everything).
- `set_trusted_issuer` (owner only) names the token issuer (the control service) whose claims count: a real
  SpacetimeDB accepts tokens from any OIDC issuer, so the module itself refuses claims from any other issuer
  (`auth.require_trusted_issuer`; docs/security.md "The trusted issuer"). Empty (the seeded value) trusts no
  issuer: every claim-bearing call is refused with `issuer_not_configured` until the owner names one.
"""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.tables import Row
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.module.errors import SyncError
from autopilot_sync.module.limits import DEFAULT_LIMITS, SyncLimits
from autopilot_sync.module.schema import module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.sync_bindings import SyncConfig

#: The primary key of the one `sync_config` row.
CONFIG_ROW = 0
#: Longest issuer `set_trusted_issuer` accepts, in UTF-8 bytes.
MAX_ISSUER_BYTES = 512

sync_config = module.table(
    "sync_config",
    [
        ("id", at.U32),
        ("owner", at.IDENTITY),
        ("max_payload_bytes", at.U64),
        ("max_batch_events", at.U32),
        ("max_stream_id_bytes", at.U32),
        ("max_idempotency_key_bytes", at.U32),
        ("max_kind_bytes", at.U32),
        ("max_payload_depth", at.U32),
        ("updated_at", at.TIMESTAMP),
        # retention (module/retention.py): most events kept per stream and oldest age kept, 0 = no bound
        ("retain_max_events", at.U64),
        ("retain_max_age_micros", at.U64),
        # the one token issuer whose claims count ("" = none named); added after the first release, with a default
        ("trusted_issuer", at.STRING),
    ],
    primary_key="id",
    public=False,  # only the owner reads it (and reducers); the limits are documented, the owner is nobody's business
    defaults={"retain_max_events": 0, "retain_max_age_micros": 0, "trusted_issuer": ""},
)

_LIMIT_PARAMS = (
    ("max_payload_bytes", at.U64),
    ("max_batch_events", at.U32),
    ("max_stream_id_bytes", at.U32),
    ("max_idempotency_key_bytes", at.U32),
    ("max_kind_bytes", at.U32),
    ("max_payload_depth", at.U32),
)


class _LastConfig:
    """The last configuration row read, as the `SyncConfig` and `SyncLimits` made from it (one entry).

    Every append reads the row; building both values from it was ~3% of a one-event call's host CPU
    (docs/performance.md "Round 6 — percall2"). Keyed by the identity of the stored row the datastore handed out,
    held here so that identity cannot be reused: any change to the row (`set_sync_limits`, `set_trusted_issuer`,
    an owner change, a rollback putting the old row back) hands out another row object, which misses and is
    rebuilt. The values depend on the row alone, so a hit is exactly what a rebuild would give.
    """

    __slots__ = ("config", "limits", "row")

    def __init__(self) -> None:
        self.row: object = None
        self.config: SyncConfig | None = None
        self.limits: SyncLimits = DEFAULT_LIMITS


_last = _LastConfig()


def config_row(ctx: ReducerContext) -> SyncConfig | None:
    """The configuration row (None before it is seeded)."""
    row = ctx.db.sync_config.find("id", CONFIG_ROW)
    if row is None:
        return None
    last = _last
    if row is not last.row:
        config = SyncConfig.from_values(row)
        last.row, last.config, last.limits = row, config, _limits_of_row(config)
    return last.config


def limits_of(config: SyncConfig | None) -> SyncLimits:
    """The limits a configuration row sets (the defaults before the row is seeded)."""
    if config is None:
        return DEFAULT_LIMITS
    last = _last
    if config is last.config:
        return last.limits
    return _limits_of_row(config)


def _limits_of_row(config: SyncConfig) -> SyncLimits:
    return SyncLimits(*(int(value) for value in config[2:8]))


def current_limits(ctx: ReducerContext) -> SyncLimits:
    """The limits in force for this transaction (the defaults before the row is seeded)."""
    return limits_of(config_row(ctx))


def require_owner(ctx: ReducerContext, reducer: str) -> Row:
    """The config row, when the caller is the database owner it records; anyone else is refused, typed."""
    row = ctx.db.sync_config.find("id", CONFIG_ROW)
    if row is None or ctx.sender != row[1]:
        raise SyncError(SyncErrorCode.UNAUTHORIZED, f"{reducer} is for the database owner only")
    return row


def seed_config(ctx: ReducerContext) -> None:
    """Insert the default limits with the caller (the owner: `init` and the start hook run as it) as administrator.

    An existing row keeps its limits; its owner follows the host's configured owner (`AUTOPILOT_SYNC_HOST_OWNER_
    IDENTITY`), which our host may change between starts — on SpacetimeDB the owner is fixed at publish.
    """
    row = ctx.db.sync_config.find("id", CONFIG_ROW)
    if row is None:
        ctx.db.sync_config.insert((CONFIG_ROW, ctx.sender, *DEFAULT_LIMITS.as_tuple(), ctx.timestamp, 0, 0, ""))
    elif row[1] != ctx.sender:
        ctx.db.sync_config.update((CONFIG_ROW, ctx.sender, *row[2:8], ctx.timestamp, *row[9:]))


@module.init
def init(ctx: ReducerContext) -> None:
    """A fresh database: the publisher (the owner) becomes the administrator of the default limits."""
    seed_config(ctx)


@module.reducer(*_LIMIT_PARAMS)
def set_sync_limits(
    ctx: ReducerContext,
    max_payload_bytes: int,
    max_batch_events: int,
    max_stream_id_bytes: int,
    max_idempotency_key_bytes: int,
    max_kind_bytes: int,
    max_payload_depth: int,
) -> None:
    """Replace every limit at once (owner only); the next reducer call is judged by the new numbers."""
    row = require_owner(ctx, "set_sync_limits")
    limits = SyncLimits(
        max_payload_bytes,
        max_batch_events,
        max_stream_id_bytes,
        max_idempotency_key_bytes,
        max_kind_bytes,
        max_payload_depth,
    )
    zero = [name for (name, _), value in zip(_LIMIT_PARAMS, limits.as_tuple(), strict=True) if value < 1]
    if zero:
        raise SyncError(SyncErrorCode.INVALID_LIMITS, f"{', '.join(zero)} must be at least 1")
    ctx.db.sync_config.update((CONFIG_ROW, ctx.sender, *limits.as_tuple(), ctx.timestamp, *row[9:]))


@module.reducer(("issuer", at.STRING))
def set_trusted_issuer(ctx: ReducerContext, issuer: str) -> None:
    """Name the one token issuer (the control service) whose claims count; "" trusts none again (owner only)."""
    row = require_owner(ctx, "set_trusted_issuer")
    size = len(issuer.encode("utf-8"))
    if size > MAX_ISSUER_BYTES:
        raise SyncError(SyncErrorCode.INVALID_LIMITS, f"trusted issuer is {size} bytes, limit {MAX_ISSUER_BYTES}")
    ctx.db.sync_config.update(SyncConfig.from_values(row)._replace(updated_at=ctx.timestamp, trusted_issuer=issuer))
