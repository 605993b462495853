"""Registry parsing: every malformed entry is refused with the entry and field named, never read as empty."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from gate_helpers import REPO_ROOT, exception_entry

from autopilot_sync.gate.exceptions import load_exceptions
from autopilot_sync.gate.registry import RegistryError
from autopilot_sync.gate.symbols import load_blocked_symbols

SYMBOL_IDS = {"legacy-token-route"}


def _exceptions(tmp_path: Path, text: str) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(text, encoding="utf-8")
    load_exceptions(path, SYMBOL_IDS)


def test_project_blocked_list_catches_every_required_legacy_string_with_a_reason() -> None:
    symbols = load_blocked_symbols(REPO_ROOT / "gate" / "blocked-symbols.toml")
    required = [
        "/sync/socket/" + "websocket",
        "phx" + "_join",
        "phx" + "_reply",
        "phx" + "_leave",
        "sync:" + "update_batch",
        "/api/spacetime/" + "token",
        "/api/v1/sync/" + "token",
        "/api/v1/spacetime/" + "token",
        "SpacetimePublisher::" + "in_memory",
        "InMemory" + "Publisher",
        "in_memory" + "_publisher",
        "con" + "vex",
    ]
    uncaught = [text for text in required if not any(item.occurs_in(f"x {text} y") for item in symbols)]
    assert uncaught == []
    assert all(item.reason for item in symbols)
    assert any(item.occurs_in("CON" + "VEX") for item in symbols)


def test_canonical_routes_are_not_blocked() -> None:
    symbols = load_blocked_symbols(REPO_ROOT / "gate" / "blocked-symbols.toml")
    for line in ("POST /api/sync/token", "GET /v1/database/autopilot-sync/subscribe", "fan-out of updates"):
        assert not [item.id for item in symbols if item.occurs_in(line)], line


def test_pattern_and_symbol_are_exclusive_and_patterns_must_compile(tmp_path: Path) -> None:
    path = tmp_path / "blocked.toml"
    path.write_text('[[blocked]]\nid = "a"\nsymbol = "x"\npattern = "y"\nreason = "r"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="exactly one of"):
        load_blocked_symbols(path)
    path.write_text('[[blocked]]\nid = "a"\npattern = "(unclosed"\nreason = "r"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="valid regular expression"):
        load_blocked_symbols(path)
    path.write_text('[[blocked]]\nid = "a"\npattern = "x*"\nreason = "r"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="does not match empty text"):
        load_blocked_symbols(path)


def test_project_exception_registry_is_valid_and_empty() -> None:
    ids = {item.id for item in load_blocked_symbols(REPO_ROOT / "gate" / "blocked-symbols.toml")}
    assert load_exceptions(REPO_ROOT / "gate" / "exceptions.toml", ids) == ()


def test_well_formed_exception_parses_to_a_frozen_value(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(exception_entry(), encoding="utf-8")
    (exception,) = load_exceptions(path, SYMBOL_IDS)
    assert exception.expires == dt.date(2026, 3, 31)
    assert exception.is_active(dt.date(2026, 3, 31))
    assert not exception.is_active(dt.date(2026, 4, 1))
    assert not exception.is_noncompliant(dt.date(2026, 4, 14))
    assert exception.is_noncompliant(dt.date(2026, 4, 15))
    with pytest.raises(AttributeError):
        exception.owner = "someone else"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"owner": ""}, "field 'owner': expected a non-empty string"),
        ({"deletion_issue": '"  "'}, "field 'deletion_issue': expected a non-empty string"),
        ({"rollback": ""}, "field 'rollback': expected a non-empty string"),
        ({"blast_radius": "3"}, "field 'blast_radius': expected a non-empty string"),
        ({"expires": '"2026-03-31"'}, "field 'expires': expected a TOML date"),
        ({"expires": "2026-03-31T10:00:00"}, "field 'expires': expected a TOML date"),
        ({"expires": ""}, "field 'expires': expected a TOML date"),
        ({"symbol": '"no-such-symbol"'}, "field 'symbol': expected the id of a blocked symbol"),
        ({"path": '"**/*"'}, "field 'path': expected a glob bounded to one surface"),
        ({"ownr": '"typo"'}, "field 'ownr': expected one of the known fields"),
    ],
)
def test_malformed_exception_is_refused(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(RegistryError, match="exception 1 \\('old-token-alias'\\): " + message.replace("(", "\\(")):
        _exceptions(tmp_path, exception_entry(**overrides))


def test_duplicate_exception_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="used by more than one exception"):
        _exceptions(tmp_path, exception_entry() + exception_entry())


def test_blocked_list_entry_without_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blocked-symbols.toml"
    path.write_text('[[blocked]]\nid = "x"\nsymbol = "y"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="blocked 1 \\('x'\\): field 'reason'"):
        load_blocked_symbols(path)


def test_empty_blocked_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blocked-symbols.toml"
    path.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="no \\[\\[blocked\\]\\] entries"):
        load_blocked_symbols(path)
