"""`/sql` answers rendered as `spacetime sql` prints them (`dbcli/table.py`, pure)."""

from __future__ import annotations

from autopilot_sync.dbcli.table import render
from autopilot_sync.spacetime import algebraic as at


def _statement(columns: list[tuple[str, at.AlgebraicType]], rows: list[list[object]]) -> dict[str, object]:
    return {"schema": at.to_json(at.product(*columns))["Product"], "rows": rows}


def test_cells_read_as_spacetimedb_shows_them_under_a_header_and_rule() -> None:
    statement = _statement(
        [("name", at.STRING), ("who", at.IDENTITY), ("at", at.TIMESTAMP), ("ok", at.BOOL), ("n", at.U32)],
        [["Ada", [255], [1_700_000_000_000_000], True, 36]],
    )
    header, rule, row = render([statement]).splitlines()
    assert [cell.strip() for cell in header.split("|")] == ["name", "who", "at", "ok", "n"]
    assert set(rule) <= {"-", "+"}
    cells = [cell.strip() for cell in row.split("|")]
    assert cells == ['"Ada"', "0x" + "0" * 62 + "ff", "2023-11-14T22:13:20Z", "true", "36"]


def test_a_malformed_schema_still_renders_the_rows() -> None:
    text = render([{"schema": "nonsense", "rows": [[1, "x"]]}])
    assert [cell.strip() for cell in text.splitlines()[2].split("|")] == ["1", '"x"']
