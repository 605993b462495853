"""`/sql` answers as a psql-style table, as `spacetime sql` prints them: a header, a rule, one line per row.

Cells read as SpacetimeDB shows them: strings quoted, identities and connection ids as `0x` hex, timestamps in
ISO 8601 (UTC), durations in microseconds, anything else as compact JSON. Pure: text in, text out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from autopilot_sync.spacetime import algebraic as at


def _cell(ty: at.AlgebraicType | None, value: Any) -> str:
    tag = at.special_tag(ty) if ty is not None else None
    scalar = value[0] if isinstance(value, list) and len(value) == 1 else value
    if tag == at.IDENTITY_TAG and isinstance(scalar, int):
        return f"0x{scalar:064x}"
    if tag == at.CONNECTION_ID_TAG and isinstance(scalar, int):
        return f"0x{scalar:032x}"
    if tag == at.TIMESTAMP_TAG and isinstance(scalar, int):
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=scalar)
        return moment.isoformat().replace("+00:00", "Z")
    if tag == at.TIME_DURATION_TAG and isinstance(scalar, int):
        return f"{scalar}µs"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _columns(schema: Any) -> list[tuple[str, at.AlgebraicType | None]]:
    columns: list[tuple[str, at.AlgebraicType | None]] = []
    elements = schema.get("elements") if isinstance(schema, dict) else None
    for index, element in enumerate(elements if isinstance(elements, list) else []):
        if not isinstance(element, dict):
            element = {}
        name = element.get("name", {})
        label = name.get("some") if isinstance(name, dict) else None
        try:
            ty: at.AlgebraicType | None = at.from_json(element["algebraic_type"])
        except (KeyError, TypeError, ValueError):
            ty = None
        columns.append((label if isinstance(label, str) else f"column {index}", ty))
    return columns


def render(statements: Sequence[dict[str, Any]]) -> str:
    """Every statement's rows as a table (statements separated by a blank line)."""
    blocks: list[str] = []
    for statement in statements:
        columns = _columns(statement.get("schema"))
        widest = max((len(row) for row in statement["rows"] if isinstance(row, list)), default=0)
        columns += [(f"column {i}", None) for i in range(len(columns), widest)]  # cells the schema does not name
        rows = [
            [_cell(ty, value) for (_, ty), value in zip(columns, row, strict=False)]
            for row in statement.get("rows", [])
        ]
        header = [name for name, _ in columns]
        widths = [max([len(header[i])] + [len(row[i]) for row in rows if i < len(row)]) for i in range(len(header))]
        lines = [" " + " | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
        lines.append("-" + "-+-".join("-" * width for width in widths) + "-")
        lines += [" " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
