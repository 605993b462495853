"""A table as a module declares it: columns, keys, indexes, visibility, scheduling and column defaults."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import AlgebraicType, ProductType

#: A stored row: a tuple in column order (the table's `row_class`, a namedtuple, builds one).
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class TableDef:
    """A table: its row type, keys, indexes and visibility."""

    name: str
    columns: tuple[tuple[str, AlgebraicType], ...]
    primary_key: str | None = None
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    auto_inc: tuple[str, ...] = ()
    public: bool = True
    scheduled_reducer: str | None = None
    event: bool = False
    defaults: tuple[tuple[str, Any], ...] = ()
    """Default values of columns (SpacetimeDB's `#[default]`): what rows stored before the column existed get."""
    schedule_column: str = "scheduled_at"
    """The `ScheduleAt` column of a scheduled table (the definition's `schedule_at_col`)."""
    row_type: ProductType = field(init=False)
    row_class: type = field(init=False)

    def __post_init__(self) -> None:
        names = [name for name, _ in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column names")
        defaulted = tuple(name for name, _ in self.defaults)
        for group in (
            *self.unique,
            *self.indexes,
            (self.primary_key,) if self.primary_key else (),
            self.auto_inc,
            defaulted,
        ):
            for column in group:
                if column not in names:
                    raise ValueError(f"table {self.name}: unknown column {column!r}")
        object.__setattr__(self, "row_type", at.product(*self.columns))
        object.__setattr__(self, "row_class", namedtuple(row_class_name(self.name), names, rename=False))

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in declaration order."""
        return tuple(name for name, _ in self.columns)

    def column_index(self, name: str) -> int:
        """Position of a column (raises KeyError with the table name)."""
        try:
            return self.column_names.index(name)
        except ValueError:
            raise KeyError(f"table {self.name} has no column {name!r}") from None

    def unique_keys(self) -> tuple[tuple[str, ...], ...]:
        """Every column group whose values must be unique: the primary key first, then unique constraints."""
        keys: list[tuple[str, ...]] = []
        if self.primary_key:
            keys.append((self.primary_key,))
        keys.extend(group for group in self.unique if group not in keys)
        return tuple(keys)

    def all_indexes(self) -> tuple[tuple[str, ...], ...]:
        """Every indexed column group (unique keys are indexed too)."""
        out = list(self.unique_keys())
        out.extend(group for group in self.indexes if group not in out)
        return tuple(out)


def row_class_name(table: str) -> str:
    """The name of a table's row class (`sync_event` → `SyncEventRow`); the schema's type name drops `Row`."""
    return "".join(part.title() for part in table.split("_")) + "Row"
