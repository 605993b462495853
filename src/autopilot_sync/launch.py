"""The `autopilot-sync` entry point: `autopilot-sync host ...` starts without importing click; all else is `cli.main`.

Why: the host subcommand is what `./dev up`, the tests and the benchmark start, and click's import (with `inspect`,
`uuid` and its types) was ~0.05 s of the host's ~0.7 s of CPU to `ready` (docs/performance.md "Round 7 —
startup4"). So a well-formed `host` argument list (only the host's own options, each with its value) is read here
and run by `host/start.py`, with the same one-line errors the click group gives. Anything else — `--help`, an
unknown option, a missing value, an extra argument, shell completion, every other subcommand — goes to the click
CLI unchanged, so help and usage texts have one source (`host/cli.py`), and so do the CLI docs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

#: The host's options (as `host/cli.py` declares them) and the `HostOptions` field each one sets.
HOST_OPTIONS = {
    "--listen": "listen",
    "--data-dir": "data_dir",
    "--database": "database",
    "--module": "module_path",
    "--log-level": "log_level",
}

#: Set by a shell asking click for completions (click's `_<PROG>_COMPLETE`): that is click's job.
COMPLETION_VARIABLE = "_AUTOPILOT_SYNC_COMPLETE"


def host_arguments(args: Sequence[str]) -> dict[str, str] | None:
    """The host's options from `args` (what follows `host`), or None when click must read them (see the docstring).

    `--name value` and `--name=value` as click reads them; a repeated option keeps its last value, as click's does.
    A value that starts with `-` is left to click, which decides whether it is a value or a missing one.
    """
    found: dict[str, str] = {}
    position = 0
    while position < len(args):
        name, equals, value = args[position].partition("=")
        field = HOST_OPTIONS.get(name)
        if field is None:
            return None
        if not equals:
            position += 1
            if position == len(args) or args[position].startswith("-"):
                return None
            value = args[position]
        found[field] = value
        position += 1
    return found


def main() -> None:
    """Run `autopilot-sync` with `sys.argv`: the host's fast path when it applies, else the click CLI."""
    args = sys.argv[1:]
    options = host_arguments(args[1:]) if args[:1] == ["host"] and COMPLETION_VARIABLE not in os.environ else None
    if options is None:
        from autopilot_sync.cli import main as click_main

        click_main()
        return
    _run_host(options)


def _run_host(options: dict[str, str]) -> None:
    """`host/start.py`'s `run_host`, ending as the click group would: `Error: <one line>` and exit 1 for a failure
    a user can fix (`cli_errors.one_line`, a module that fails to load), `Aborted!` for Ctrl-C before the loop runs."""
    from autopilot_sync import dataclass_methods

    dataclass_methods.install()  # before the start's classes: their methods' code from the last start's cache
    from autopilot_sync.cli_errors import one_line
    from autopilot_sync.host.start import HostOptions, host_remedies, module_load_failure, run_host

    try:
        run_host(HostOptions(**options))
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        line = module_load_failure(exc) or one_line(exc, host_remedies())
        if line is None:
            raise
        print(f"Error: {line}", file=sys.stderr)
        sys.exit(1)
