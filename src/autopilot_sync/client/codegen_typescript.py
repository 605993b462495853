"""Module bindings for the official SpacetimeDB TypeScript SDK (npm `spacetimedb` 2.x), from a module schema.

`spacetime generate --lang typescript` writes a `module_bindings/` folder for the SDK: `index.ts` (the typed
`DbConnection`, `tables`, `reducers`), one `<table>_table.ts` per table (the row's columns), one
`<reducer>_reducer.ts` per invokable reducer (its parameters) and `types.ts` (the module's named types). This writes
the same folder from the same `RawModuleDefV9` JSON (`GET /v1/database/:name/schema?version=9`), so a TypeScript app
works against our host, and against SpacetimeDB itself, with the SDK unchanged (a V10 document is read too, through
`spacetime.moduledef`).

Two flavours of the same values: `typescript` (`.ts` files, imports without extension as the real generator writes
them, plus a `type` alias per named type) and `javascript` (`.mjs` files with `.mjs` imports and no type aliases),
which plain Node runs without a compiler. Every runtime value is identical between them; the tests run the
JavaScript flavour against a real host with the official SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.algebraic import (
    AlgebraicType,
    ArrayType,
    Primitive,
    PrimitiveKind,
    ProductType,
    RefType,
    SumType,
)

Flavour = Literal["typescript", "javascript"]

#: What the official generator's output claims to come from (the SDK reads only the shape of this object).
CLI_VERSION = "2.0.0"

_SPECIAL = {
    at.IDENTITY_TAG: "__t.identity()",
    at.CONNECTION_ID_TAG: "__t.connectionId()",
    at.TIMESTAMP_TAG: "__t.timestamp()",
    at.TIME_DURATION_TAG: "__t.timeDuration()",
}
_PRIMITIVE = {
    PrimitiveKind.BOOL: "bool",
    PrimitiveKind.STRING: "string",
    PrimitiveKind.F32: "f32",
    PrimitiveKind.F64: "f64",
}


class TypeScriptCodegenError(ValueError):
    """The schema cannot be written as bindings (a malformed document or a type the SDK cannot express)."""


def camel(name: str) -> str:
    """`snake_case` → `camelCase`, as the real generator names table accessors and columns."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def pascal(name: str) -> str:
    """`snake_case` → `PascalCase` (import names of row and reducer schemas)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part)


#: Word boundaries of SpacetimeDB's type-name casing (`convert_case` 0.6's defaults): `_`, `-` and spaces, a lower
#: letter before an upper one, a digit next to a letter, and the last capital of an acronym before a lower letter.
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def type_name(segments: Sequence[str]) -> str:
    """A named type's identifier as `spacetime generate` writes it: each segment of its scoped name PascalCased
    (every word capitalised, the rest lower case, `HTTPServer` → `HttpServer`, `point_2d` → `Point2D`) and joined
    without a delimiter (`crates/codegen/src/util.rs` `type_ref_name`, `collect_case(Case::Pascal, ...)`)."""
    return "".join(word[:1].upper() + word[1:].lower() for segment in segments for word in _WORDS.findall(segment))


def _some(value: Any) -> Any:
    """The payload of a SATS-JSON option (`{"some": x}` → x, `{"none": []}` → None); a plain value as it is."""
    if isinstance(value, dict) and len(value) == 1:
        if "some" in value:
            return value["some"]
        if "none" in value:
            return None
    return value


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[tuple[str, AlgebraicType], ...]
    primary_key: tuple[int, ...]
    indexes: tuple[tuple[str, str, tuple[int, ...]], ...]  # (accessor, name, columns)
    uniques: tuple[tuple[str, tuple[int, ...]], ...]  # (name, columns)


@dataclass(frozen=True, slots=True)
class _Reducer:
    name: str
    params: tuple[tuple[str, AlgebraicType], ...]


@dataclass(frozen=True, slots=True)
class _Procedure:
    name: str
    params: tuple[tuple[str, AlgebraicType], ...]
    returns: AlgebraicType


class _Schema:
    """The parts of a RawModuleDefV9 document the bindings need."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        try:
            self.typespace = tuple(at.from_json(t) for t in document["typespace"]["types"])
            self.type_names: dict[int, str] = {}
            #: the scoped name as the module wrote it, by which the real generator orders the named types
            self.raw_type_names: dict[int, tuple[str, ...]] = {}
            for raw in document.get("types", []):
                name = raw["name"]
                scoped = (*(str(s) for s in name.get("scope", [])), str(name["name"]))
                self.raw_type_names[int(raw["ty"])] = scoped
                self.type_names[int(raw["ty"])] = type_name(scoped)
            # a product or sum written inline that equals a named type is that type (the module inlines the
            # row type of a scheduled reducer's parameter; the real generator refers to it by name)
            self.by_structure: dict[AlgebraicType, str] = {}
            for index, name in self.type_names.items():
                if isinstance(self.typespace[index], ProductType | SumType):
                    self.by_structure.setdefault(self.typespace[index], name.replace(".", "_"))
            tables = [self._table(raw) for raw in document["tables"]]
            # a view is read like a table (the SDK caches its rows under its name): no key, no index
            for export in document.get("misc_exports", []):
                view = export.get("View")
                if view is not None and (columns := self._view_columns(at.from_json(view["return_type"]))):
                    tables.append(_Table(str(view["name"]), columns, (), (), ()))
            self.tables = tuple(sorted(tables, key=lambda t: t.name))
            self.reducers = tuple(
                sorted(
                    (
                        _Reducer(str(raw["name"]), self._fields(at.from_json({"Product": raw["params"]})))
                        for raw in document["reducers"]
                        if _some(raw.get("lifecycle")) is None
                    ),
                    key=lambda r: r.name,
                )
            )
            self.procedures = tuple(
                sorted(
                    (
                        _Procedure(
                            str(raw["name"]),
                            self._fields(at.from_json({"Product": raw["params"]})),
                            at.from_json(raw["return_type"]),
                        )
                        for export in document.get("misc_exports", [])
                        if (raw := export.get("Procedure")) is not None
                    ),
                    key=lambda p: p.name,
                )
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TypeScriptCodegenError(f"not a RawModuleDefV9 document: {exc!r:.200}") from None

    def _view_columns(self, returns: AlgebraicType) -> tuple[tuple[str, AlgebraicType], ...]:
        """The columns of a view's rows (it returns an array or an option of a product); none for another shape."""
        while isinstance(returns, RefType):
            returns = self.typespace[returns.index]
        if isinstance(returns, ArrayType):
            row = returns.element
        elif at.is_option(returns):
            assert isinstance(returns, SumType)
            row = returns.variants[0].type
        else:
            return ()
        while isinstance(row, RefType):
            row = self.typespace[row.index]
        return self._fields(row) if isinstance(row, ProductType) else ()

    def _fields(self, ty: AlgebraicType) -> tuple[tuple[str, AlgebraicType], ...]:
        if not isinstance(ty, ProductType):
            raise TypeScriptCodegenError("a row or parameter list is not a product type")
        return tuple((e.name or f"field{i}", e.type) for i, e in enumerate(ty.elements))

    def _table(self, raw: Mapping[str, Any]) -> _Table:
        name = str(raw["name"])
        ref = int(raw["product_type_ref"])
        columns = self._fields(self.typespace[ref])
        indexes = []
        for index in raw.get("indexes", []):
            algorithm = index["algorithm"]
            if "BTree" not in algorithm:
                continue
            cols = tuple(int(c) for c in algorithm["BTree"])  # SpacetimeDB's newtype form, `{"BTree": [0]}`
            accessor = _some(index.get("accessor_name")) or "_".join(columns[c][0] for c in cols)
            indexes.append((str(accessor), str(_some(index.get("name")) or ""), cols))
        uniques = []
        for constraint in raw.get("constraints", []):
            data = constraint["data"]
            if "Unique" in data:
                uniques.append(
                    (str(_some(constraint.get("name")) or ""), tuple(int(c) for c in data["Unique"]["columns"]))
                )
        primary_key = tuple(int(c) for c in raw.get("primary_key", []))
        return _Table(name, columns, primary_key, tuple(indexes), tuple(uniques))

    def builder(self, ty: AlgebraicType) -> str:
        """The `__t` expression of a type (a named type by its name, as the real generator refers to it)."""
        named = self.named(ty)
        if named is not None:
            return named
        if isinstance(ty, RefType):
            return self.builder(self.typespace[ty.index])
        if isinstance(ty, Primitive):
            return f"__t.{_PRIMITIVE.get(ty.kind, ty.kind.name.lower())}()"
        if isinstance(ty, ArrayType):
            if ty.element == at.U8:
                return "__t.byteArray()"
            return f"__t.array({self.builder(ty.element)})"
        tag = at.special_tag(ty)
        if tag is not None:
            return _SPECIAL[tag]
        if at.is_schedule_at(ty):
            return "__t.scheduleAt()"
        if at.is_option(ty):
            assert isinstance(ty, SumType)
            return f"__t.option({self.builder(ty.variants[0].type)})"
        if isinstance(ty, ProductType):
            if not ty.elements:
                return "__t.unit()"
            fields = ", ".join(f"{camel(n)}: {self.builder(t)}" for n, t in self._fields(ty))
            return f'__t.object("Anonymous", {{ {fields} }})'
        if isinstance(ty, SumType):
            variants = ", ".join(
                f"{v.name or f'variant{i}'}: {self.builder(v.type)}" for i, v in enumerate(ty.variants)
            )
            return f'__t.enum("Anonymous", {{ {variants} }})'
        raise TypeScriptCodegenError(f"no TypeScript SDK type for {ty!r:.100}")

    def named(self, ty: AlgebraicType) -> str | None:
        """The name of a named type a field refers to (fields of a named type become getters, as generated)."""
        if isinstance(ty, RefType):
            name = self.type_names.get(ty.index)
            return name.replace(".", "_") if name is not None else None
        if (
            isinstance(ty, ProductType | SumType)
            and not at.is_option(ty)
            and not at.is_schedule_at(ty)
            and at.special_tag(ty) is None
        ):
            return self.by_structure.get(ty)
        return None


def _header(source: str) -> list[str]:
    origin = f" from {source}" if source else ""
    return [
        f"// THIS FILE IS AUTOMATICALLY GENERATED BY `autopilot-sync client generate --lang typescript`{origin}.",
        "// Do not edit: regenerate when the module changes. Same shape as `spacetime generate --lang typescript`.",
        "",
        "/* eslint-disable */",
        "/* tslint:disable */",
    ]


def _field_lines(
    schema: _Schema, fields: Sequence[tuple[str, AlgebraicType]], primary_key: Sequence[int], *, rename: bool
) -> list[str]:
    """`camelName: __t.type(),` per field; a table's columns also carry their wire name (`.name("snake_name")`)."""
    lines = []
    for position, (name, ty) in enumerate(fields):
        expr = schema.builder(ty)
        if position in primary_key and len(primary_key) == 1:
            expr += ".primaryKey()"
        if rename and camel(name) != name:
            expr += f'.name("{name}")'
        lines.append(f"  {camel(name)}: {expr},")
    return lines


def _procedure_schema(name: str) -> str:
    """One entry of the index's `__procedures(...)`, as SpacetimeDB's generator writes it."""
    module = f"{pascal(name)}Procedure"
    return f'  __procedureSchema("{name}", {module}.params, {module}.returnType),'


def _uses_types(schema: _Schema, fields: Sequence[tuple[str, AlgebraicType]]) -> list[str]:
    found: list[str] = []

    def walk(ty: AlgebraicType) -> None:
        named = schema.named(ty)
        if named is not None:
            if named not in found:
                found.append(named)
            return
        if isinstance(ty, ArrayType):
            walk(ty.element)
        elif isinstance(ty, ProductType):
            for element in ty.elements:
                walk(element.type)
        elif isinstance(ty, SumType):
            for variant in ty.variants:
                walk(variant.type)

    for _, ty in fields:
        walk(ty)
    return found


def _in_dependency_order(schema: _Schema) -> list[tuple[int, str]]:
    """Named types by name, each moved after the named types its fields refer to (a TypeScript module's reducer
    parameters and rows refer to other named types, e.g. a scheduled reducer's row)."""
    by_ident = {name.replace(".", "_"): index for index, name in schema.type_names.items()}
    ordered: list[tuple[int, str]] = []
    placed: set[int] = set()

    def place(index: int, path: frozenset[int]) -> None:
        if index in placed or index in path:  # a cycle is left in name order (its types refer by name)
            return
        ty = schema.typespace[index]
        fields: list[tuple[str, AlgebraicType]] = []
        if isinstance(ty, ProductType):
            fields = [(e.name or "", e.type) for e in ty.elements]
        elif isinstance(ty, SumType):
            fields = [(v.name or "", v.type) for v in ty.variants]
        for used in _uses_types(schema, fields):
            if used in by_ident and by_ident[used] != index:
                place(by_ident[used], path | {index})
        placed.add(index)
        ordered.append((index, schema.type_names[index]))

    for index in sorted(schema.type_names, key=lambda i: schema.raw_type_names[i]):
        place(index, frozenset())
    return ordered


def generate_typescript(
    document: Mapping[str, Any], source: str = "", flavour: Flavour = "typescript"
) -> dict[str, str]:
    """File name → text of the bindings folder for a RawModuleDefV9 or RawModuleDefV10 document."""
    try:  # either version, read through the one module-definition model, as V9 (what the parser below reads)
        document = moduledef.to_json(moduledef.from_json(document), 9)
    except (moduledef.ModuleDefError, KeyError, TypeError, ValueError) as exc:
        raise TypeScriptCodegenError(f"not a module definition document: {exc}") from None
    schema = _Schema(document)
    ts = flavour == "typescript"
    ext = ".ts" if ts else ".mjs"

    def spec(stem: str) -> str:
        return f"./{stem}" if ts else f"./{stem}.mjs"

    files: dict[str, str] = {}
    # types: every named type, in name order, each after the named types it refers to (a `const` must exist first)
    types_out = _header(source)
    types_out.append(
        'import { t as __t, type Infer as __Infer } from "spacetimedb";'
        if ts
        else 'import { t as __t } from "spacetimedb";'
    )
    for index, name in _in_dependency_order(schema):
        ident = name.replace(".", "_")
        ty = schema.typespace[index]
        types_out.append("")
        if isinstance(ty, ProductType):
            types_out.append(f'export const {ident} = __t.object("{name}", {{')
            types_out += _field_lines(schema, schema._fields(ty), (), rename=False)
            types_out.append("});")
        elif isinstance(ty, SumType):
            types_out.append(f'export const {ident} = __t.enum("{name}", {{')
            types_out += [f"  {v.name or f'variant{i}'}: {schema.builder(v.type)}," for i, v in enumerate(ty.variants)]
            types_out.append("});")
        else:
            types_out.append(f"export const {ident} = {schema.builder(ty)};")
        if ts:
            types_out.append(f"export type {ident} = __Infer<typeof {ident}>;")
    files[f"types{ext}"] = "\n".join(types_out) + "\n"

    for table in schema.tables:
        out = [*_header(source), 'import { t as __t } from "spacetimedb";']
        used = _uses_types(schema, table.columns)
        if used:
            out.append(f'import {{ {", ".join(used)} }} from "{spec("types")}";')
        out += [
            "",
            "export default __t.row({",
            *_field_lines(schema, table.columns, table.primary_key, rename=True),
            "});",
        ]
        files[f"{table.name}_table{ext}"] = "\n".join(out) + "\n"

    for reducer in schema.reducers:
        out = [*_header(source), 'import { t as __t } from "spacetimedb";']
        used = _uses_types(schema, reducer.params)
        if used:
            out.append(f'import {{ {", ".join(used)} }} from "{spec("types")}";')
        out.append("")
        if not reducer.params:
            out.append("export default {};")
        else:
            out.append("export default {")
            for name, ty in reducer.params:
                named = schema.named(ty)
                if named is not None:  # a getter, as generated: the named type may be defined later
                    out += [f"  get {camel(name)}() {{", f"    return {named};", "  },"]
                else:
                    out.append(f"  {camel(name)}: {schema.builder(ty)},")
            out.append("};")
        files[f"{reducer.name}_reducer{ext}"] = "\n".join(out) + "\n"

    for procedure in schema.procedures:  # as SpacetimeDB's generator writes them: `params` and `returnType`
        out = [*_header(source), 'import { t as __t } from "spacetimedb";']
        used = _uses_types(schema, (*procedure.params, ("", procedure.returns)))
        if used:
            out.append(f'import {{ {", ".join(used)} }} from "{spec("types")}";')
        out += ["", "export const params = {"]
        for name, ty in procedure.params:
            named = schema.named(ty)
            if named is not None:
                out += [f"  get {camel(name)}() {{", f"    return {named};", "  },"]
            else:
                out.append(f"  {camel(name)}: {schema.builder(ty)},")
        out += ["};", f"export const returnType = {schema.builder(procedure.returns)};"]
        files[f"{procedure.name}_procedure{ext}"] = "\n".join(out) + "\n"

    files[f"index{ext}"] = _index(schema, source, ts, spec)
    return files


def _index(schema: _Schema, source: str, ts: bool, spec: Any) -> str:
    out = [
        *_header(source),
        "import {",
        "  DbConnectionBuilder as __DbConnectionBuilder,",
        "  DbConnectionImpl as __DbConnectionImpl,",
        "  SubscriptionBuilderImpl as __SubscriptionBuilderImpl,",
        "  convertToAccessorMap as __convertToAccessorMap,",
        "  makeQueryBuilder as __makeQueryBuilder,",
        *(["  procedureSchema as __procedureSchema,"] if schema.procedures else []),
        "  procedures as __procedures,",
        "  reducerSchema as __reducerSchema,",
        "  reducers as __reducers,",
        "  schema as __schema,",
        "  table as __table,",
        *(["  type DbConnectionConfig as __DbConnectionConfig,"] if ts else []),
        '} from "spacetimedb";',
        "",
        "// Import all reducer arg schemas",
        *[f'import {pascal(r.name)}Reducer from "{spec(f"{r.name}_reducer")}";' for r in schema.reducers],
        "",
        "// Import all procedure arg schemas",
        *[f'import * as {pascal(p.name)}Procedure from "{spec(f"{p.name}_procedure")}";' for p in schema.procedures],
        "",
        "// Import all table schema definitions",
        *[f'import {pascal(t.name)}Row from "{spec(f"{t.name}_table")}";' for t in schema.tables],
        "",
        "/** The schema information for all tables in this module. */",
        "const tablesSchema = __schema({",
    ]
    for table in schema.tables:
        names = [camel(name) for name, _ in table.columns]
        out += [f"  {camel(table.name)}: __table({{", f"    name: '{table.name}',", "    indexes: ["]
        for accessor, index_name, cols in table.indexes:
            out.append(f"      {{ accessor: '{accessor}', name: '{index_name}', algorithm: 'btree', columns: [")
            out += [f"        '{names[c]}'," for c in cols]
            out.append("      ] },")
        out += ["    ],", "    constraints: ["]
        for constraint_name, cols in table.uniques:
            columns = ", ".join(f"'{names[c]}'" for c in cols)
            out.append(f"      {{ name: '{constraint_name}', constraint: 'unique', columns: [{columns}] }},")
        out += ["    ],", f"  }}, {pascal(table.name)}Row),"]
    out += [
        "});",
        "",
        "/** The schema information for all reducers in this module. */",
        "const reducersSchema = __reducers(",
        *[f'  __reducerSchema("{r.name}", {pascal(r.name)}Reducer),' for r in schema.reducers],
        ");",
        "",
        "/** The schema information for all procedures in this module. */",
        *(
            [
                "const proceduresSchema = __procedures(",
                *[_procedure_schema(p.name) for p in schema.procedures],
                ");",
            ]
            if schema.procedures
            else ["const proceduresSchema = __procedures();"]
        ),
        "",
        "/** The remote SpacetimeDB module schema, both runtime and type information. */",
        "const REMOTE_MODULE = {",
        "  versionInfo: {",
        f'    cliVersion: "{CLI_VERSION}",',
        "  },",
        "  tables: tablesSchema.schemaType.tables,",
        "  reducers: reducersSchema.reducersType.reducers,",
        "  ...proceduresSchema,",
        "}" + (" as const;" if ts else ";"),
        "",
        *_aliases(schema, ts),
        "",
        "/** The reducers available in this remote SpacetimeDB module. */",
        "export const reducers = __convertToAccessorMap(reducersSchema.reducersType.reducers);",
        "",
        "/** The procedures available in this remote SpacetimeDB module. */",
        "export const procedures = __convertToAccessorMap(proceduresSchema.procedures);",
        "",
        "/** Builder class to configure a new subscription to the remote SpacetimeDB instance. */",
        "export class SubscriptionBuilder extends __SubscriptionBuilderImpl"
        + ("<typeof REMOTE_MODULE> {}" if ts else " {}"),
        "",
        "/** Builder class to configure a new database connection to the remote SpacetimeDB instance. */",
        "export class DbConnectionBuilder extends __DbConnectionBuilder" + ("<DbConnection> {}" if ts else " {}"),
        "",
        "/** The typed database connection to manage connections to the remote SpacetimeDB instance. */",
        "export class DbConnection extends __DbConnectionImpl" + ("<typeof REMOTE_MODULE> {" if ts else " {"),
        *(
            [
                "  constructor(config" + (": __DbConnectionConfig<typeof REMOTE_MODULE>" if ts else "") + ") {",
                "    super(config);",
                "    this.db = __withTableAccessorAliases(this.db);",
                "  }",
                "",
            ]
            if _alias_map(schema)
            else []
        ),
        "  /** Creates a new {@link DbConnectionBuilder} to configure and connect to the remote SpacetimeDB. */",
        "  static builder = () => {",
        "    return new DbConnectionBuilder(REMOTE_MODULE, "
        + ("(config: __DbConnectionConfig<typeof REMOTE_MODULE>)" if ts else "(config)")
        + " => new DbConnection(config));",
        "  };",
        "",
        "  /** Creates a new {@link SubscriptionBuilder} to configure a subscription. */",
        "  subscriptionBuilder = () => {",
        "    return new SubscriptionBuilder(this);",
        "  };",
        "}",
        "",
        "export { REMOTE_MODULE };",
    ]
    return "\n".join(out) + "\n"


def _alias_map(schema: _Schema) -> dict[str, str]:
    """Snake-case table names whose accessor is camel-cased: the generator keeps the old name as an alias."""
    return {t.name: camel(t.name) for t in schema.tables if camel(t.name) != t.name}


def _aliases(schema: _Schema, ts: bool) -> list[str]:
    """`tables`, with the deprecated snake-case accessors the real generator still provides when any differ."""
    doc = "/** The tables available in this remote SpacetimeDB module. Each table doubles as a query builder. */"
    aliases = _alias_map(schema)
    if not aliases:
        return [doc, "export const tables = __makeQueryBuilder(tablesSchema.schemaType);"]
    signature = "<T extends object>(target: T, freeze = false): T" if ts else "(target, freeze = false)"
    return [
        "const tableAccessorAliases = {",
        *[f'  "{old}": "{new}",' for old, new in aliases.items()],
        "}" + (" as const;" if ts else ";"),
        "",
        f"function __withTableAccessorAliases{signature} {{",
        "  const out = Object.create(Object.getPrototypeOf(target));",
        "  Object.defineProperties(out, Object.getOwnPropertyDescriptors(target));",
        "  for (const [deprecatedAccessor, targetAccessor] of Object.entries(tableAccessorAliases)) {",
        "    if (deprecatedAccessor in out) {",
        "      continue;",
        "    }",
        "    Object.defineProperty(out, deprecatedAccessor, {",
        "      enumerable: true,",
        "      configurable: false,",
        "      get: () => out[targetAccessor],",
        "    });",
        "  }",
        "  return freeze ? Object.freeze(out) : out;",
        "}",
        "",
        doc,
        "const tablesBase = __makeQueryBuilder(tablesSchema.schemaType);",
        "export const tables = __withTableAccessorAliases(tablesBase, true);",
    ]
