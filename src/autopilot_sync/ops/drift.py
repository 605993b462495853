"""Schema drift between two `RawModuleDefV9` documents: what changed, and whether existing data and clients survive it.

Pure: two schema JSON documents in (the one the host serves at `/v1/database/:name/schema?version=9` and the local
module's `schema_json()`), a list of typed changes out. The publish lane refuses a breaking change unless the
operator says `--allow-breaking`, so the classification is deliberately conservative: only what cannot invalidate a
stored row or a client's generated bindings is compatible —

- compatible: a new table, a new reducer, a new B-tree index; columns added at the end of a table, each with a default
  value (`ColumnDefaultValue` in `misc_exports`); a removed unique constraint and a removed index (SpacetimeDB's
  automatic migration allows both: no stored row can violate a constraint that is gone, and a query that used the
  index still runs);
- breaking: a removed table or reducer; a removed, renamed, reordered or retyped column; a column added anywhere else
  or without a default; changed reducer parameters or lifecycle; a changed primary key, an added unique constraint
  (stored rows may violate it), a changed auto-increment, schedule or visibility.

Rows are positional BSATN, so a column added in the middle, or without a default, is breaking (old rows decode the
wrong shape). Columns added at the end with defaults follow SpacetimeDB's automatic migration (`AddColumns` in
`crates/schema/src/auto_migrate.rs`): stored rows get the defaults (`TableStore.stored`), and — as SpacetimeDB does
with `DisconnectAllUsers` — clients reconnect to a host that restarted, fetching the new row shape.

Types are compared after resolving `Ref`s through the typespace, so adding a table (which shifts type references)
is never mistaken for a type change.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MAX_REF_DEPTH = 32


class DriftError(ValueError):
    """A document that is not a `RawModuleDefV9` schema in the shape our host and SpacetimeDB serve."""


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
"""The one table deciding what the lane lets through without `--allow-breaking`."""

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
    """All changes from `base` (what the host serves) to `head` (what would be deployed)."""

    base_hash: str
    head_hash: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The changes that need `--allow-breaking`."""
        return tuple(change for change in self.changes if change.severity is Severity.BREAKING)

    @property
    def compatible(self) -> tuple[Change, ...]:
        """The changes the lane lets through."""
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


def schema_hash(schema: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON: equal to `module_api.module_schema_hash` of the same module, whoever wrote it."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ----- the model the comparison works on -----


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, canonical resolved type JSON)
    type_text: Mapping[str, str]
    primary_key: tuple[str, ...]
    indexes: frozenset[tuple[str, ...]]
    unique: frozenset[tuple[str, ...]]
    sequences: frozenset[str]
    schedule: str
    access: str
    defaults: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Reducer:
    name: str
    params: tuple[tuple[str, str], ...]
    signature: str
    lifecycle: str


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise DriftError(f"not a RawModuleDefV9 schema: {what}")


def _resolve(ty: Any, types: Sequence[Any], depth: int = 0) -> Any:
    """The type with every `Ref` replaced by what it points to (bounded, so a cyclic typespace cannot hang us)."""
    _require(isinstance(ty, dict) and len(ty) == 1, f"a type must be an object with one key, got {ty!r}"[:200])
    ((key, body),) = ty.items()
    if key == "Ref":
        _require(isinstance(body, int) and 0 <= body < len(types), f"type reference {body!r} out of range")
        _require(depth < _MAX_REF_DEPTH, "type references nest too deep (cycle?)")
        return _resolve(types[body], types, depth + 1)
    if key == "Product":
        return {"Product": {"elements": [_element(e, types, depth) for e in body.get("elements", [])]}}
    if key == "Sum":
        return {"Sum": {"variants": [_element(v, types, depth) for v in body.get("variants", [])]}}
    if key == "Array":
        return {"Array": _resolve(body, types, depth + 1)}
    return ty


def _element(element: Any, types: Sequence[Any], depth: int) -> dict[str, Any]:
    _require(isinstance(element, dict) and "algebraic_type" in element, "product/sum element without a type")
    return {"name": element.get("name"), "algebraic_type": _resolve(element["algebraic_type"], types, depth + 1)}


def _name(value: Any) -> str:
    """`{"some": "x"}` → `x`; `{"none": []}` or anything else → ``."""
    if isinstance(value, dict) and isinstance(value.get("some"), str):
        return str(value["some"])
    return ""


def type_text(ty: Any) -> str:
    """A short human form of a resolved type: `U64`, `String`, `Array<U8>`, `Option<String>`, `Timestamp`."""
    if not isinstance(ty, dict) or len(ty) != 1:
        return "?"
    ((key, body),) = ty.items()
    if key == "Array":
        return f"Array<{type_text(body)}>"
    if key == "Product":
        elements = body.get("elements", [])
        if len(elements) == 1 and _name(elements[0].get("name")).startswith("__"):
            special = _name(elements[0].get("name")).strip("_")
            return {
                "timestamp_micros_since_unix_epoch": "Timestamp",
                "time_duration_micros": "TimeDuration",
                "identity": "Identity",
                "connection_id": "ConnectionId",
            }.get(special, special)
        inner = ", ".join(f"{_name(e.get('name'))}: {type_text(e.get('algebraic_type'))}" for e in elements)
        return f"({inner})"
    if key == "Sum":
        variants = body.get("variants", [])
        names = [_name(v.get("name")) for v in variants]
        if names == ["some", "none"]:
            return f"Option<{type_text(variants[0].get('algebraic_type'))}>"
        return (
            "{"
            + " | ".join(f"{n}: {type_text(v.get('algebraic_type'))}" for n, v in zip(names, variants, strict=True))
            + "}"
        )
    return str(key)


def _canonical(ty: Any) -> str:
    return json.dumps(ty, sort_keys=True, separators=(",", ":"))


def _columns_of(table: Mapping[str, Any], types: Sequence[Any]) -> list[tuple[str, Any]]:
    ref = table.get("product_type_ref")
    if not isinstance(ref, int) or not 0 <= ref < len(types):
        raise DriftError(f"not a RawModuleDefV9 schema: table {table.get('name')!r}: bad product_type_ref")
    row = _resolve(types[ref], types)
    _require("Product" in row, f"table {table.get('name')!r}: row type is not a product")
    return [(_name(e.get("name")), e["algebraic_type"]) for e in row["Product"]["elements"]]


def _column_groups(items: Iterable[Any], names: Sequence[str], path: Sequence[str]) -> frozenset[tuple[str, ...]]:
    groups: set[tuple[str, ...]] = set()
    for item in items:
        body: Any = item
        for key in path:
            body = body.get(key, {}) if isinstance(body, dict) else {}
        columns = body.get("columns", []) if isinstance(body, dict) else []
        _require(all(isinstance(c, int) and 0 <= c < len(names) for c in columns), "index column out of range")
        groups.add(tuple(names[c] for c in columns))
    return frozenset(groups)


def _parse(schema: Mapping[str, Any]) -> tuple[dict[str, _Table], dict[str, _Reducer]]:
    _require(isinstance(schema, Mapping), "the document is not a JSON object")
    typespace = schema.get("typespace")
    if not isinstance(typespace, dict) or not isinstance(typespace.get("types"), list):
        raise DriftError("not a RawModuleDefV9 schema: missing typespace.types")
    types: list[Any] = typespace["types"]
    _require(isinstance(schema.get("tables"), list), "missing tables")
    _require(isinstance(schema.get("reducers"), list), "missing reducers")
    defaults = _defaults(schema.get("misc_exports", []))
    tables: dict[str, _Table] = {}
    for raw in schema["tables"]:
        _require(isinstance(raw, dict) and isinstance(raw.get("name"), str), "a table without a name")
        columns = _columns_of(raw, types)
        names = [name for name, _ in columns]
        primary = raw.get("primary_key", [])
        _require(isinstance(primary, list), f"table {raw['name']}: primary_key is not a list")
        tables[raw["name"]] = _Table(
            name=raw["name"],
            columns=tuple((name, _canonical(ty)) for name, ty in columns),
            type_text={name: type_text(ty) for name, ty in columns},
            primary_key=tuple(names[c] for c in primary if isinstance(c, int) and 0 <= c < len(names)),
            indexes=_column_groups(raw.get("indexes", []), names, ("algorithm", "BTree")),
            unique=_column_groups(raw.get("constraints", []), names, ("data", "Unique")),
            sequences=frozenset(
                names[s["column"]]
                for s in raw.get("sequences", [])
                if isinstance(s, dict) and isinstance(s.get("column"), int) and 0 <= s["column"] < len(names)
            ),
            schedule=_canonical(_schedule(raw.get("schedule"))),
            access=next(iter(raw.get("table_access", {"Public": []})), "Public"),
            defaults=frozenset(names[c] for c in defaults.get(raw["name"], ()) if 0 <= c < len(names)),
        )
    reducers: dict[str, _Reducer] = {}
    for raw in schema["reducers"]:
        _require(isinstance(raw, dict) and isinstance(raw.get("name"), str), "a reducer without a name")
        params_body = raw.get("params", {})
        elements = params_body.get("elements", []) if isinstance(params_body, dict) else []
        params = [(_name(e.get("name")), _resolve(e.get("algebraic_type"), types)) for e in elements]
        lifecycle = raw.get("lifecycle", {"none": []})
        reducers[raw["name"]] = _Reducer(
            name=raw["name"],
            params=tuple((name, _canonical(ty)) for name, ty in params),
            signature=f"{raw['name']}(" + ", ".join(f"{n}: {type_text(ty)}" for n, ty in params) + ")",
            lifecycle=_canonical(lifecycle),
        )
    return tables, reducers


def _defaults(exports: Any) -> dict[str, set[int]]:
    """Columns with a default value, per table: `{"ColumnDefaultValue": {"table", "col_id", "value"}}` exports."""
    _require(isinstance(exports, list), "misc_exports is not a list")
    out: dict[str, set[int]] = {}
    for export in exports:
        body = export.get("ColumnDefaultValue") if isinstance(export, dict) else None
        if isinstance(body, dict) and isinstance(body.get("table"), str) and isinstance(body.get("col_id"), int):
            out.setdefault(body["table"], set()).add(body["col_id"])
    return out


def _schedule(value: Any) -> Any:
    """The schedule without its generated name, so only the reducer and column matter."""
    if isinstance(value, dict) and isinstance(value.get("some"), dict):
        inner = dict(value["some"])
        inner.pop("name", None)
        return {"some": inner}
    return value if value is not None else {"none": []}


# ----- the comparison -----


def compare(base: Mapping[str, Any], head: Mapping[str, Any]) -> SchemaDiff:
    """Every change from `base` to `head`, tables first (in `head`'s order, then removed ones), then reducers."""
    base_tables, base_reducers = _parse(base)
    head_tables, head_reducers = _parse(head)
    changes: list[Change] = []
    for name, table in head_tables.items():
        old = base_tables.get(name)
        if old is None:
            columns = ", ".join(f"{c}: {table.type_text[c]}" for c, _ in table.columns)
            changes.append(Change(ChangeKind.TABLE_ADDED, f"table {name}", f"new table ({columns})"))
        else:
            changes.extend(_table_changes(old, table))
    for name in base_tables:
        if name not in head_tables:
            changes.append(
                Change(ChangeKind.TABLE_REMOVED, f"table {name}", "table removed (its rows become unreadable)")
            )
    for name, reducer in head_reducers.items():
        previous = base_reducers.get(name)
        if previous is None:
            changes.append(Change(ChangeKind.REDUCER_ADDED, f"reducer {name}", f"new reducer {reducer.signature}"))
            continue
        if previous.params != reducer.params:
            changes.append(
                Change(
                    ChangeKind.REDUCER_PARAMS_CHANGED,
                    f"reducer {name}",
                    f"parameters changed {previous.signature} -> {reducer.signature}",
                )
            )
        if previous.lifecycle != reducer.lifecycle:
            changes.append(
                Change(
                    ChangeKind.REDUCER_LIFECYCLE_CHANGED,
                    f"reducer {name}",
                    f"lifecycle changed {previous.lifecycle} -> {reducer.lifecycle}",
                )
            )
    for name, reducer in base_reducers.items():
        if name not in head_reducers:
            changes.append(
                Change(ChangeKind.REDUCER_REMOVED, f"reducer {name}", f"reducer removed (was {reducer.signature})")
            )
    return SchemaDiff(schema_hash(base), schema_hash(head), tuple(changes))


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
                        f"type {old.type_text[name]} -> {new.type_text[name]}",
                    )
                )
            continue
        if appended_with_defaults:
            out.append(
                Change(
                    ChangeKind.COLUMN_ADDED_WITH_DEFAULT,
                    f"column {new.name}.{name}",
                    f"new column {name}: {new.type_text[name]} at the end, with a default (stored rows get it)",
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
                    f"new column {name}: {new.type_text[name]} (stored rows have no value for it)",
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
