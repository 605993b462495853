"""What the client's session-level tests share: the chat module's schema as the SDK reads it, its `person` rows as
BSATN, and a test double of the query-set owner (unit tests only: no host, no socket)."""

from __future__ import annotations

from autopilot_sync.client import ClientSchema
from autopilot_sync.client.query_set import QuerySet
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.spacetime import bsatn

SCHEMA = ClientSchema.from_json(chat.schema_json())
PERSON = chat.tables["person"].row_type


class OwnerDouble:
    """A test double of `QuerySetOwner`: nothing here unsubscribes through it."""

    async def unsubscribe(self, query_set: QuerySet) -> None:
        raise AssertionError("not used")


def person_row(pid: int, name: str, age: int) -> bytes:
    """A `person` row as the host stores and sends it."""
    return bsatn.encode(PERSON, (pid, name, age))
