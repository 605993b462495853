"""How a settings field is written in the environment: its expected form and its default, as text."""

from __future__ import annotations

from pathlib import Path

from pydantic.fields import FieldInfo

from autopilot_sync.settings.fields import Form

_PLAIN_FORMS: dict[object, str] = {
    bool: "true or false",
    int: "integer",
    str: "text",
    Path: "filesystem path",
}


def expected_form(field: FieldInfo) -> str:
    """The form an operator must write, from the field type's `Form` marker or its plain Python type."""
    for item in field.metadata:
        if isinstance(item, Form):
            return item.text
    return _PLAIN_FORMS.get(field.annotation, "text")


def default_text(field: FieldInfo) -> str | None:
    """The default as it would be written in the environment; None when the field is required."""
    return None if field.is_required() else env_text(field.default)


def env_text(value: object) -> str:
    """A settings value written back in environment form: `true`/`false`, lists comma-joined, else `str()`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)
