"""How a settings field is written in the environment: its expected form and its default, as text."""

from __future__ import annotations

from typing import Any

from autopilot_sync.settings.base import Setting


def expected_form(field: Setting[Any]) -> str:
    """The form an operator must write: the field kind's."""
    return field.kind.form


def default_text(field: Setting[Any]) -> str | None:
    """The default as it would be written in the environment; None when the field is required."""
    return None if field.is_required() else env_text(field.default)


def env_text(value: object) -> str:
    """A settings value written back in environment form: `true`/`false`, lists comma-joined, else `str()`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)
