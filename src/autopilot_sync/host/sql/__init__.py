"""The host's SQL (being split into one module per stage; see the next commit)."""

from autopilot_sync.host.sql.select import (
    CompareOp,
    Comparison,
    JoinMirror,
    SelectPlan,
    SqlContext,
    SqlError,
    access_path,
    check_visibility_filters,
    compile_query,
    compile_subscription,
    conjuncts,
    equality_terms,
    execute,
    has_partner,
    plan_rows,
    sql_json_result,
)

__all__ = [
    "CompareOp",
    "Comparison",
    "JoinMirror",
    "SelectPlan",
    "SqlContext",
    "SqlError",
    "access_path",
    "check_visibility_filters",
    "compile_query",
    "compile_subscription",
    "conjuncts",
    "equality_terms",
    "execute",
    "has_partner",
    "plan_rows",
    "sql_json_result",
]
