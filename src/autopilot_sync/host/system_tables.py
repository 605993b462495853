"""Private tables the host keeps for itself, stored and logged like any other table.

`st_sequence` makes auto-increment values survive restarts; `st_client` remembers live connections so that the
ones that died with a crashed process get `client_disconnected` when the host starts again.
"""

from __future__ import annotations

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.spacetime import algebraic as at

ST_SEQUENCE = TableDef(
    name="st_sequence",
    columns=(("sequence", at.STRING), ("next_value", at.U128)),
    primary_key="sequence",
    public=False,
)

ST_CLIENT = TableDef(
    name="st_client",
    columns=(("connection_id", at.CONNECTION_ID), ("identity", at.IDENTITY)),
    primary_key="connection_id",
    public=False,
)

SYSTEM_TABLES = (ST_SEQUENCE, ST_CLIENT)
