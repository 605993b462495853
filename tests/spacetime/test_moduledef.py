"""The module definition in both `RawModuleDef` versions: one model, lossless round trips, a stable V9 hash.

`spacetime/moduledef` is the one place the schema is written and read (host route, SDK, code generator, upgrade
check, publish lane); these tests pin what each of those relies on. The official library's own check of our V10
bytes is in `test_a_v10_definition_is_decoded_by_the_official_librarys_own_type` (node), and our reading of the
library's own description of a TypeScript module in tests/jsmodule/test_module_description.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.module import module as sync_module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.moduledef import Lifecycle, ModuleDef, ModuleDefError, v9, v10

CONFORMANCE_MODULES = Path(__file__).resolve().parents[2] / "conformance" / "node_modules"
JUDGE = Path(__file__).with_name("moduledef_judge.mjs")
MODULES = {"sync": sync_module, "chat": chat}


def golden_module() -> Module:
    """Every feature the schema carries: keys, unique, index, auto-increment, schedule, private, event, defaults,
    lifecycle reducers, a visibility filter."""
    module = Module("golden", version="3")
    module.table(
        "item",
        [("id", at.U64), ("sku", at.STRING), ("shelf", at.U32), ("note", at.option(at.STRING)), ("qty", at.I32)],
        primary_key="id",
        unique=[("sku",)],
        indexes=[("shelf",), ("shelf", "sku")],
        auto_inc=("id",),
        defaults={"qty": 0, "note": None},
    )
    module.table("secret", [("owner", at.IDENTITY), ("value", at.BYTES)], public=False)
    module.table("ping", [("at", at.TIMESTAMP), ("who", at.CONNECTION_ID)], event=True)
    module.table(
        "tick",
        [("scheduled_id", at.U64), ("scheduled_at", at.SCHEDULE_AT), ("label", at.array(at.STRING))],
        primary_key="scheduled_id",
        auto_inc=("scheduled_id",),
        scheduled_reducer="on_tick",
    )

    def noop(ctx: object, *args: object) -> None:
        return None

    module.init(noop)
    module.client_connected(noop)
    module.reducer(("row", at.RefType(3)), name="on_tick")(noop)
    module.reducer(("sku", at.STRING), ("kind", at.sum_type(("A", at.UNIT), ("B", at.U8))), name="add")(noop)
    module.client_visibility_filter("secret", "SELECT * FROM secret WHERE owner = :sender")
    return module


#: `golden_module().schema_hash()` as computed before the schema moved into `spacetime/moduledef` (main at 14ee310):
#: data directories store this digest, so it must never change for an unchanged module.
GOLDEN_HASH = "f4404ccb1f75ad1bcf953b058d7abb2434a2bd8a842a9a433ec1e0fbb80d3808"


def test_the_v9_schema_hash_is_the_one_data_directories_already_store() -> None:
    module = golden_module()
    assert module.schema_hash() == GOLDEN_HASH
    assert moduledef.schema_hash(module.module_def()) == GOLDEN_HASH
    assert moduledef.schema_hash(module.schema_json()) == GOLDEN_HASH


@pytest.mark.parametrize("name", ["sync", "chat", "golden"])
@pytest.mark.parametrize("version", [9, 10])
def test_json_round_trips_to_the_same_definition(name: str, version: int) -> None:
    definition = (golden_module() if name == "golden" else MODULES[name]).module_def()
    document = json.loads(json.dumps(moduledef.to_json(definition, version)))  # through real JSON text
    read = moduledef.from_json(document)
    if version == 9:  # V9 has no event flag (SpacetimeDB drops it too)
        definition = ModuleDef(
            **{
                **{f: getattr(definition, f) for f in definition.__dataclass_fields__},
                "tables": tuple(_without_event(t) for t in definition.tables),
            }
        )
    assert read == definition


def _without_event(table: moduledef.TableDef) -> moduledef.TableDef:
    return moduledef.TableDef(**{**{f: getattr(table, f) for f in table.__dataclass_fields__}, "is_event": False})


@pytest.mark.parametrize("name", ["sync", "chat", "golden"])
def test_v9_and_v10_convert_into_each_other_without_loss(name: str) -> None:
    definition = (golden_module() if name == "golden" else MODULES[name]).module_def()
    from_v10 = moduledef.from_json(moduledef.to_json(definition, 10))
    from_v9 = moduledef.from_json(moduledef.to_json(definition, 9))
    assert moduledef.to_json(from_v10, 9) == moduledef.to_json(definition, 9)
    assert moduledef.schema_hash(from_v10) == moduledef.schema_hash(from_v9) == moduledef.schema_hash(definition)
    if not any(t.is_event for t in definition.tables):
        assert moduledef.to_json(from_v9, 10) == moduledef.to_json(definition, 10)


@pytest.mark.parametrize("name", ["sync", "chat", "golden"])
def test_bsatn_round_trips_in_both_versions(name: str) -> None:
    definition = (golden_module() if name == "golden" else MODULES[name]).module_def()
    assert v10.from_bsatn(v10.to_bsatn(definition)) == definition
    assert moduledef.from_raw_module_def_bsatn(moduledef.to_raw_module_def_bsatn(definition)) == definition
    assert v9.from_bsatn(v9.to_bsatn(definition)) == moduledef.from_json(v9.to_json(definition))


def test_v10_is_laid_out_as_spacetimedb_serves_it() -> None:
    """Sections in `From<ModuleDef> for RawModuleDefV10` order, schedules and lifecycles apart, names explicit."""
    document = moduledef.to_json(golden_module().module_def(), 10)
    sections = [next(iter(section)) for section in document["sections"]]
    assert sections == [
        "Typespace",
        "Types",
        "Tables",
        "Reducers",
        "Schedules",
        "LifeCycleReducers",
        "RowLevelSecurity",
        "ExplicitNames",
    ]
    body = {next(iter(s)): next(iter(s.values())) for s in document["sections"]}
    assert body["Schedules"] == [
        {"source_name": {"some": "tick_sched"}, "table_name": "tick", "schedule_at_col": 1, "function_name": "on_tick"}
    ]
    assert body["LifeCycleReducers"] == [
        {"lifecycle_spec": {"Init": []}, "function_name": "init"},
        {"lifecycle_spec": {"OnConnect": []}, "function_name": "client_connected"},
    ]
    visibility = {r["source_name"]: next(iter(r["visibility"])) for r in body["Reducers"]}
    assert visibility == {
        "init": "Private",
        "client_connected": "Private",
        "on_tick": "Private",
        "add": "ClientCallable",
    }
    item = body["Tables"][0]
    assert item["default_values"] == [{"col_id": 4, "value": "00000000"}, {"col_id": 3, "value": "01"}]
    assert [t["is_event"] for t in body["Tables"]] == [False, False, True, False]
    assert {"Table": {"source_name": "item", "canonical_name": "item"}} in body["ExplicitNames"]["entries"]


def test_v10_names_follow_explicit_names_then_the_case_policy() -> None:
    document = moduledef.to_json(chat.module_def(), 10)
    for section in document["sections"]:
        if "ExplicitNames" in section:
            entries = section["ExplicitNames"]["entries"]
            section["ExplicitNames"]["entries"] = [
                e for e in entries if "Table" not in e or e["Table"]["source_name"] != "person"
            ]
        if "Tables" in section:
            section["Tables"][0]["source_name"] = "Person"  # no explicit name now: SnakeCase gives `person`
        if "Reducers" in section:
            for reducer in section["Reducers"]:
                if reducer["source_name"] == "send_message":
                    reducer["source_name"] = "sendMessage"
        if "ExplicitNames" in section:
            section["ExplicitNames"]["entries"].append(
                {"Function": {"source_name": "sendMessage", "canonical_name": "send_message"}}
            )
    read = moduledef.from_json(document)
    assert read.table("person") == chat.module_def().table("person")
    assert read.reducer("send_message") == chat.module_def().reducer("send_message")
    assert moduledef.v10.snake_case("HTTPServerLog") == "http_server_log"


def test_v10_snake_case_policy_converts_the_typespace_as_spacetimedb_does() -> None:
    # validate/v9.rs `typespace_case_conversion`: fields snake_case, variants camelCase, special types untouched.
    color = at.sum_type(("RedApple", at.UNIT), ("green_apple", at.UNIT))
    row = at.product(("basketId", at.U64), ("fruitColor", color), ("owner", at.IDENTITY), ("at", at.SCHEDULE_AT))
    definition = moduledef.ModuleDef(typespace=(row,), tables=(moduledef.TableDef("basket", 0),))
    read = moduledef.v10.from_value(moduledef.v10.to_value(definition))  # no policy section: SnakeCase applies
    converted = read.typespace[0]
    assert isinstance(converted, at.ProductType)
    assert converted.field_names() == ("basket_id", "fruit_color", "owner", "at")
    assert converted.elements[1].type == at.sum_type(("redApple", at.UNIT), ("greenApple", at.UNIT))
    assert converted.elements[2].type == at.IDENTITY and converted.elements[3].type == at.SCHEDULE_AT


def test_lifecycle_and_schedule_survive_both_versions() -> None:
    for version in (9, 10):
        read = moduledef.from_json(moduledef.to_json(golden_module().module_def(), version))
        assert read.reducer("init").lifecycle is Lifecycle.INIT
        assert read.table("tick").schedule == moduledef.ScheduleDef("tick_sched", "on_tick", 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["tables"][0].update(product_type_ref=99), "product_type_ref 99 outside the typespace"),
        (lambda d: d["tables"][0].update(primary_key=[7]), "primary key column 7 out of range"),
        (lambda d: d["typespace"]["types"].append({"Ref": 42}), "type reference 42 outside the typespace"),
        (lambda d: d["typespace"]["types"].append({"Ref": len(d["typespace"]["types"])}), "cycle"),
        (lambda d: d["tables"].append(dict(d["tables"][0])), "table 'person' is defined twice"),
        (lambda d: d.pop("reducers"), "not a RawModuleDefV9 document: .*missing field 'reducers'"),
        (lambda d: d["tables"][0].update(table_access={"Secret": []}), "unknown variant 'Secret'"),
    ],
)
def test_a_malformed_definition_is_refused_with_what_is_wrong(edit: object, message: str) -> None:
    document = chat.schema_json()
    edit(document)  # type: ignore[operator]
    with pytest.raises(ModuleDefError, match=message):
        moduledef.from_json(document)


def test_truncated_bsatn_is_a_module_def_error() -> None:
    data = moduledef.to_raw_module_def_bsatn(chat.module_def())
    with pytest.raises(ModuleDefError, match="not a BSATN RawModuleDefV10"):
        moduledef.from_raw_module_def_bsatn(data[:-3])
    with pytest.raises(ModuleDefError, match="is not V9"):
        moduledef.from_raw_module_def_bsatn(b"\x00" + data[1:])


@pytest.mark.node
def test_a_v10_definition_is_decoded_by_the_official_librarys_own_type(tmp_path: Path) -> None:
    """The pinned library's generated `RawModuleDefV10` decodes our bytes and re-encodes them identically."""
    node = shutil.which("node")
    if node is None or not (CONFORMANCE_MODULES / "spacetimedb").is_dir():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    definitions = [golden_module().module_def(), chat.module_def(), sync_module.module_def()]
    ours = [v10.to_bsatn(d) for d in definitions]
    answers = subprocess.run(
        [node, str(JUDGE), str(CONFORMANCE_MODULES), str(tmp_path)],
        input="".join(f"{data.hex()}\n" for data in ours),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert len(answers) == len(ours)
    for definition, data, line in zip(definitions, ours, answers, strict=True):
        answer = json.loads(line)
        assert "error" not in answer, answer
        assert answer["hex"] == data.hex()
        sections = {s["tag"]: s["value"] for s in answer["value"]["sections"]}
        assert [s["tag"] for s in answer["value"]["sections"]] == [
            next(iter(s)) for s in moduledef.to_json(definition, 10)["sections"]
        ]
        assert [t["sourceName"] for t in sections["Tables"]] == [t.name for t in definition.tables]
        assert [r["sourceName"] for r in sections["Reducers"]] == [r.name for r in definition.reducers]
        assert len(sections["Typespace"]["types"]) == len(definition.typespace)


def test_v9_index_algorithms_are_served_in_spacetimedbs_newtype_form() -> None:
    """SpacetimeDB writes `{"BTree": [0]}`: a one-field struct variant is a newtype for the SATS derive
    (`variant_data` in `crates/bindings-macro/src/sats.rs`), serialised by `SerdeWrapper` in the `schema` handler of
    `crates/client-api/src/routes/database.rs`. Tools reading SpacetimeDB's JSON fail on the wrapped form."""
    definition = golden_module().module_def()
    for version in (9, 10):
        document = moduledef.to_json(definition, version)
        tables = (
            document["tables"] if version == 9 else next(s["Tables"] for s in document["sections"] if "Tables" in s)
        )
        algorithms = [index["algorithm"] for table in tables for index in table["indexes"]]
        assert algorithms[:4] == [{"BTree": [0]}, {"BTree": [1]}, {"BTree": [2]}, {"BTree": [2, 1]}]
        assert all(not isinstance(payload, dict) for a in algorithms for payload in a.values())


def test_the_v9_hash_is_the_same_for_both_index_algorithm_forms() -> None:
    """Data directories and ledgers hold digests of this host's older wrapped form, `{"BTree": {"columns": [0]}}`:
    the hash is taken over that form whichever one a document arrives in, and readers accept both."""
    definition = golden_module().module_def()
    served = moduledef.to_json(definition, 9)
    wrapped = v9.legacy_hash_form(served)
    assert wrapped["tables"][0]["indexes"][0]["algorithm"] == {"BTree": {"columns": [0]}}
    assert served["tables"][0]["indexes"][0]["algorithm"] == {"BTree": [0]}  # the input is not changed
    assert moduledef.schema_hash(served) == moduledef.schema_hash(wrapped) == GOLDEN_HASH
    assert moduledef.from_json(wrapped) == moduledef.from_json(served)
    assert v9.legacy_hash_form(wrapped) == wrapped


#: The sync module's and the chat example's V9 schema hashes (the chat one from before V9 JSON took SpacetimeDB's
#: index-algorithm form, main at 5327589; the sync one since retention added `sync_config` columns and the
#: `sync_retention_tick` table, aec4094): stored in every data directory that runs them. A change here is a schema
#: change: it needs a migration a stored data directory accepts (tests/host/test_publish_engine.py).
SYNC_HASH = "d96f6c17f440de4ed78d4c9adb908f71e719eaaf0bf74f859b8c47bb0eed5842"
CHAT_HASH = "cdeb3f463814583437f44667292cb0bfe5f4aefd85b0e99270f4e8baf9fd214c"


@pytest.mark.parametrize(("name", "expected"), [("sync", SYNC_HASH), ("chat", CHAT_HASH)])
def test_the_sync_and_chat_schema_hashes_are_unchanged(name: str, expected: str) -> None:
    module = MODULES[name]
    assert module.schema_hash() == expected
    assert moduledef.schema_hash(module.schema_json()) == expected
    assert moduledef.schema_hash(json.loads(json.dumps(module.schema_json()))) == expected
