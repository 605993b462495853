"""SQL text to one sqlglot SELECT: the bounds every query must pass and the parser errors in the real host's words.

Parsing goes through sqlglot's PostgreSQL dialect (the closest to SpacetimeDB's `sqlparser` dialect: `<>`, `X'..'`,
double-quoted identifiers); everything that is not one SELECT is refused here, before compilation looks at it.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from autopilot_sync.host.sql.plan import SqlError

#: sqlglot dialect used to read queries.
DIALECT = "postgres"
#: Largest query text accepted (the real host has no fixed limit; this keeps a hostile client from feeding megabytes).
MAX_QUERY_CHARS = 64 * 1024
#: Most AND/OR/NOT operators in one query (each is a level of the parse tree sqlglot and the compiler recurse into).
MAX_BOOLEAN_OPERATORS = 256
#: Deepest nesting of parentheses in one query.
MAX_PARENTHESES_DEPTH = 32


def parse_select(sql: str) -> exp.Select:
    """The query's one SELECT statement, or SqlError in the real host's words when the text is anything else.

    Bounds come first (length, boolean operators, parentheses), so a hostile query never reaches sqlglot's
    recursion; then a statement must start with a word SpacetimeDB's parser starts one with.
    """
    if len(sql) > MAX_QUERY_CHARS:
        raise SqlError(f"Unsupported: query of {len(sql)} characters (the limit is {MAX_QUERY_CHARS})")
    if not sql.strip():
        raise SqlError("Empty SQL query")
    _check_size(sql)
    _check_statement_keyword(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        raise SqlError(f"sql parser error: {_first_line(str(exc))}") from None
    except Exception as exc:  # sqlglot raises assorted errors on garbage (tokenizer, recursion)
        raise SqlError(f"sql parser error: {_first_line(str(exc)) or type(exc).__name__}") from None
    if not statements:
        raise SqlError("Empty SQL query")
    if len(statements) > 1:
        raise SqlError("Multiple SQL statements are not supported")
    (statement,) = statements
    if not isinstance(statement, exp.Select):
        what = type(statement).__name__.upper()
        raise SqlError(f"Unsupported: Non-SELECT queries ({what}); this host serves read-only SQL")
    return statement


_STRING_LITERALS = re.compile(r"'(?:[^']|'')*'")
_BOOLEAN_OPERATORS = re.compile(r"\b(?:and|or|not)\b", re.IGNORECASE)


def _check_size(sql: str) -> None:
    """Refuse a query whose boolean operators or parentheses exceed the bounds, before sqlglot parses it.

    Parsing and compiling recurse per operator of a chain (`a AND b AND ...` is a tree as deep as it is long), so a
    few thousand terms exhaust the stack; the bounds keep every query far from that (docs/security.md).
    """
    code = _STRING_LITERALS.sub("''", sql)
    operators = len(_BOOLEAN_OPERATORS.findall(code))
    if operators > MAX_BOOLEAN_OPERATORS:
        raise SqlError(
            f"Unsupported: query with {operators} AND/OR/NOT operators (the limit is {MAX_BOOLEAN_OPERATORS})"
        )
    depth = deepest = 0
    for char in code if code.count("(") > MAX_PARENTHESES_DEPTH else ():
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_PARENTHESES_DEPTH:
        raise SqlError(f"Unsupported: parentheses nested {deepest} deep (the limit is {MAX_PARENTHESES_DEPTH})")


#: Words sqlparser 0.38 (SpacetimeDB's SQL parser) starts a statement with (`Parser::parse_statement`).
_STATEMENT_KEYWORDS = frozenset(
    [
        "KILL",
        "DESCRIBE",
        "EXPLAIN",
        "ANALYZE",
        "SELECT",
        "WITH",
        "VALUES",
        "TRUNCATE",
        "MSCK",
        "CREATE",
        "CACHE",
        "DROP",
        "DISCARD",
        "DECLARE",
        "FETCH",
        "DELETE",
        "INSERT",
        "REPLACE",
        "UNCACHE",
        "UPDATE",
        "ALTER",
        "CALL",
        "COPY",
        "CLOSE",
        "SET",
        "SHOW",
        "USE",
        "GRANT",
        "REVOKE",
        "START",
        "BEGIN",
        "SAVEPOINT",
        "RELEASE",
        "COMMIT",
        "ROLLBACK",
        "ASSERT",
        "DEALLOCATE",
        "EXECUTE",
        "PREPARE",
        "MERGE",
        "PRAGMA",
        "INSTALL",
        "LOAD",
        "TABLE",
    ]
)
_FIRST_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_$]*)")


def _check_statement_keyword(sql: str) -> None:
    """Refuse a statement that starts with a word no statement starts with, in SpacetimeDB's parser's words.

    sqlglot reads `SELEC * FRM x` as an expression; sqlparser (`Parser::parse_statement`, `expected` with the
    token's location) says `sql parser error: Expected an SQL statement, found: SELEC at Line: 1, Column 1`.
    """
    match = _FIRST_WORD.match(sql)
    if match is None or match.group(1).upper() in _STATEMENT_KEYWORDS:
        return
    start = match.start(1)
    line = sql.count("\n", 0, start) + 1
    column = start - (sql.rfind("\n", 0, start) + 1) + 1
    raise SqlError(
        f"sql parser error: Expected an SQL statement, found: {match.group(1)} at Line: {line}, Column {column}"
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
