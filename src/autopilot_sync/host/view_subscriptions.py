"""Subscribed views: what one subscription shape holds of each view it reads, and how a commit changes it.

A view is not routed row by row as a table is (its rows are whatever the module's function returns), so a shape
that reads a view keeps the rows it last sent of it (a multiset: a view may return the same row twice) and, after a
commit, calls the view again and sends the difference: rows whose count grew as inserts, rows whose count fell as
deletes, as many times as the count changed. A view is called again only when the commit touched a table its last
call read (the read set its syscalls recorded, or the tables of the query it answered with): nothing else can change
its answer. One commit calls each (view, caller) once however many shapes read it.

Every member of a shape holds the shape's rows of its views (a member joining a live shape gets those rows, not a
fresh call), so one difference is right for all of them. A view reads the datastore as it is when called, which may
be ahead of the commit being delivered (commits are applied before they are durable): a view's rows can show a
later commit's effect a little before that commit's own update arrives; they never miss one, since that commit's
delivery calls the view again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql import views
from autopilot_sync.host.sql.plan import SelectPlan, ViewSource
from autopilot_sync.host.view_call import ViewAnswer, ViewCallError
from autopilot_sync.spacetime.messages import BsatnRowList, PersistentTableRows, SingleTableRows, TableUpdate

log = logging.getLogger(__name__)

#: One commit's (or one subscribe's) view answers, by (view name, caller): each view is called once for all shapes.
Answers = dict[tuple[str, object], ViewAnswer | ViewCallError]


@dataclass(slots=True)
class ViewRows:
    """One shape's rows of one view: the plans (queries) it holds over the view, and the rows last sent."""

    source: ViewSource
    plans: tuple[SelectPlan, ...]
    rows: Counter[bytes] = field(default_factory=Counter)
    #: the tables the last call read; None until a call succeeded (then every commit calls it)
    reads: frozenset[str] | None = None

    def table_rows(self) -> SingleTableRows:
        """The rows as a subscription's initial (or dropped) rows of the view."""
        return SingleTableRows(self.source.view.name, BsatnRowList.from_rows(list(self.rows.elements())))


def view_plans(plans: Iterable[SelectPlan]) -> dict[str, list[SelectPlan]]:
    """A query set's plans over views, by view name."""
    found: dict[str, list[SelectPlan]] = {}
    for plan in plans:
        if plan.view is not None:
            found.setdefault(plan.table.name, []).append(plan)
    return found


def load(by_view: dict[str, list[SelectPlan]], datastore: Datastore, answers: Answers) -> dict[str, ViewRows]:
    """A new shape's rows of each of its views, called now; raises `ViewCallError` when a view fails."""
    state: dict[str, ViewRows] = {}
    for name, plans in by_view.items():
        source = plans[0].view
        assert source is not None
        rows = ViewRows(source, tuple(plans))
        rows.rows, rows.reads = _evaluate(rows, datastore, answers)
        state[name] = rows
    return state


def refresh(
    state: dict[str, ViewRows], changed: set[str], datastore: Datastore, answers: Answers
) -> tuple[TableUpdate, ...]:
    """After a commit touching `changed` tables: each view whose read set it touched, called again; the differences
    as table updates (rows entering and leaving, each as often as its count changed). A view that fails keeps its
    rows (logged); its next commit tries again."""
    updates: list[TableUpdate] = []
    for name, held in state.items():
        if held.reads is not None and not (held.reads & changed):
            continue
        try:
            now, reads = _evaluate(held, datastore, answers)
        except ViewCallError as exc:
            log.warning("view %s not refreshed: %s", name, exc)
            continue
        held.reads = reads
        entering = now - held.rows
        leaving = held.rows - now
        held.rows = now
        if entering or leaving:
            updates.append(
                TableUpdate(
                    name,
                    (
                        PersistentTableRows(
                            BsatnRowList.from_rows(list(entering.elements())),
                            BsatnRowList.from_rows(list(leaving.elements())),
                        ),
                    ),
                )
            )
    return tuple(updates)


def _evaluate(held: ViewRows, datastore: Datastore, answers: Answers) -> tuple[Counter[bytes], frozenset[str]]:
    """The view's rows that any of the shape's queries over it keep (with their counts), and what the call read."""
    source = held.source
    key = (source.view.name, source.sender)
    answer = answers.get(key)
    if answer is None:
        try:
            answer = views.call(source, datastore)
        except ViewCallError as exc:
            answer = exc
        answers[key] = answer
    if isinstance(answer, ViewCallError):
        raise answer
    everything = dataclasses.replace(held.plans[0], predicate=None)
    rows, reads = views.answer_rows(everything, answer, datastore)
    kept: Counter[bytes] = Counter()
    filtered = [plan for plan in held.plans if plan.predicate is not None]
    for row_bytes, row in rows:
        if len(filtered) == len(held.plans) and not any(plan.matches(row) for plan in filtered):
            continue
        kept[row_bytes] += 1
    return kept, reads


def all_rows(states: Sequence[dict[str, ViewRows]]) -> tuple[SingleTableRows, ...]:
    """Every view's rows held by these shapes' states (initial or dropped rows)."""
    return tuple(held.table_rows() for state in states for held in state.values())
