"""Suite-wide setup.

hypothesis is imported here, at collection start, so pytest's assertion rewriter compiles it before any test runs:
CPython 3.11.7 can fail to compile a module after a RecursionError was raised earlier in the same thread
("AST constructor recursion depth mismatch"), which some hostile-input tests provoke on purpose.
"""

import hypothesis  # noqa: F401
