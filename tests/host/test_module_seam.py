"""The module seam: the engine runs any `HostedModule`, learning everything from its definition.

`ScriptedModuleDouble` is a test double standing where a JavaScript module will: it is no `bindings.Module`, it
describes itself only as a `ModuleDef` and answers reducer calls from BSATN bytes, as `__describe_module__` and
`__call_reducer__` do. A real `HostEngine` on a real data directory runs it, restarts on it and refuses bad calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.reducers import ReducerError, StartInfo
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import BadArgumentsError, HostedModule, PythonModule, tables_from_definition
from autopilot_sync.host.server import load_module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(7))
NOTE_ROW = at.product(("id", at.U64), ("text", at.STRING))
ADD_NOTE_PARAMS = at.product(("text", at.STRING))


class ScriptedModuleDouble:
    """Test double of a non-Python module: one table `note` (id auto-increment primary key), one reducer `add_note`.

    Records every call it answers, so the test can see the engine handed it raw bytes.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.starts: list[StartInfo] = []

    @property
    def name(self) -> str:
        return "scripted"

    def definition(self) -> md.ModuleDef:
        return md.ModuleDef(
            typespace=(NOTE_ROW,),
            tables=(
                md.TableDef(
                    name="note",
                    product_type_ref=0,
                    primary_key=(0,),
                    indexes=(md.IndexDef("note_id_idx_btree", "id", md.IndexKind.BTREE, (0,)),),
                    constraints=(md.UniqueConstraintDef("note_id_key", (0,)),),
                    sequences=(md.SequenceDef("note_id_seq", 0),),
                ),
            ),
            reducers=(md.ReducerDef("add_note", ADD_NOTE_PARAMS),),
            types=(md.TypeDef((), "Note", 0),),
        )

    def visibility_filters(self) -> Mapping[str, tuple[str, ...]]:
        return {}

    def call_reducer(self, ctx: ReducerContext, reducer: str, args: bytes) -> None:
        self.calls.append((reducer, args))
        try:
            (text,) = bsatn.codec(ADD_NOTE_PARAMS).decode_prefix(args, 0)[0]
        except DecodeError as exc:  # the seam's contract: undecodable arguments are refused, typed
            raise BadArgumentsError(f"invalid arguments for reducer {reducer}: {exc}") from None
        if not text:
            raise ReducerError("empty_note: a note needs text")
        ctx.db["note"].insert((0, text))

    @property
    def has_start_hook(self) -> bool:
        return True

    def on_start(self, ctx: ReducerContext, info: StartInfo) -> None:
        self.starts.append(info)


def _is_hosted(module: HostedModule) -> HostedModule:
    """Makes mypy check that the double satisfies the protocol."""
    return module


def notes(engine: HostEngine) -> list[tuple[int, str]]:
    return sorted((row[0], row[1]) for row in engine.datastore["note"].rows.values())


async def test_engine_runs_a_module_that_only_describes_itself_and_answers_bytes(tmp_path: Path) -> None:
    double = ScriptedModuleDouble()
    engine = HostEngine(_is_hosted(double), tmp_path, "notes", EngineConfig(fsync=False))
    await engine.start()
    assert double.starts == [StartInfo(fresh=True, history_discarded=False)]

    outcome = await engine.call_reducer("add_note", ("first",), ALICE)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    assert double.calls == [("add_note", bsatn.codec(ADD_NOTE_PARAMS).encode(("first",)))]

    done: list[CallStatus] = []
    data = bsatn.codec(ADD_NOTE_PARAMS).encode(("second",))
    engine.start_call("add_note", data, ALICE, None, lambda o: done.append(o.status))
    await engine.wait_durable_offset(engine.offset)
    assert done == [CallStatus.COMMITTED]
    assert double.calls[-1] == ("add_note", data)
    assert notes(engine) == [(1, "first"), (2, "second")]

    refused = await engine.call_reducer("add_note", ("",), ALICE)
    assert (refused.status, refused.message) == (CallStatus.USER_ERROR, "empty_note: a note needs text")
    engine.start_call("add_note", b"\x09", ALICE, None, lambda o: done.append(o.status))
    assert done[-1] is CallStatus.BAD_ARGUMENTS
    unknown = await engine.call_reducer("nope", (), ALICE)
    assert unknown.status is CallStatus.NO_SUCH_REDUCER
    await engine.stop()

    again = ScriptedModuleDouble()
    reopened = HostEngine(again, tmp_path, "notes", EngineConfig(fsync=False))
    await reopened.start()
    assert again.starts == [StartInfo(fresh=False, history_discarded=False)]
    assert notes(reopened) == [(1, "first"), (2, "second")]
    assert (await reopened.call_reducer("add_note", ("third",), ALICE)).status is CallStatus.COMMITTED
    assert notes(reopened)[-1] == (3, "third")
    await reopened.stop()


def _layout(tables: Iterable[TableDef]) -> list[tuple[object, ...]]:
    """What the host stores and indexes by, per table (the row class, a fresh namedtuple type, is left out)."""
    return [
        (
            t.name,
            t.columns,
            t.primary_key,
            t.unique_keys(),
            t.all_indexes(),
            t.auto_inc,
            t.public,
            t.scheduled_reducer,
            t.event,
            t.defaults,
        )
        for t in tables
    ]


def test_tables_derived_from_the_definition_match_the_authored_python_tables() -> None:
    for module in (chat, load_module("autopilot_sync.module")):
        derived = tables_from_definition(PythonModule(module).definition())
        assert _layout(derived) == _layout(module.tables.values())
