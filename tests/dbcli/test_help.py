"""Every database command has `--help` with an example, as every command must (README's command table lists them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autopilot_sync.cli import main

COMMANDS = [["sql"], ["call"], ["subscribe"], ["logs"], ["token"], ["server"], ["server", "list"], ["server", "add"]]
COMMANDS += [["server", "set-default"]]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_command_has_help_with_an_example_and_a_row_in_the_readme(command: list[str]) -> None:
    done = CliRunner().invoke(main, [*command, "--help"])
    assert done.exit_code == 0 and "Example:" in done.output, done.output
    assert f"`autopilot-sync {command[0]}" in README.read_text(encoding="utf-8")
