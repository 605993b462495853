"""Field kinds shared by the settings classes: how each value is parsed, and the form shown in errors and docs."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from autopilot_sync.settings.base import Kind

T = TypeVar("T")


@dataclass(frozen=True)
class ListenAddress:
    """Where a service listens: the host (name or IP, IPv6 without brackets) and TCP port (0 picks a free one)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: object) -> ListenAddress:
    """Parse `host:port` (or `[v6]:port`); reject anything else with the form it expects."""
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("expected text like 127.0.0.1:3000")
    host, sep, port_text = value.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    unbracketed_v6 = ":" in host and not bracketed
    if not sep or not host or unbracketed_v6 or not port_text.isdigit():
        raise ValueError("expected host:port like 127.0.0.1:3000 ([::1]:3000 for IPv6)")
    port = int(port_text)
    if port > 65535:
        raise ValueError("port must be between 0 and 65535")
    return ListenAddress(host, port)


def _split_commas(value: object) -> tuple[object, ...]:
    """Turn `a, b,,c` into `("a", "b", "c")`; an empty string is an empty list; a list or tuple is taken as is."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, (tuple, list)):
        return tuple(value)
    raise ValueError("Input should be a valid tuple")


def text(value: object) -> str:
    """`value` if it is text (the environment's raw form), else the error pydantic gave for a non-string."""
    if not isinstance(value, str):
        raise ValueError("Input should be a valid string")
    return value


def integer(value: object) -> int:
    """An integer from its decimal text (surrounding blanks ignored) or an int."""
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    raise ValueError("Input should be a valid integer, unable to parse string as an integer")


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def boolean(value: object) -> bool:
    """`true`/`false` (also 1/0, yes/no, on/off, t/f, y/n, any case) or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def path(value: object) -> Path:
    """A filesystem path from text or a path (no `~` expansion: `FilePath` adds that)."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise ValueError("Input should be a valid path")


def at_least(minimum: int) -> Callable[[object], int]:
    """An integer >= `minimum`."""

    def parse(value: object) -> int:
        number = integer(value)
        if number < minimum:
            raise ValueError(f"Input should be greater than or equal to {minimum}")
        return number

    return parse


def matching(pattern: str) -> Callable[[object], str]:
    """Text matching the regular expression `pattern` (searched, as pydantic's `pattern` constraint)."""
    compiled = re.compile(pattern)

    def parse(value: object) -> str:
        checked = text(value)
        if not compiled.search(checked):
            raise ValueError(f"String should match pattern '{pattern}'")
        return checked

    return parse


def then(first: Callable[[object], str], after: Callable[[str], T]) -> Callable[[object], T]:
    """`first`, then `after` on its result (pydantic's AfterValidator)."""
    return lambda value: after(first(value))


def items(each: Callable[[object], T]) -> Callable[[object], tuple[T, ...]]:
    """A comma-separated list (or a tuple) whose every item `each` accepts."""
    return lambda value: tuple(each(item) for item in _split_commas(value))


def optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    """None stays None; anything else is `parse`d."""
    return lambda value: None if value is None else parse(value)


def _check_url(value: str, *, strip_slash: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(ch.isspace() for ch in value):
        raise ValueError("expected an http:// or https:// URL with a host")
    return value.rstrip("/") if strip_slash else value


def _base_url(value: str) -> str:
    return _check_url(value, strip_slash=True)


def _issuer_url(value: str) -> str:
    return _check_url(value, strip_slash=False)


def _identity_hex(value: str) -> str:
    if value and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("expected 64 hex characters (a SpacetimeDB identity) or empty")
    return value.lower()


def _hex_pubkey(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("expected 64 hex characters (a Nostr x-only public key)")
    return value.lower()


BOOL: Kind[bool] = Kind("true or false", boolean)
"""A switch: `true` or `false`."""

TEXT: Kind[str] = Kind("text", text)
"""Plain text, kept as written."""

Listen: Kind[ListenAddress] = Kind("host:port", parse_listen)
"""A listening socket address, written `host:port`."""

BaseUrl: Kind[str] = Kind("http(s) URL", then(text, _base_url))
"""A service's base URL; a trailing `/` is dropped so paths can be appended."""

IssuerUrls: Kind[tuple[str, ...]] = Kind("comma-separated http(s) URLs", items(then(text, _issuer_url)))
"""A comma-separated list of OIDC issuer URLs, each kept byte for byte because `iss` claims are compared exactly."""

HexPubkeys: Kind[tuple[str, ...]] = Kind("comma-separated 64-hex-character public keys", items(then(text, _hex_pubkey)))
"""A comma-separated list of Nostr public keys (hex), normalised to lowercase."""

IdentityHex: Kind[str] = Kind("identity hex (64 characters) or empty", then(text, _identity_hex))
"""A SpacetimeDB identity as hex, as `/v1/identity` and the SDK print it; empty means none."""

Identities: Kind[tuple[str, ...]] = Kind(
    "comma-separated identity hex (64 characters each)", items(then(text, _identity_hex))
)
"""A comma-separated list of SpacetimeDB identities (hex), normalised to lowercase."""

Names: Kind[tuple[str, ...]] = Kind("comma-separated names", items(text))
"""A comma-separated list of plain names (blank items are dropped)."""

DatabaseName: Kind[str] = Kind(
    "lowercase letters and digits in words joined by '-' (like autopilot-sync)", matching(r"^[a-z0-9]+(-[a-z0-9]+)*$")
)
"""A Spacetime database name as it appears in `/v1/database/:name`."""

DottedPath: Kind[str] = Kind(
    "dotted Python import path (like autopilot_sync.module)",
    matching(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"),
)
"""An importable Python module path."""

ModulePath: Kind[str] = Kind(
    "dotted Python import path, or a built module file ending .js/.mjs, or empty",
    matching(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|.+\.m?js)?$"),
)
"""The module a host serves: a Python import path, or a built TypeScript module (one ES-module file); empty: none."""

Count: Kind[int] = Kind("integer >= 1", at_least(1))
"""A positive count (commits, bytes)."""

CountOrZero: Kind[int] = Kind("integer >= 0", at_least(0))
Seconds: Kind[int] = Kind("whole seconds >= 1", at_least(1))
"""A positive duration in whole seconds."""

SecondsOrZero: Kind[int] = Kind("whole seconds >= 0", at_least(0))
"""A duration in whole seconds that may be zero (a tolerance that can be switched off)."""

MicrosecondsOrZero: Kind[int] = Kind("whole microseconds >= 0", at_least(0))
"""A short duration in whole microseconds that may be zero (a bound that can be switched off)."""

FilePath: Kind[Path] = Kind("filesystem path (~ expands)", lambda value: path(value).expanduser())
"""A path on the local filesystem; `~` expands to the user's home."""
