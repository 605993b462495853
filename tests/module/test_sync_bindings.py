"""The sync module's checked-in typed bindings are the codegen's fresh output and carry the module's exact types."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autopilot_sync import sync_bindings
from autopilot_sync.cli import main
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.module import module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.algebraic import AlgebraicType, RefType
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

BINDINGS = Path("src/autopilot_sync/sync_bindings/__init__.py")
COMMAND = f"autopilot-sync client generate --module autopilot_sync.module --out {BINDINGS}"
CHECKED_IN = Path(sync_bindings.__file__)


def test_checked_in_sync_bindings_are_the_fresh_codegen_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the command as written, relative paths and all, into an empty folder
    (tmp_path / BINDINGS.parent).mkdir(parents=True)
    result = CliRunner().invoke(main, COMMAND.split()[1:])
    assert result.exit_code == 0, result.output
    fresh = (tmp_path / BINDINGS).read_text(encoding="utf-8")
    assert CHECKED_IN.read_text(encoding="utf-8") == fresh, (
        f"the sync module's bindings are stale: run `{COMMAND}` in the repository root"
    )


def _schema() -> tuple[list[AlgebraicType], dict[str, AlgebraicType], dict[str, AlgebraicType]]:
    """The module's typespace, table row types and reducer parameter types, as its schema document serves them."""
    document = module.schema_json()
    typespace = [at.from_json(t) for t in document["typespace"]["types"]]
    tables = {t["name"]: RefType(int(t["product_type_ref"])) for t in document["tables"]}
    reducers = {r["name"]: at.from_json({"Product": r["params"]}) for r in document["reducers"]}
    return typespace, dict(tables), reducers


def test_typed_rows_encode_to_the_bytes_the_module_tables_store() -> None:
    now = Timestamp(1_700_000_000_000_000)
    head = sync_bindings.StreamHead("s", 3, 1, 2, now, "sha256:head", "sha256:floor")
    event = sync_bindings.SyncEvent("s", 3, "s:3", "k", "{}", "sha256:x", now, now, 2, "sha256:c")
    presence = sync_bindings.ActiveConnection(ConnectionId(7), Identity(8), "ab", "npub1", "desktop", now, now, "sync")
    typespace, tables, _ = _schema()
    for table, row in (("stream_head", head), ("sync_event", event), ("active_connection", presence)):
        expected = bsatn.encode(tables[table], tuple(row), typespace)
        assert row.encode() == expected
        assert type(row).decode(expected) == row


def test_the_event_input_class_is_the_append_reducer_parameter_type() -> None:
    item = sync_bindings.AppendSyncEventsBatchItem(
        stream_id="s",
        idempotency_key="s:1",
        kind="k",
        payload="{}",
        payload_hash="sha256:x",
        expected_seq=1,
        published_at=Timestamp(5),
    )
    typespace, _, reducers = _schema()
    params = reducers["append_sync_events"]
    expected = bsatn.encode(params, ([tuple(item)],), typespace)
    assert bsatn.encode(params, ([item],), typespace) == expected
    assert sync_bindings.AppendSyncEventsBatchItem.decode(item.encode()) == item
    assert item.expected_seq == 1 and item.published_at == Timestamp(5)


def _older_sync_event_schema() -> dict[str, Any]:
    """The module's schema as a host serving the module from before chains does: `sync_event` without its last two."""
    document = copy.deepcopy(module.schema_json())
    (table,) = [t for t in document["tables"] if t["name"] == "sync_event"]
    row_type = document["typespace"]["types"][table["product_type_ref"]]
    row_type["Product"]["elements"] = row_type["Product"]["elements"][:8]
    document["misc_exports"] = [  # the older module had no such columns, so no defaults for them
        export for export in document["misc_exports"] if export["ColumnDefaultValue"]["table"] != "sync_event"
    ]
    return document


def test_a_row_of_the_older_shape_decodes_with_the_column_defaults() -> None:
    older = ClientSchema.from_json(_older_sync_event_schema(), sync_bindings.ROW_TYPES)
    now = Timestamp(1_700_000_000_000_000)
    table = older.table("sync_event")
    data = bsatn.encode(table.row_type, ("s", 1, "s:1", "k", "{}", "sha256:x", now, now), table.typespace)
    _, row = table.decode(data)
    assert row == sync_bindings.SyncEvent("s", 1, "s:1", "k", "{}", "sha256:x", now, now, epoch=0, chain="")


def test_a_row_that_does_not_fit_its_class_is_a_decode_error_not_a_crash() -> None:
    document = copy.deepcopy(module.schema_json())
    (table,) = [t for t in document["tables"] if t["name"] == "sync_member"]
    row_type = document["typespace"]["types"][table["product_type_ref"]]
    row_type["Product"]["elements"] = row_type["Product"]["elements"][:2]  # `admitted_at` has no default to stand in
    schema = ClientSchema.from_json(document, sync_bindings.ROW_TYPES).table("sync_member")
    data = bsatn.encode(schema.row_type, (Identity(1), "sync"), schema.typespace)
    with pytest.raises(DecodeError, match="does not fit"):
        schema.decode(data)
