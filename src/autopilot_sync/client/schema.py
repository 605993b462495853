"""The module schema as the client needs it: how to decode each table's rows and encode each reducer's arguments.

Read through `spacetime.moduledef` from `RawModuleDefV9` or `RawModuleDefV10` SATS-JSON
(`GET /v1/database/:name/schema?version=9|10`), the same documents the real SpacetimeDB host serves, so the SDK needs
no generated code to work: rows decode to a namedtuple per table unless the caller supplies its own row classes (the
dataclasses `autopilot-sync client generate` writes).
"""

from __future__ import annotations

import json
import re
import struct
from collections import namedtuple
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.client.errors import AuthenticationError, SchemaError
from autopilot_sync.spacetime import bsatn, moduledef
from autopilot_sync.spacetime.algebraic import AlgebraicType, ArrayType, ProductType, SumType, is_option
from autopilot_sync.spacetime.bsatn_check import (
    PackedRowListChecker,
    RowListChecker,
    RowsDoNotDecodeError,
    packed_checker,
    row_list_checker,
)
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.rowlist import BsatnRowList

#: Builds a row object from the decoded column values, in column order (a namedtuple or dataclass type fits).
RowFactory = Callable[..., Any]


def class_name(table: str) -> str:
    """`person_event` → `PersonEvent`: the row class name, shared with the code generator."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", table) if part)
    return name if name and not name[0].isdigit() else f"T{name}"


@dataclass(frozen=True, slots=True)
class TableSchema:
    """One table: its row type, primary key columns (none, one, or several) and a compiled row codec."""

    name: str
    row_type: ProductType
    typespace: tuple[AlgebraicType, ...]
    primary_key: tuple[int, ...]
    public: bool
    row_factory: RowFactory
    _codec: bsatn.Codec = field(repr=False, compare=False)
    #: Checks a row list without decoding it, for tables whose rows the cache keeps as bytes (no primary key, a
    #: shape `bsatn_check` handles); None otherwise.
    _checker: RowListChecker | None = field(init=False, repr=False, compare=False)
    #: The same check over a row list as received (compiled when built); None exactly when `_checker` is.
    _packed: PackedRowListChecker | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checker = None if self.primary_key else row_list_checker(self.row_type, self.typespace)
        object.__setattr__(self, "_checker", checker)
        packed = None if checker is None else packed_checker(self.row_type, self.typespace)
        object.__setattr__(self, "_packed", packed)

    @property
    def decodes_lazily(self) -> bool:
        """True when the cache may keep this table's rows as bytes and decode each when first read."""
        return self._checker is not None

    def row_of(self, data: bytes) -> Any:
        """The row object for bytes already checked by `check_rows` (a lazily kept row being read)."""
        return self.decode(data)[1]

    def check_rows(self, rows: Sequence[bytes]) -> None:
        """Raise `DecodeError` unless every row decodes to a row object; builds none (see `decodes_lazily`).

        Same verdict and message as `decode_rows`: the first row is decoded (which also proves the row class
        fits), the rest are walked by the generated checker, and when that finds a fault the decoder runs to say
        which and why.
        """
        checker = self._checker
        if checker is None:
            self.decode_rows(rows)
            return
        if rows:
            self.decode(rows[0])
        try:
            checker(rows)
        except RowsDoNotDecodeError:
            self.decode_rows(rows)

    def check_row_list(self, rows: BsatnRowList) -> list[bytes]:
        """`check_rows` for a row list as it arrived; returns its rows split. The walk runs over the list's one
        buffer (compiled where `bsatn_check.NATIVE`, which splits the rows too), so a catch-up's check costs no
        Python step per field."""
        packed = self._packed
        if packed is None:
            raws = rows.rows()
            self.check_rows(raws)
            return raws
        try:
            raws = packed(rows)
        except RowsDoNotDecodeError:
            raws = rows.rows()
            self.decode_rows(raws)  # raises the decoder's own error
            return raws
        if raws:
            self.decode(raws[0])  # proves the row class fits
        return raws

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in declaration (wire) order."""
        return self.row_type.field_names()

    def decode(self, data: bytes) -> tuple[Hashable, Any]:
        """The cache key and the row object for one encoded row; `DecodeError` on bad bytes or a misfit row class.

        The key is the primary key value when the table has one (so a delete + insert of the same key is an update),
        a tuple of the values for a composite key (`RawTableDefV9.primary_key` lists columns), else the row bytes
        themselves (identical rows are the same row, as in the official SDK).
        """
        values: tuple[Any, ...] = self._codec.decode(data)
        key: Hashable = data
        if len(self.primary_key) == 1:
            key = ("pk", _hashable(values[self.primary_key[0]]))
        elif self.primary_key:
            key = ("pk", tuple(_hashable(values[column]) for column in self.primary_key))
        try:
            return key, self.row_factory(*values)
        except TypeError as exc:  # a row class (e.g. generated bindings) of another shape than the served schema
            raise DecodeError(f"row of {self.name} does not fit its row class: {exc}") from None

    def decode_rows(self, rows: Sequence[bytes]) -> list[tuple[Hashable, Any]]:
        """`decode` for every row of one row list, in one loop (a catch-up message carries thousands of rows).

        Same keys, rows and errors as calling `decode` per row; the per-row wrapper calls are what it saves. A row
        type holding arrays of zero-size elements (`bsatn.Codec.budgeted`) has one budget of zero-size values for
        the whole row list, the message's, not one per row: a list of 4-byte rows each claiming the whole budget
        would otherwise decode to 2^20 values per 4 bytes.
        """
        decoder, factory, primary_key = self._codec.decoder, self.row_factory, self.primary_key
        if self._codec.budgeted:
            budget = [bsatn.MAX_ZERO_SIZE_ELEMENTS]
            whole = self._codec.decoder

            def decoder(data: bsatn.Buffer, offset: int) -> tuple[Any, int]:
                return whole(data, offset, budget)  # type: ignore[call-arg]  # a budgeted decoder

        single = primary_key[0] if len(primary_key) == 1 else None
        out: list[tuple[Hashable, Any]] = []
        append = out.append
        try:
            for data in rows:
                values, end = decoder(data, 0)
                if end != len(data):
                    raise DecodeError(f"{len(data) - end} trailing bytes after value")
                key: Hashable = data
                if single is not None:
                    key = ("pk", _hashable(values[single]))
                elif primary_key:
                    key = ("pk", tuple(_hashable(values[column]) for column in primary_key))
                append((key, factory(*values)))
        except (struct.error, IndexError) as exc:
            raise DecodeError(f"truncated input: {exc}") from None
        except TypeError as exc:  # a row class (e.g. generated bindings) of another shape than the served schema
            raise DecodeError(f"row of {self.name} does not fit its row class: {exc}") from None
        return out

    def with_factory(self, factory: RowFactory) -> TableSchema:
        """The same table decoding into another row class."""
        return TableSchema(
            self.name, self.row_type, self.typespace, self.primary_key, self.public, factory, self._codec
        )


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    result: Hashable = value
    return result


@dataclass(frozen=True, slots=True)
class ReducerSchema:
    """One reducer: its parameter product, which is the BSATN shape of `CallReducer.args`."""

    name: str
    params: ProductType
    typespace: tuple[AlgebraicType, ...]
    lifecycle: str | None
    #: Compiled once: looking it up in `bsatn.codec`'s cache hashes the whole typespace, which was ~58% of the
    #: client's CPU per reducer call.
    _codec: bsatn.Codec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_codec", bsatn.codec(self.params, self.typespace))

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in order."""
        return self.params.field_names()

    def encode_args(self, args: Sequence[Any]) -> bytes:
        """BSATN of the arguments; ValueError/TypeError when they do not fit."""
        return self._codec.encode(tuple(args))


@dataclass(frozen=True, slots=True)
class ProcedureSchema:
    """One procedure: its parameter product (the BSATN shape of `CallProcedure.args`) and its return type."""

    name: str
    params: ProductType
    return_type: AlgebraicType
    typespace: tuple[AlgebraicType, ...]

    def encode_args(self, args: Sequence[Any]) -> bytes:
        """BSATN of the arguments; ValueError/TypeError when they do not fit."""
        return bsatn.codec(self.params, self.typespace).encode(tuple(args))

    def decode_return(self, data: bytes) -> Any:
        """The returned value (`DecodeError` when the bytes do not fit the return type)."""
        return bsatn.codec(self.return_type, self.typespace).decode(data)


@dataclass(frozen=True, slots=True)
class ClientSchema:
    """Tables and reducers of one module, plus the definition they come from (kept for the code generator)."""

    tables: Mapping[str, TableSchema]
    reducers: Mapping[str, ReducerSchema]
    typespace: tuple[AlgebraicType, ...]
    definition: moduledef.ModuleDef = field(repr=False, compare=False)
    procedures: Mapping[str, ProcedureSchema] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: Mapping[str, Any], row_types: Mapping[str, RowFactory] | None = None) -> ClientSchema:
        """Parse `RawModuleDefV9` or `RawModuleDefV10` SATS-JSON; `row_types` overrides the row class of some tables."""
        try:
            definition = moduledef.from_json(dict(document))
        except moduledef.ModuleDefError as exc:
            raise SchemaError(str(exc)) from None
        return cls.from_definition(definition, row_types)

    @classmethod
    def from_definition(
        cls, definition: moduledef.ModuleDef, row_types: Mapping[str, RowFactory] | None = None
    ) -> ClientSchema:
        """The client's view of a module definition; `row_types` overrides the row class of named tables."""
        try:
            return _parse(definition, row_types or {})
        except moduledef.ModuleDefError as exc:
            raise SchemaError(str(exc)) from None

    @classmethod
    def from_file(cls, path: Path, row_types: Mapping[str, RowFactory] | None = None) -> ClientSchema:
        """Load a schema saved as JSON (e.g. `curl .../schema?version=9 > chat.json`)."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), row_types)

    def table(self, name: str) -> TableSchema:
        """A table by name (raises `SchemaError`)."""
        try:
            return self.tables[name]
        except KeyError:
            raise SchemaError(f"the module has no table {name!r}") from None

    def with_row_types(self, row_types: Mapping[str, RowFactory]) -> ClientSchema:
        """The same schema decoding the named tables into the given classes."""
        tables = {n: (t.with_factory(row_types[n]) if n in row_types else t) for n, t in self.tables.items()}
        return ClientSchema(tables, self.reducers, self.typespace, self.definition, self.procedures)


def _parse(definition: moduledef.ModuleDef, row_types: Mapping[str, RowFactory]) -> ClientSchema:
    typespace = definition.typespace
    tables: dict[str, TableSchema] = {}
    for table in definition.tables:
        row_type = definition.row_type(table)
        factory = row_types.get(table.name) or namedtuple(class_name(table.name), row_type.field_names(), rename=True)
        codec = bsatn.codec(row_type, typespace)
        tables[table.name] = TableSchema(
            table.name, row_type, typespace, table.primary_key, table.public, factory, codec
        )
    for view in definition.views:
        # A view reads like a table (SpacetimeDB's SDKs cache its rows under its name); no primary key: rows are
        # keyed by their bytes.
        view_row = _view_row_type(view.return_type, typespace)
        if view_row is None or view.name in tables:
            continue
        factory = row_types.get(view.name) or namedtuple(class_name(view.name), view_row.field_names(), rename=True)
        tables[view.name] = TableSchema(
            view.name, view_row, typespace, (), view.is_public, factory, bsatn.codec(view_row, typespace)
        )
    reducers = {
        r.name: ReducerSchema(r.name, r.params, typespace, r.lifecycle.value if r.lifecycle else None)
        for r in definition.reducers
    }
    procedures = {p.name: ProcedureSchema(p.name, p.params, p.return_type, typespace) for p in definition.procedures}
    return ClientSchema(tables, reducers, typespace, definition, procedures)


def _view_row_type(returns: AlgebraicType, typespace: tuple[AlgebraicType, ...]) -> ProductType | None:
    """The row type of a view returning an array or an option of rows (None for any other return type)."""
    returns = moduledef.resolve(returns, typespace)
    if isinstance(returns, ArrayType):
        inner = returns.element
    elif is_option(returns):
        assert isinstance(returns, SumType)
        inner = returns.variants[0].type
    else:
        return None
    row = moduledef.resolve(inner, typespace)
    return row if isinstance(row, ProductType) else None


async def fetch_schema_json(
    session: aiohttp.ClientSession, base_url: str, database: str, token: str | None = None, version: int = 9
) -> dict[str, Any]:
    """`GET /v1/database/:name/schema?version=<9|10>` as parsed JSON; `SchemaError` on any failure.

    9 by default: every SpacetimeDB host that speaks the 2.x protocol serves it (10 came later); both read the same.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{base_url.rstrip('/')}/v1/database/{database}/schema"
    try:
        async with session.get(url, params={"version": str(version)}, headers=headers) as response:
            text = await response.text()
            if response.status == 401:
                raise AuthenticationError(f"GET {url} refused the token: {text[:200]}", status=401)
            if response.status != 200:
                raise SchemaError(f"GET {url} answered {response.status}: {text[:200]}")
            document: dict[str, Any] = json.loads(text)
            return document
    except (aiohttp.ClientError, json.JSONDecodeError) as exc:
        raise SchemaError(f"cannot fetch the schema from {url}: {exc}") from exc


async def fetch_schema(
    session: aiohttp.ClientSession,
    base_url: str,
    database: str,
    token: str | None = None,
    row_types: Mapping[str, RowFactory] | None = None,
) -> ClientSchema:
    """Fetch and parse the module schema."""
    return ClientSchema.from_json(await fetch_schema_json(session, base_url, database, token), row_types)
