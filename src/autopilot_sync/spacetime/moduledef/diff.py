"""What changed between two module definitions, and whether existing data and clients survive it.

Pure: two `ModuleDef`s in (read from whichever `RawModuleDef` version), typed changes out. Used by the host's
upgrade check (data written under one schema, a module with another) and by the publish lane (`ops/drift.py`), so
the classification is deliberately conservative: only what cannot invalidate a stored row or a client's generated
bindings is compatible —

- compatible: a new table, a new reducer, a new index; columns added at the end of a table, each with a default
  value; a removed unique constraint and a removed index (SpacetimeDB's automatic migration allows both: no stored
  row can violate a constraint that is gone, and a query that used the index still runs);
- breaking: a removed table or reducer; a removed, renamed, reordered or retyped column; a column added anywhere else
  or without a default; changed reducer parameters or lifecycle; a changed primary key, an added unique constraint
  (stored rows may violate it), a changed auto-increment, schedule or visibility.

Rows are positional BSATN, so a column added in the middle, or without a default, is breaking (old rows decode the
wrong shape). Columns added at the end with defaults follow SpacetimeDB's automatic migration (`AddColumns` in
`crates/schema/src/auto_migrate.rs`): stored rows get the defaults, and — as SpacetimeDB does with
`DisconnectAllUsers` — clients reconnect to a host that restarted, fetching the new row shape.

Types are compared after resolving every `Ref` through each side's typespace, so adding a table (which shifts type
references) is never mistaken for a type change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import AlgebraicType
from autopilot_sync.spacetime.moduledef.model import ModuleDef, TableDef, resolve_deep
from autopilot_sync.spacetime.moduledef.v9 import schema_hash


class Severity(enum.Enum):
    """Whether a change keeps existing rows and clients valid."""

    COMPATIBLE = "compatible"
    BREAKING = "breaking"


class ChangeKind(enum.Enum):
    """Every kind of difference the comparison reports; the severity of each is fixed in `SEVERITY`."""

    TABLE_ADDED = "table_added"
    TABLE_REMOVED = "table_removed"
    COLUMN_ADDED = "column_added"
    COLUMN_ADDED_WITH_DEFAULT = "column_added_with_default"
    COLUMN_REMOVED = "column_removed"
    COLUMN_RENAMED = "column_renamed"
    COLUMN_TYPE_CHANGED = "column_type_changed"
    COLUMNS_REORDERED = "columns_reordered"
    PRIMARY_KEY_CHANGED = "primary_key_changed"
    INDEX_ADDED = "index_added"
    INDEX_REMOVED = "index_removed"
    UNIQUE_ADDED = "unique_added"
    UNIQUE_REMOVED = "unique_removed"
    SEQUENCE_CHANGED = "sequence_changed"
    SCHEDULE_CHANGED = "schedule_changed"
    ACCESS_CHANGED = "access_changed"
    REDUCER_ADDED = "reducer_added"
    REDUCER_REMOVED = "reducer_removed"
    REDUCER_PARAMS_CHANGED = "reducer_params_changed"
    REDUCER_LIFECYCLE_CHANGED = "reducer_lifecycle_changed"


SEVERITY: Mapping[ChangeKind, Severity] = {
    kind: Severity.COMPATIBLE
    if kind
    in {
        ChangeKind.TABLE_ADDED,
        ChangeKind.INDEX_ADDED,
        ChangeKind.INDEX_REMOVED,
        ChangeKind.UNIQUE_REMOVED,
        ChangeKind.REDUCER_ADDED,
        ChangeKind.COLUMN_ADDED_WITH_DEFAULT,
    }
    else Severity.BREAKING
    for kind in ChangeKind
}
"""The one table deciding what a publish applies live keeping the data (and what a host start accepts on old data)."""

CLIENT_BREAKING = frozenset({ChangeKind.COLUMN_ADDED_WITH_DEFAULT})
"""Compatible changes SpacetimeDB's automatic migration applies only with `policy=BreakClients` (its `AddColumns`
step brings `DisconnectAllUsers`: a client's generated row types no longer match)."""

_MARK = {
    ChangeKind.TABLE_ADDED: "+",
    ChangeKind.INDEX_ADDED: "+",
    ChangeKind.REDUCER_ADDED: "+",
    ChangeKind.COLUMN_ADDED: "+",
    ChangeKind.COLUMN_ADDED_WITH_DEFAULT: "+",
    ChangeKind.TABLE_REMOVED: "-",
    ChangeKind.INDEX_REMOVED: "-",
    ChangeKind.REDUCER_REMOVED: "-",
    ChangeKind.COLUMN_REMOVED: "-",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: what kind, on which table/reducer/column (`subject`), and in words (`detail`)."""

    kind: ChangeKind
    subject: str
    detail: str

    @property
    def severity(self) -> Severity:
        """Fixed per kind (see `SEVERITY`)."""
        return SEVERITY[self.kind]

    def render(self) -> str:
        """One line of the readable diff: `+`/`-`/`~`, the subject, the detail, the verdict."""
        return f"  {_MARK.get(self.kind, '~')} {self.subject}: {self.detail} [{self.severity.value}]"

    def to_json(self) -> dict[str, str]:
        """For the release ledger and `--json` output."""
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    """All changes from `base` (what is stored or served) to `head` (what would run)."""

    base_hash: str
    head_hash: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The changes a publish applies only by deleting the data (`--delete-data`)."""
        return tuple(change for change in self.changes if change.severity is Severity.BREAKING)

    @property
    def breaks_clients(self) -> tuple[Change, ...]:
        """Compatible changes after which existing clients must reconnect with the new row shapes: SpacetimeDB plans
        them with `DisconnectAllUsers` and applies them only under its `BreakClients` migration policy."""
        return tuple(change for change in self.changes if change.kind in CLIENT_BREAKING)

    @property
    def compatible(self) -> tuple[Change, ...]:
        """The changes let through."""
        return tuple(change for change in self.changes if change.severity is Severity.COMPATIBLE)

    @property
    def identical(self) -> bool:
        """Same schema hash: nothing to compare."""
        return self.base_hash == self.head_hash

    def render(self, base_label: str = "live", head_label: str = "local") -> str:
        """The readable diff an operator reads before saying yes."""
        header = (
            f"schema drift {base_label} {self.base_hash[:12]} -> {head_label} {self.head_hash[:12]}: "
            f"{len(self.compatible)} compatible, {len(self.breaking)} breaking"
        )
        if self.identical:
            return f"schema drift {base_label} -> {head_label}: none (both {self.head_hash[:12]})"
        if not self.changes:
            return header + "\n  ~ (documents differ only in names or metadata the comparison does not model)"
        return "\n".join([header, *(change.render() for change in self.changes)])


def type_text(ty: AlgebraicType) -> str:
    """A short human form of a resolved type: `U64`, `String`, `Array<U8>`, `Option<String>`, `Timestamp`."""
    if isinstance(ty, at.Primitive):
        return ty.kind.json_name
    if isinstance(ty, at.ArrayType):
        return f"Array<{type_text(ty.element)}>"
    if isinstance(ty, at.RefType):
        return f"Ref<{ty.index}>"
    special = at.special_tag(ty)
    if special is not None:
        return {
            at.TIMESTAMP_TAG: "Timestamp",
            at.TIME_DURATION_TAG: "TimeDuration",
            at.IDENTITY_TAG: "Identity",
            at.CONNECTION_ID_TAG: "ConnectionId",
        }[special]
    if isinstance(ty, at.ProductType):
        return "(" + ", ".join(f"{e.name or ''}: {type_text(e.type)}" for e in ty.elements) + ")"
    assert isinstance(ty, at.SumType)
    if at.is_option(ty):
        return f"Option<{type_text(ty.variants[0].type)}>"
    return "{" + " | ".join(f"{v.name or ''}: {type_text(v.type)}" for v in ty.variants) + "}"


# ----- the shape the comparison works on -----


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[tuple[str, AlgebraicType], ...]  # (name, resolved type)
    primary_key: tuple[str, ...]
    indexes: frozenset[tuple[str, ...]]
    unique: frozenset[tuple[str, ...]]
    sequences: frozenset[str]
    schedule: tuple[str, int] | None
    access: str
    defaults: frozenset[str]

    def type_text(self, column: str) -> str:
        return type_text(dict(self.columns)[column])


@dataclass(frozen=True, slots=True)
class _Reducer:
    name: str
    params: tuple[tuple[str, AlgebraicType], ...]
    signature: str
    lifecycle: str


def _table(definition: ModuleDef, table: TableDef) -> _Table:
    row = definition.row_type(table)
    columns = tuple((e.name or "", resolve_deep(e.type, definition.typespace)) for e in row.elements)
    names = [name for name, _ in columns]

    def group(positions: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(names[p] for p in positions)

    return _Table(
        name=table.name,
        columns=columns,
        primary_key=group(table.primary_key),
        indexes=frozenset(group(index.columns) for index in table.indexes),
        unique=frozenset(group(constraint.columns) for constraint in table.constraints),
        sequences=frozenset(names[s.column] for s in table.sequences),
        schedule=None if table.schedule is None else (table.schedule.reducer, table.schedule.at_column),
        access="Public" if table.public else "Private",
        defaults=frozenset(names[d.column] for d in table.defaults),
    )


def _reducers(definition: ModuleDef) -> dict[str, _Reducer]:
    out: dict[str, _Reducer] = {}
    for reducer in definition.reducers:
        params = tuple((e.name or "", resolve_deep(e.type, definition.typespace)) for e in reducer.params.elements)
        out[reducer.name] = _Reducer(
            name=reducer.name,
            params=params,
            signature=f"{reducer.name}(" + ", ".join(f"{n}: {type_text(ty)}" for n, ty in params) + ")",
            lifecycle=reducer.lifecycle.value if reducer.lifecycle else "none",
        )
    return out


# ----- the comparison -----


def compare(base: ModuleDef, head: ModuleDef) -> SchemaDiff:
    """Every change from `base` to `head`, with both schema hashes."""
    return SchemaDiff(schema_hash(base), schema_hash(head), changes(base, head))


def changes(base: ModuleDef, head: ModuleDef) -> tuple[Change, ...]:
    """Every change from `base` to `head`: tables first (in `head`'s order, then removed ones), then reducers."""
    base_tables = {t.name: _table(base, t) for t in base.tables}
    head_tables = {t.name: _table(head, t) for t in head.tables}
    base_reducers, head_reducers = _reducers(base), _reducers(head)
    out: list[Change] = []
    for name, table in head_tables.items():
        old = base_tables.get(name)
        if old is None:
            columns = ", ".join(f"{c}: {type_text(ty)}" for c, ty in table.columns)
            out.append(Change(ChangeKind.TABLE_ADDED, f"table {name}", f"new table ({columns})"))
        else:
            out.extend(_table_changes(old, table))
    for name in base_tables:
        if name not in head_tables:
            out.append(Change(ChangeKind.TABLE_REMOVED, f"table {name}", "table removed (its rows become unreadable)"))
    for name, reducer in head_reducers.items():
        previous = base_reducers.get(name)
        if previous is None:
            out.append(Change(ChangeKind.REDUCER_ADDED, f"reducer {name}", f"new reducer {reducer.signature}"))
            continue
        if previous.params != reducer.params:
            out.append(
                Change(
                    ChangeKind.REDUCER_PARAMS_CHANGED,
                    f"reducer {name}",
                    f"parameters changed {previous.signature} -> {reducer.signature}",
                )
            )
        if previous.lifecycle != reducer.lifecycle:
            out.append(
                Change(
                    ChangeKind.REDUCER_LIFECYCLE_CHANGED,
                    f"reducer {name}",
                    f"lifecycle changed {previous.lifecycle} -> {reducer.lifecycle}",
                )
            )
    for name, reducer in base_reducers.items():
        if name not in head_reducers:
            out.append(
                Change(ChangeKind.REDUCER_REMOVED, f"reducer {name}", f"reducer removed (was {reducer.signature})")
            )
    return tuple(out)


def _table_changes(old: _Table, new: _Table) -> list[Change]:
    out: list[Change] = []
    subject = f"table {new.name}"
    old_types = dict(old.columns)
    new_types = dict(new.columns)
    renamed: set[str] = set()
    appended_with_defaults = new.columns[: len(old.columns)] == old.columns and all(
        name in new.defaults for name, _ in new.columns[len(old.columns) :]
    )
    for position, (name, ty) in enumerate(new.columns):
        if name in old_types:
            if old_types[name] != ty:
                out.append(
                    Change(
                        ChangeKind.COLUMN_TYPE_CHANGED,
                        f"column {new.name}.{name}",
                        f"type {old.type_text(name)} -> {new.type_text(name)}",
                    )
                )
            continue
        if appended_with_defaults:
            out.append(
                Change(
                    ChangeKind.COLUMN_ADDED_WITH_DEFAULT,
                    f"column {new.name}.{name}",
                    f"new column {name}: {new.type_text(name)} at the end, with a default (stored rows get it)",
                )
            )
            continue
        before = old.columns[position] if position < len(old.columns) else None
        if before is not None and before[0] not in new_types and before[1] == ty:
            renamed.add(before[0])
            out.append(Change(ChangeKind.COLUMN_RENAMED, f"column {new.name}.{before[0]}", f"renamed to {name}"))
        else:
            out.append(
                Change(
                    ChangeKind.COLUMN_ADDED,
                    f"column {new.name}.{name}",
                    f"new column {name}: {new.type_text(name)} (stored rows have no value for it)",
                )
            )
    for name, _ in old.columns:
        if name not in new_types and name not in renamed:
            out.append(Change(ChangeKind.COLUMN_REMOVED, f"column {new.name}.{name}", "column removed"))
    kept_old = [name for name, _ in old.columns if name in new_types]
    kept_new = [name for name, _ in new.columns if name in old_types]
    if kept_old != kept_new:
        out.append(
            Change(
                ChangeKind.COLUMNS_REORDERED, subject, f"column order {', '.join(kept_old)} -> {', '.join(kept_new)}"
            )
        )
    if old.primary_key != new.primary_key:
        out.append(
            Change(
                ChangeKind.PRIMARY_KEY_CHANGED,
                subject,
                f"primary key ({', '.join(old.primary_key)}) -> ({', '.join(new.primary_key)})",
            )
        )
    for group in sorted(new.indexes - old.indexes):
        out.append(Change(ChangeKind.INDEX_ADDED, subject, f"new index on ({', '.join(group)})"))
    for group in sorted(old.indexes - new.indexes):
        out.append(Change(ChangeKind.INDEX_REMOVED, subject, f"index on ({', '.join(group)}) removed"))
    for group in sorted(new.unique - old.unique):
        out.append(Change(ChangeKind.UNIQUE_ADDED, subject, f"unique constraint on ({', '.join(group)}) added"))
    for group in sorted(old.unique - new.unique):
        out.append(Change(ChangeKind.UNIQUE_REMOVED, subject, f"unique constraint on ({', '.join(group)}) removed"))
    for column in sorted(new.sequences ^ old.sequences):
        verb = "added" if column in new.sequences else "removed"
        out.append(Change(ChangeKind.SEQUENCE_CHANGED, subject, f"auto-increment on {column} {verb}"))
    if old.schedule != new.schedule:
        out.append(Change(ChangeKind.SCHEDULE_CHANGED, subject, "schedule changed"))
    if old.access != new.access:
        out.append(Change(ChangeKind.ACCESS_CHANGED, subject, f"visibility {old.access} -> {new.access}"))
    return out
