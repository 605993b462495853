"""Typed bindings from a module schema: a typed row class per table, per product argument, and a method per reducer.

The SDK works without generated code (rows decode to namedtuples), but application code reads better, and mypy
catches more, with real classes: pass `ROW_TYPES` to `connect(..., row_types=...)` and rows arrive as the generated
classes; wrap a connection in `Reducers(conn)` and every reducer is a typed coroutine.

Every product the module's tables and reducers use gets a class: a table's row is named after the table
(`sync_event` → `SyncEvent`), an unnamed product in a reducer's parameters after the reducer and parameter
(`append_sync_events(batch: [product])` → `AppendSyncEventsBatchItem`; a product equal to a table's row is that
table's class). The classes are typed `NamedTuple`s: fields by name with their Python types, immutable, and still
the tuples the BSATN codec and the host's tables take, so using them changes no byte on the wire. Each has
`from_values` (from decoded values, e.g. a host row or a reducer argument), `encode` and `decode` (BSATN). The
output is plain Python that imports only the wire layer, never the SDK (not even for type checking: `Reducers` is
generic in what the caller's `call` returns, so `Reducers(conn)` answers the SDK's `ReducerCallResult` without naming
it), so a module and the floor-1 `sync_bindings/` may use it, and it passes `mypy --strict`.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Mapping
from typing import Any

from autopilot_sync.client.schema import ClientSchema, class_name
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, moduledef
from autopilot_sync.spacetime.algebraic import (
    AlgebraicType,
    ArrayType,
    Primitive,
    PrimitiveKind,
    ProductType,
    RefType,
    SumType,
)
from autopilot_sync.spacetime.errors import DecodeError

_SPECIAL_NAMES = {
    at.IDENTITY_TAG: "Identity",
    at.CONNECTION_ID_TAG: "ConnectionId",
    at.TIMESTAMP_TAG: "Timestamp",
    at.TIME_DURATION_TAG: "TimeDuration",
}
_BUILTINS = {"int", "float", "bool", "str", "bytes", "list", "tuple", "None"}
#: Names a `NamedTuple` field may not take (tuple methods and the generated ones).
_RESERVED_FIELDS = {"count", "index", "from_values", "encode", "decode"}
#: What every bindings file exports besides its classes.
_FIXED_EXPORTS = ("ROW_TYPES", "TABLES", "ReducerCaller", "Reducers")
#: Deepest type nesting the generator follows (a schema is bounded input).
_MAX_DEPTH = 16


def _q(text: str) -> str:
    """A double-quoted Python string literal (the project's style)."""
    return json.dumps(text)


def _literal(value: Any) -> str:
    """A Python literal of a JSON value (double quotes, as `_q`), for embedding SATS-JSON types."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_q(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return _q(value)
    if value is None or isinstance(value, bool | int):
        return repr(value)
    raise TypeError(f"not a JSON value: {value!r}")


def _all_order(name: str) -> tuple[int, str]:
    """The order ruff keeps `__all__` in (RUF022): constants, then classes, then the rest."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _py_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "_"
    if cleaned[0].isdigit():
        cleaned = f"_{cleaned}"
    return f"{cleaned}_" if keyword.iskeyword(cleaned) else cleaned


def _field_name(name: str) -> str:
    """A `NamedTuple` field name: no leading underscore, no keyword, no tuple method."""
    cleaned = _py_name(name)
    if cleaned.startswith("_"):
        cleaned = f"f{cleaned}"
    return f"{cleaned}_" if cleaned in _RESERVED_FIELDS else cleaned


def _column_defaults(schema: ClientSchema) -> dict[str, dict[int, str]]:
    """Per table, the Python literal of each column default (`ColumnDefaultValue`, BSATN).

    A column added to a table after its first release carries a default (SpacetimeDB's `AddColumns` migration), so
    the row class gets it too: a row of the older shape, from a host still serving the older module, decodes with
    the defaults, as the host itself reads its older rows. Only values with a plain literal (numbers, strings,
    bools, bytes) become defaults; a default that does not decode is ignored (the class is then only stricter).
    """
    out: dict[str, dict[int, str]] = {}
    for table_def in schema.definition.tables:
        table = schema.tables.get(table_def.name)
        if table is None:
            continue
        for default in table_def.defaults:
            if not 0 <= default.column < len(table.row_type.elements):
                continue
            try:
                value = bsatn.decode(table.row_type.elements[default.column].type, default.value, table.typespace)
            except (ValueError, TypeError, DecodeError):
                continue
            if isinstance(value, bool | int | float | str | bytes):
                out.setdefault(table.name, {})[default.column] = _q(value) if isinstance(value, str) else repr(value)
    return out


class _Classes:
    """The product classes to generate (name → product), found by walking tables and reducer parameters."""

    def __init__(self, schema: ClientSchema) -> None:
        self.typespace = tuple(schema.typespace)
        #: class name → {column: default literal}
        self.defaults: dict[str, dict[int, str]] = {}
        defaults = _column_defaults(schema)
        #: class name → (product, docstring), in generation order
        self.products: dict[str, tuple[ProductType, str]] = {}
        #: typespace index → class name, for references to a table's row type
        self.by_ref: dict[int, str] = {}
        #: table name → its row class
        self.tables: dict[str, str] = {}
        for table in schema.tables.values():
            name = self._unique(class_name(table.name))
            elements = table.row_type.elements
            key = ", ".join(f"`{_field_name(elements[c].name or f'field_{c}')}`" for c in table.primary_key)
            pk = f"; primary key {key}" if key else ""
            self.products[name] = (table.row_type, f"A row of table `{table.name}`{pk}.")
            self.tables[table.name] = name
            self.defaults[name] = defaults.get(table.name, {})
        for table_def in schema.definition.tables:
            if table_def.name in self.tables:
                self.by_ref.setdefault(table_def.product_type_ref, self.tables[table_def.name])
        for table in schema.tables.values():
            for element in table.row_type.elements:
                self._walk(element.type, class_name(table.name) + class_name(element.name or "field"), table.name, 0)
        for reducer in schema.reducers.values():
            for element in reducer.params.elements:
                hint = class_name(reducer.name) + class_name(element.name or "arg")
                self._walk(element.type, hint, f"reducer `{reducer.name}`", 0)

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.products:
            candidate, n = f"{name}{n}", n + 1
        return candidate

    def class_of(self, product: ProductType) -> str | None:
        """The generated class of a product (structurally equal products share one)."""
        for name, (known, _) in self.products.items():
            if known == product:
                return name
        return None

    def _walk(self, ty: AlgebraicType, hint: str, owner: str, depth: int) -> None:
        if depth > _MAX_DEPTH or isinstance(ty, RefType | Primitive):
            return  # references name table rows (already classes) or types whose annotation stays structural
        if isinstance(ty, ArrayType):
            self._walk(ty.element, f"{hint}Item", owner, depth + 1)
        elif at.is_option(ty):
            assert isinstance(ty, SumType)
            self._walk(ty.variants[0].type, hint, owner, depth + 1)
        elif isinstance(ty, ProductType) and ty.elements and at.special_tag(ty) is None:
            if self.class_of(ty) is None:
                self.products[self._unique(hint)] = (ty, f"A product value of {owner}.")
            for i, element in enumerate(ty.elements):
                self._walk(element.type, hint + class_name(element.name or f"field{i}"), owner, depth + 1)

    def annotation(self, ty: AlgebraicType, qualify: bool, depth: int = 0) -> str:
        """The Python annotation of a type; `qualify` writes `builtins.int` where a field shadows the name."""

        def b(name: str) -> str:
            return f"builtins.{name}" if qualify else name

        if depth > _MAX_DEPTH:
            return "Any"
        if isinstance(ty, RefType):
            if ty.index in self.by_ref:
                return self.by_ref[ty.index]
            return self.annotation(self.typespace[ty.index], qualify, depth + 1)
        if isinstance(ty, Primitive):
            if ty.kind is PrimitiveKind.STRING:
                return b("str")
            if ty.kind is PrimitiveKind.BOOL:
                return b("bool")
            if ty.kind in (PrimitiveKind.F32, PrimitiveKind.F64):
                return b("float")
            return b("int")
        if isinstance(ty, ArrayType):
            if ty.element == at.U8:
                return b("bytes")
            return f"{b('list')}[{self.annotation(ty.element, qualify, depth + 1)}]"
        special = at.special_tag(ty)
        if special is not None:
            return _SPECIAL_NAMES[special]
        if at.is_option(ty):
            assert isinstance(ty, SumType)
            return f"{self.annotation(ty.variants[0].type, qualify, depth + 1)} | None"
        if isinstance(ty, ProductType):
            cls = self.class_of(ty)
            if cls is not None:
                return cls
            if not ty.elements:
                return f"{b('tuple')}[()]"
            inner = ", ".join(self.annotation(e.type, qualify, depth + 1) for e in ty.elements)
            return f"{b('tuple')}[{inner}]"
        return "SumValue"

    def convert(self, expr: str, ty: AlgebraicType, depth: int = 0) -> str | None:
        """An expression turning the decoded value `expr` into its generated class; None when it needs nothing."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(ty, RefType):
            if ty.index in self.by_ref:
                return f"{self.by_ref[ty.index]}.from_values({expr})"
            return self.convert(expr, self.typespace[ty.index], depth + 1)
        if isinstance(ty, ArrayType):
            item = f"x{depth}"
            inner = self.convert(item, ty.element, depth + 1)
            return None if inner is None else f"[{inner} for {item} in {expr}]"
        if at.is_option(ty):
            assert isinstance(ty, SumType)
            inner = self.convert(expr, ty.variants[0].type, depth + 1)
            return None if inner is None else f"(None if {expr} is None else {inner})"
        if isinstance(ty, ProductType) and at.special_tag(ty) is None:
            cls = self.class_of(ty)
            return None if cls is None else f"{cls}.from_values({expr})"
        return None

    def type_json(self, name: str) -> Any:
        """The SATS-JSON of a class's type: a reference for a table's row, the product itself otherwise."""
        for index, cls in self.by_ref.items():
            if cls == name:
                return {"Ref": index}
        return at.to_json(self.products[name][0])


def _class_source(classes: _Classes, name: str, product: ProductType, doc: str) -> list[str]:
    fields = [(_field_name(e.name or f"field_{i}"), e.type) for i, e in enumerate(product.elements)]
    qualify = any(field in _BUILTINS for field, _ in fields)
    known = classes.defaults.get(name, {})
    first_default = len(fields)  # only a trailing run of columns can have defaults (added at the end)
    while first_default > 0 and first_default - 1 in known:
        first_default -= 1
    out = ["", "", f"class {name}(NamedTuple):", f'    """{doc}"""', ""]
    out += [
        f"    {field}: {classes.annotation(ty, qualify)}" + (f" = {known[i]}" if i >= first_default else "")
        for i, (field, ty) in enumerate(fields)
    ]
    conversions = [classes.convert(f"values[{i}]", ty) for i, (_, ty) in enumerate(fields)]
    if any(c is not None for c in conversions):
        args = ", ".join(c if c is not None else f"values[{i}]" for i, c in enumerate(conversions))
        build = f"cls({args})"
    else:
        build = "cls._make(values)"
    out += [
        "",
        "    @classmethod",
        f"    def from_values(cls, values: Sequence[Any]) -> {name}:",
        '        """From decoded values in wire order: a host row, a reducer argument, a `decode` result."""',
        f"        return {build}",
        "",
        "    def encode(self) -> builtins.bytes:",
        '        """The BSATN bytes of this value, as the wire carries them."""',
        f"        return _codec({_q(name)}).encode(self)",
        "",
        "    @classmethod",
        f"    def decode(cls, data: builtins.bytes) -> {name}:",
        '        """The value of these BSATN bytes (raises `DecodeError` when they are not one)."""',
        f"        return cls.from_values(_codec({_q(name)}).decode(data))",
    ]
    return out


def generate(
    document: Mapping[str, Any] | moduledef.ModuleDef, source: str = "", command: str = "autopilot-sync client generate"
) -> str:
    """The Python source of the bindings for a module definition, or a `RawModuleDefV9`/`V10` document of one.

    `command` is what the header tells a reader to run to regenerate the file (with its arguments when known).
    """
    if isinstance(document, moduledef.ModuleDef):
        schema = ClientSchema.from_definition(document)
    else:
        schema = ClientSchema.from_json(document)  # a document that is not a schema is a SchemaError
    classes = _Classes(schema)
    names = list(classes.products)
    out: list[str] = [
        f'"""Bindings generated by `{command}`{f" from {source}" if source else ""}.',
        "",
        "Do not edit: regenerate with that command when the module changes.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        "from __future__ import annotations",
        "",
        "import builtins",
        "import functools",
        "from collections.abc import Callable, Sequence",
        "from typing import Any, Generic, NamedTuple, Protocol, TypeVar",
        "",
        "from autopilot_sync.spacetime import algebraic as at",
        "from autopilot_sync.spacetime import bsatn",
        "from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp",
        "",
        "__all__ = [",
        *[f"    {_q(n)}," for n in sorted([*names, *_FIXED_EXPORTS], key=_all_order)],
        "]",
        "",
        "# Names used by some modules' annotations only; referenced here so linters keep the imports.",
        "_USED = (builtins, Any, ConnectionId, Identity, SumValue, TimeDuration, Timestamp)",
        "",
        "#: The module's typespace and each class's type in it (SATS-JSON, as the schema route serves them).",
        f"_TYPESPACE: list[Any] = {_literal([at.to_json(t) for t in schema.typespace])}",
        "_TYPES: dict[str, Any] = {",
        *[f"    {_q(n)}: {_literal(classes.type_json(n))}," for n in names],
        "}",
        "",
        "",
        "@functools.cache",
        "def _codec(name: str) -> bsatn.Codec:",
        '    """The BSATN codec of a generated class, compiled on first use."""',
        "    return bsatn.codec(at.from_json(_TYPES[name]), [at.from_json(t) for t in _TYPESPACE])",
    ]
    for name, (product, doc) in classes.products.items():
        out += _class_source(classes, name, product, doc)
    table_classes = list(classes.tables.items())
    out += [
        "",
        "",
        "#: Table name → row class; pass as `connect(..., row_types=ROW_TYPES)`.",
        "ROW_TYPES: dict[str, Callable[..., Any]] = {",
        *[f"    {_q(table)}: {cls}," for table, cls in table_classes],
        "}",
        "TABLES: tuple[str, ...] = (",
        *[f"    {_q(table)}," for table, _ in table_classes],
        ")",
        "",
        "",
        "#: What the caller's `call` answers: the SDK's `ReducerCallResult` for a `Connection` or a `SyncClient`.",
        '_ResultT_co = TypeVar("_ResultT_co", covariant=True)',
        "",
        "",
        "class ReducerCaller(Protocol[_ResultT_co]):",
        '    """Anything that calls reducers: a `Connection` or a `SyncClient`."""',
        "",
        "    async def call(self, reducer: str, *args: Any) -> _ResultT_co:",
        '        """Call a reducer by name with positional arguments."""',
        "        ...",
        "",
        "",
        "class Reducers(Generic[_ResultT_co]):",
        '    """Typed reducer calls: `await Reducers(conn).add_person("ann", 3)` answers what `conn.call` answers."""',
        "",
        "    def __init__(self, client: ReducerCaller[_ResultT_co]) -> None:",
        "        self._client = client",
    ]
    method_names = {_py_name(r.name) for r in schema.reducers.values()}
    for reducer in schema.reducers.values():
        if reducer.lifecycle is not None:
            continue
        params = [(_py_name(e.name or f"arg{i}"), e.type) for i, e in enumerate(reducer.params.elements)]
        qualify = bool(method_names & _BUILTINS) or any(n in _BUILTINS for n, _ in params)
        signature = "".join(f", {name}: {classes.annotation(ty, qualify)}" for name, ty in params)
        call_args = "".join(f", {name}" for name, _ in params)
        out += [
            "",
            f"    async def {_py_name(reducer.name)}(self{signature}) -> _ResultT_co:",
            f'        """Call reducer `{reducer.name}`."""',
            f"        return await self._client.call({_q(reducer.name)}{call_args})",
        ]
    out.append("")
    return "\n".join(out)
