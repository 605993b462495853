"""Reading the gate's TOML registries: one error type that names the file, the entry and the field at fault."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RegistryError(ValueError):
    """A registry file that is missing, not TOML, or has an entry with a missing or malformed field.

    The gate treats a broken registry as a failure, never as "no entries": a typo must not silently switch the
    gate off. The message names the file, the entry and the field so the fix is obvious.
    """


def load_entries(path: Path, table: str) -> list[tuple[str, Mapping[str, Any]]]:
    """Return each `[[table]]` entry of `path` with a label ("entry 2 'id'") for error messages.

    A file without the table has no entries; a file that cannot be read or parsed raises `RegistryError`.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{path}: cannot be read as TOML: {exc}") from None
    raw = document.get(table, [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise RegistryError(f"{path}: '{table}' must be an array of tables ([[{table}]])")
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for number, item in enumerate(raw, start=1):
        name = item.get("id")
        label = f"{table} {number}" + (f" ({name!r})" if isinstance(name, str) else "")
        entries.append((label, item))
    return entries


def field_error(path: Path, label: str, field: str, expected: str) -> RegistryError:
    """Build the one error shape every registry uses: file, entry, field, what was expected."""
    return RegistryError(f"{path}: {label}: field '{field}': expected {expected}")


def required_text(path: Path, label: str, entry: Mapping[str, Any], field: str) -> str:
    """Return a required non-blank string field, or raise naming the entry and the field."""
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise field_error(path, label, field, "a non-empty string")
    return value.strip()


def reject_unknown_fields(path: Path, label: str, entry: Mapping[str, Any], known: frozenset[str]) -> None:
    """Refuse fields the schema does not know: a misspelt field would otherwise be ignored silently."""
    unknown = sorted(set(entry) - known)
    if unknown:
        raise field_error(path, label, unknown[0], f"one of the known fields ({', '.join(sorted(known))})")
