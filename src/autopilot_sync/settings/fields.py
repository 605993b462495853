"""Field types shared by the settings classes, each carrying the expected form shown in errors and docs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator


@dataclass(frozen=True)
class Form:
    """Annotation metadata: how an operator writes this value in the environment (e.g. "host:port")."""

    text: str


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


def _split_commas(value: object) -> object:
    """Turn `a, b,,c` into `("a", "b", "c")`; an empty string is an empty list."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


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


Listen = Annotated[ListenAddress, PlainValidator(parse_listen), Form("host:port")]
"""A listening socket address, written `host:port`."""

BaseUrl = Annotated[str, AfterValidator(_base_url), Form("http(s) URL")]
"""A service's base URL; a trailing `/` is dropped so paths can be appended."""

IssuerUrl = Annotated[str, AfterValidator(_issuer_url)]
"""An OIDC issuer URL, kept byte for byte because `iss` claims are compared exactly."""

IssuerUrls = Annotated[tuple[IssuerUrl, ...], BeforeValidator(_split_commas), Form("comma-separated http(s) URLs")]
"""A comma-separated list of OIDC issuer URLs."""

HexPubkeys = Annotated[
    tuple[Annotated[str, AfterValidator(_hex_pubkey)], ...],
    BeforeValidator(_split_commas),
    Form("comma-separated 64-hex-character public keys"),
]
"""A comma-separated list of Nostr public keys (hex), normalised to lowercase."""

IdentityHex = Annotated[str, AfterValidator(_identity_hex), Form("identity hex (64 characters) or empty")]
"""A SpacetimeDB identity as hex, as `/v1/identity` and the SDK print it; empty means none."""

Identities = Annotated[
    tuple[Annotated[str, AfterValidator(_identity_hex)], ...],
    BeforeValidator(_split_commas),
    Form("comma-separated identity hex (64 characters each)"),
]
"""A comma-separated list of SpacetimeDB identities (hex), normalised to lowercase."""

Names = Annotated[tuple[str, ...], BeforeValidator(_split_commas), Form("comma-separated names")]
"""A comma-separated list of plain names (blank items are dropped)."""

DatabaseName = Annotated[
    str,
    Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$"),
    Form("lowercase letters and digits in words joined by '-' (like autopilot-sync)"),
]
"""A Spacetime database name as it appears in `/v1/database/:name`."""

DottedPath = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"),
    Form("dotted Python import path (like autopilot_sync.module)"),
]
"""An importable Python module path."""

ModulePath = Annotated[
    str,
    Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|.+\.m?js)?$"),
    Form("dotted Python import path, or a built module file ending .js/.mjs, or empty"),
]
"""The module a host serves: a Python import path, or a built TypeScript module (one ES-module file); empty: none."""

Count = Annotated[int, Field(ge=1), Form("integer >= 1")]
"""A positive count (commits, bytes)."""

Seconds = Annotated[int, Field(ge=1), Form("whole seconds >= 1")]
"""A positive duration in whole seconds."""

SecondsOrZero = Annotated[int, Field(ge=0), Form("whole seconds >= 0")]
"""A duration in whole seconds that may be zero (a tolerance that can be switched off)."""

MicrosecondsOrZero = Annotated[int, Field(ge=0), Form("whole microseconds >= 0")]
"""A short duration in whole microseconds that may be zero (a bound that can be switched off)."""

FilePath = Annotated[Path, AfterValidator(Path.expanduser), Form("filesystem path (~ expands)")]
"""A path on the local filesystem; `~` expands to the user's home."""
