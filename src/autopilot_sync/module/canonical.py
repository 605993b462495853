"""Canonical JSON and the payload hash: the one definition producers, the module and desktops all use.

Canonical form: keys sorted, no insignificant whitespace, UTF-8 text (non-ASCII kept as is), no NaN/Infinity.
The hash is `sha256:<hex>` of those bytes. Test vectors: `tests/vectors/payload_hash.json`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


class CanonicalJsonError(ValueError):
    """Text that is not JSON, or a value JSON cannot represent canonically (NaN, Infinity)."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON-compatible value."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CanonicalJsonError(f"not canonical JSON: {exc}") from None


def canonicalize_text(text: str) -> str:
    """Parse JSON text and return its canonical form (CanonicalJsonError when it is not JSON)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CanonicalJsonError(f"payload is not JSON: {exc.msg} at {exc.pos}") from None
    return canonical_json(value)


def _reject_constant(name: str) -> Any:
    raise CanonicalJsonError(f"payload contains {name}, which JSON does not allow")


def payload_hash(canonical: str) -> str:
    """`sha256:<hex>` of canonical JSON text."""
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def hash_value(value: Any) -> tuple[str, str]:
    """Canonical text and hash of a value, for producers."""
    text = canonical_json(value)
    return text, payload_hash(text)
