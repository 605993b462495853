"""`client generate --lang typescript|javascript`: the official SDK's module_bindings folder from a schema.

The conformance suite's hand-written chat bindings (conformance/bindings/chat) follow `spacetime generate --lang
typescript` file by file and have passed the official SDK's scenarios for a long time; the generated JavaScript must
be the same code (comments aside), and the TypeScript flavour the same values plus type-only lines. That the
generated code runs with the SDK against a real stack is tests/conformance/test_typescript_app.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from autopilot_sync.cli import main
from autopilot_sync.client.codegen_typescript import generate_typescript, type_name
from autopilot_sync.examples.chat import module as chat

ROOT = Path(__file__).resolve().parents[2]
HAND_WRITTEN = ROOT / "conformance" / "bindings" / "chat"


def _code(text: str) -> list[str]:
    """The lines that are code: no comments, no blank lines."""
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("//", "/**", "/*", "*"))
    ]


def test_generated_javascript_is_the_hand_written_bindings_the_official_sdk_passes_with() -> None:
    files = generate_typescript(chat.schema_json(), "chat", "javascript")
    assert sorted(files) == sorted(p.name for p in HAND_WRITTEN.glob("*.mjs"))
    for name, text in files.items():
        assert _code(text) == _code((HAND_WRITTEN / name).read_text(encoding="utf-8")), name


def test_typescript_flavour_is_the_javascript_values_plus_type_only_lines() -> None:
    js = generate_typescript(chat.schema_json(), "chat", "javascript")
    ts = generate_typescript(chat.schema_json(), "chat", "typescript")
    assert sorted(ts) == sorted(name.replace(".mjs", ".ts") for name in js)
    types = ts["types.ts"]
    assert 'import { t as __t, type Infer as __Infer } from "spacetimedb";' in types
    assert "export type Person = __Infer<typeof Person>;" in types
    # imports name files without an extension, as the real generator does
    assert 'import PersonRow from "./person_table";' in ts["index.ts"]
    # erase what only TypeScript has: the values left are the JavaScript flavour's, line for line
    for name, text in ts.items():
        erased = [
            re.sub(
                r"<typeof REMOTE_MODULE>|<DbConnection>|: __DbConnectionConfig<typeof REMOTE_MODULE>| as const",
                "",
                line,
            )
            .replace(", type Infer as __Infer", "")
            .replace("<T extends object>(target: T, freeze = false): T", "(target, freeze = false)")
            for line in _code(text)
            if not line.startswith("export type ") and "type DbConnectionConfig" not in line
        ]
        erased = [re.sub(r'from "(\./[a-z_]+)";', r'from "\1.mjs";', line) for line in erased]
        assert erased == _code(js[name.replace(".ts", ".mjs")]), name


def test_the_cli_writes_the_folder(tmp_path: Path) -> None:
    schema = tmp_path / "chat.schema.json"
    schema.write_text(json.dumps(chat.schema_json()), encoding="utf-8")
    out = tmp_path / "module_bindings"
    result = CliRunner().invoke(
        main, ["client", "generate", "--lang", "typescript", "--schema-file", str(schema), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "index.ts").is_file() and (out / "person_table.ts").is_file() and (out / "types.ts").is_file()
    assert not (out / "client_connected_reducer.ts").exists()  # lifecycle reducers are not invokable


def test_a_v10_document_gives_the_same_bindings_as_v9() -> None:
    from autopilot_sync.spacetime import moduledef

    v9 = chat.schema_json()
    v10 = moduledef.to_json(moduledef.from_json(v9), 10)
    assert generate_typescript(v10, "chat", "javascript") == generate_typescript(v9, "chat", "javascript")


def test_named_types_are_pascal_cased_as_spacetime_generate_names_them() -> None:
    # `crates/codegen/src/util.rs` `type_ref_name`: each scope segment and the name PascalCased (`convert_case`'s
    # word boundaries), joined without a delimiter; our modules already name types so, a Rust or TypeScript module
    # need not (`#[sats(name = ...)]`, `t.object('point_2d', ...)`).
    assert type_name(["ActiveConnection"]) == "ActiveConnection"
    assert type_name(["point_2d"]) == "Point2D"
    assert type_name(["HTTPServer"]) == "HttpServer"
    assert type_name(["my_scope", "myType"]) == "MyScopeMyType"
    document = json.loads(json.dumps(chat.schema_json()))
    (person,) = [t for t in document["types"] if t["name"]["name"] == "Person"]
    person["name"] = {"scope": ["app"], "name": "person_row"}
    types = generate_typescript(document, "chat", "typescript")["types.ts"]
    assert 'export const AppPersonRow = __t.object("AppPersonRow", {' in types
    assert "export type AppPersonRow = __Infer<typeof AppPersonRow>;" in types
    assert "person_row" not in types and "app." not in types
