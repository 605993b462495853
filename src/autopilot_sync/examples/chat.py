"""A small chat module exercising every host feature: keys, unique and btree indexes, auto-increment, user errors,
connection rejection, a scheduled reducer and a row with every column type.

The official TypeScript SDK's conformance suite (`conformance/`) carries hand-written bindings for exactly this module.
"""

from __future__ import annotations

import logging
from typing import Any

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import SumValue

log = logging.getLogger(__name__)

module = Module("chat", version="1")

person = module.table(
    "person",
    [("id", at.U64), ("name", at.STRING), ("age", at.U32)],
    primary_key="id",
    unique=[("name",)],
    auto_inc=["id"],
)
message = module.table(
    "message",
    [("id", at.U64), ("sender", at.IDENTITY), ("sent", at.TIMESTAMP), ("text", at.STRING)],
    primary_key="id",
    indexes=[("sender",)],
    auto_inc=["id"],
)
online = module.table(
    "online",
    [("connection_id", at.CONNECTION_ID), ("identity", at.IDENTITY)],
    primary_key="connection_id",
)
reminder = module.table(
    "reminder",
    [("scheduled_id", at.U64), ("scheduled_at", at.SCHEDULE_AT), ("text", at.STRING)],
    primary_key="scheduled_id",
    auto_inc=["scheduled_id"],
    scheduled_reducer="remind",
)
all_types = module.table(
    "all_types",
    [
        ("id", at.U32),
        ("b", at.BOOL),
        ("i8", at.I8),
        ("u8", at.U8),
        ("i16", at.I16),
        ("u16", at.U16),
        ("i32", at.I32),
        ("u32", at.U32),
        ("i64", at.I64),
        ("u64", at.U64),
        ("i128", at.I128),
        ("u128", at.U128),
        ("i256", at.I256),
        ("u256", at.U256),
        ("f32", at.F32),
        ("f64", at.F64),
        ("s", at.STRING),
        ("bytes", at.BYTES),
        ("list", at.array(at.I32)),
        ("opt", at.option(at.STRING)),
        ("who", at.IDENTITY),
        ("conn", at.CONNECTION_ID),
        ("ts", at.TIMESTAMP),
        ("dur", at.TIME_DURATION),
    ],
    primary_key="id",
)


@module.client_connected
def on_connect(ctx: ReducerContext) -> None:
    """Reject tokens whose subject is `banned`; record everyone else as online."""
    if ctx.claims.get("sub") == "banned":
        raise ReducerError("forbidden: this subject is banned")
    if ctx.connection_id is not None:
        ctx.db.online.insert((ctx.connection_id, ctx.sender))


@module.client_disconnected
def on_disconnect(ctx: ReducerContext) -> None:
    """Forget the connection."""
    if ctx.connection_id is not None:
        ctx.db.online.delete_by("connection_id", ctx.connection_id)


@module.reducer(("name", at.STRING), ("age", at.U32))
def add_person(ctx: ReducerContext, name: str, age: int) -> None:
    """Insert a person; the unique name makes a second insert fail."""
    if not name:
        raise ReducerError("invalid_name: name must not be empty")
    ctx.db.person.insert((0, name, age))
    log.info("added %s, aged %d", name, age)  # a module log line (GET /v1/database/:name/logs)


@module.reducer(("name", at.STRING), ("age", at.U32))
def set_age(ctx: ReducerContext, name: str, age: int) -> None:
    """Update a person's age in place (a delete + insert with the same primary key)."""
    found = ctx.db.person.find("name", name)
    if found is None:
        raise ReducerError(f"not_found: no person named {name}")
    ctx.db.person.update((found[0], name, age))


@module.reducer(("name", at.STRING))
def delete_person(ctx: ReducerContext, name: str) -> None:
    """Delete a person by name."""
    if ctx.db.person.delete_by("name", name) == 0:
        raise ReducerError(f"not_found: no person named {name}")


@module.reducer(("text", at.STRING))
def send_message(ctx: ReducerContext, text: str) -> None:
    """Append a message from the caller."""
    if not text:
        raise ReducerError("empty_message: text must not be empty")
    ctx.db.message.insert((0, ctx.sender, ctx.timestamp, text))


@module.reducer(("names", at.array(at.STRING)))
def add_people(ctx: ReducerContext, names: list[str]) -> None:
    """Insert many people atomically: one bad name rolls back all of them."""
    for name in names:
        add_person(ctx, name, 0)


@module.reducer(("text", at.STRING), ("delay_micros", at.I64))
def schedule_reminder(ctx: ReducerContext, text: str, delay_micros: int) -> None:
    """Schedule `remind` once after a delay."""
    when = SumValue(1, type(ctx.timestamp)(ctx.timestamp.micros + delay_micros))
    ctx.db.reminder.insert((0, when, text))


@module.reducer(("row", reminder.row_type))
def remind(ctx: ReducerContext, row: Any) -> None:
    """The scheduled reducer: turns a reminder into a message."""
    ctx.db.message.insert((0, ctx.sender, ctx.timestamp, f"reminder: {row[2]}"))


@module.reducer(("row", all_types.row_type))
def put_all_types(ctx: ReducerContext, row: Any) -> None:
    """Store a row with every column type (replacing the one with the same id)."""
    existing = ctx.db.all_types.find("id", row[0])
    if existing is not None:
        ctx.db.all_types.delete(existing)
    ctx.db.all_types.insert(row)


@module.reducer(("message", at.STRING))
def fail(ctx: ReducerContext, message: str) -> None:
    """Always fails with the given message, after writing (to prove rollback)."""
    ctx.db.person.insert((0, f"ghost-{message}", 1))
    raise ReducerError(message)


@module.reducer()
def panic(ctx: ReducerContext) -> None:
    """Fails with an unexpected exception (an internal error, not a user error)."""
    raise RuntimeError("deliberate panic")
