"""Start-up validation: build a service's settings from the environment or stop with every problem named."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TypeVar

from autopilot_sync.settings.base import Problem, ServiceSettings, SettingsError
from autopilot_sync.settings.forms import expected_form

EXIT_CONFIG = 2
"""Exit status for a configuration a service refuses to start with (the usage-error convention)."""

S = TypeVar("S", bound=ServiceSettings)

_MAX_SHOWN_VALUE = 80


def load_settings(cls: type[S]) -> S:
    """Return `cls` filled from the environment, or print one line per problem to stderr and exit 2.

    A missing required variable, a malformed value or an unknown variable with the service's prefix (a typo that
    would otherwise fall back to the default) all stop the service: it never starts on a guess.
    """
    settings, problems = validate_environment(cls, os.environ)
    if settings is None or problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return settings


def validate_environment(cls: type[S], environ: Mapping[str, str]) -> tuple[S | None, list[str]]:
    """The settings (None when invalid) and one message per problem, each naming the variable and its form.

    `cls` reads the real process environment; `environ` is used only to spot unknown variables.
    """
    problems = _unknown_variables(cls, environ)
    try:
        settings: S | None = cls()
    except SettingsError as exc:
        settings = None
        seen: set[str] = set()
        for problem in exc.problems:
            variable, message = _describe(cls, problem)
            if variable not in seen:
                seen.add(variable)
                problems.append(message)
    return settings, problems


def _unknown_variables(cls: type[ServiceSettings], environ: Mapping[str, str]) -> list[str]:
    prefix = cls.env_prefix()
    known = {cls.env_name(name) for name in cls.fields}
    return [
        f"{name}: unknown variable for the {cls.service_name()} service; known: {', '.join(sorted(known))}"
        for name in sorted(environ)
        if name.upper().startswith(prefix) and name.upper() not in known
    ]


def _describe(cls: type[ServiceSettings], problem: Problem) -> tuple[str, str]:
    """The variable at fault and `VARIABLE: what is wrong; expected <form>: <description>` for one problem."""
    if problem.reason == "unknown" or problem.field not in cls.fields:
        variable = f"{cls.env_prefix()}*"
        return variable, f"{variable}: {problem.message or 'invalid settings'}"
    variable = cls.env_name(problem.field)
    field = cls.fields[problem.field]
    expectation = f"expected {expected_form(field)}: {field.description}"
    if problem.reason == "missing":
        return variable, f"{variable}: missing; {expectation}"
    shown = repr(problem.input)
    if len(shown) > _MAX_SHOWN_VALUE:
        shown = shown[: _MAX_SHOWN_VALUE - 3] + "..."
    return variable, f"{variable}: invalid value {shown} ({problem.message or 'invalid'}); {expectation}"
