"""The host's SQL: the subset SpacetimeDB accepts for subscriptions and one-off queries, parsed into typed plans.

One job per module, in the order a query flows through them:

- `parse.py` — text to one sqlglot SELECT, with the bounds every query must pass (length, operators, nesting);
- `plan.py` — the typed plan (`SelectPlan`, predicates, `SqlContext`) and `SqlError`, shared by every stage;
- `literals.py` — literals checked against their column's type, so a query that compiles cannot fail while it runs;
- `select.py` — a SELECT to a plan: projections, predicates, LIMIT, the one inner equi-join and its index rule;
- `compile.py` — the entries (`compile_subscription`, `compile_query`): the plan restricted by row-level security;
- `scan.py` — how a plan finds rows of one table (index or scan); `joins.py` — join results and join mirrors;
- `execute.py` — a one-off query's result and the HTTP `/sql` body;
- `verdict.py` — the filters' check at start, remembered in the data directory so a restart skips sqlglot.

Error texts follow the real host's `sql-parser`/`expr` crates where one exists. This package exports what the rest
of the host (subscriptions, WebSocket, HTTP) and the tests use; everything else stays inside it.
"""

from autopilot_sync.host.sql.compile import (
    VisibilityFilterError,
    check_visibility_filters,
    compile_query,
    compile_subscription,
)
from autopilot_sync.host.sql.execute import execute, plan_row_bytes, plan_rows, sql_json_result
from autopilot_sync.host.sql.joins import JoinMirror, JoinTest, has_partner
from autopilot_sync.host.sql.plan import (
    CompareOp,
    Comparison,
    SelectPlan,
    SqlContext,
    SqlError,
    conjuncts,
    equality_terms,
)
from autopilot_sync.host.sql.scan import access_path
from autopilot_sync.host.sql.verdict import check_visibility_filters_at_start

__all__ = [
    "CompareOp",
    "Comparison",
    "JoinMirror",
    "JoinTest",
    "SelectPlan",
    "SqlContext",
    "SqlError",
    "VisibilityFilterError",
    "access_path",
    "check_visibility_filters",
    "check_visibility_filters_at_start",
    "compile_query",
    "compile_subscription",
    "conjuncts",
    "equality_terms",
    "execute",
    "has_partner",
    "plan_row_bytes",
    "plan_rows",
    "sql_json_result",
]
