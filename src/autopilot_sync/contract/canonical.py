"""Canonical JSON and the payload hash: the one definition producers, the module and desktops all use.

Canonical form: keys sorted, no insignificant whitespace, UTF-8 text (non-ASCII kept as is), no NaN/Infinity.
The hash is `sha256:<hex>` of those bytes. Test vectors: `tests/vectors/payload_hash.json`.

The definition is the standard library's `json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`. `canonicalize_text`, which the module runs on every appended payload, first tries orjson (about
6x faster) and keeps its answer only where it is byte-identical to that definition; otherwise it takes the standard
library path. orjson differs in exactly these ways, each sent to the fallback:
- text it refuses (not JSON, NaN/Infinity, lone surrogates, nesting past its limits): the standard library gives the
  same answer or the same error as before (lone surrogates, nesting past the recursion limit and integers past
  Python's digit limit are errors there too: they cannot be hashed or read back by every reader);
- integers beyond 64 bits, which orjson reads as floats: they print in exponent form (every such number is over
  1e16), caught by the next check;
- float formatting: Python writes exponents as `e+16`/`e-05` and uses them below 1e-4, orjson writes `e-5` and
  `0.00001`. Output with a digit followed by `e+`/`e-`, or with `0.0000`, takes the fallback (a string holding such
  text does too: slower, never wrong).
`tests/contract/test_canonical.py` checks the two paths agree on the vectors and on random JSON (hypothesis).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

#: An empty SHA-256 state that every payload hash copies: `hashlib.sha256(data)` fetches the digest from OpenSSL 3's
#: provider on each call, which cost more than hashing a ~250-byte payload (the module and every producer hash each
#: event); a copy of a made state skips that fetch and gives the same digest.
_SHA256 = hashlib.sha256()


def _sha256_text(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    digest = _SHA256.copy()
    digest.update(data)
    return "sha256:" + digest.hexdigest()


class CanonicalJsonError(ValueError):
    """Text that is not JSON, or a value JSON cannot represent canonically (NaN, Infinity)."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON-compatible value.

    Refused (CanonicalJsonError): NaN/Infinity, non-JSON types, nesting past the interpreter's recursion limit,
    integers past Python's digit limit, and text holding a lone surrogate, which has no UTF-8 form to hash.
    """
    fast = _value_orjson(value)
    if fast is not None:
        return fast[1]
    return _canonical_json_stdlib(value)


#: orjson hands these to its `default` (none here, so it refuses them) instead of serializing them itself: a
#: dataclass, a datetime or a subclass of a builtin type, which the definition refuses or prints its own way.
_PASSTHROUGH = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _value_orjson(value: Any) -> tuple[bytes, str] | None:
    """A value's canonical bytes and text from orjson when they are certainly the definition's, else None.

    A producer hashes every event it sends, and the standard library's `json.dumps` was most of that (~14 µs of
    a ~250-byte payload against ~1 µs). orjson serializes a few things the definition refuses or prints otherwise:
    it writes NaN/Infinity as `null`, a `uuid.UUID` as its text, an `enum.Enum` as its value, a tuple as an array.
    Each of those reads back as a different value, so the output is kept only when it reads back equal to the
    value itself (one C pass each way); exponent-form and tiny floats are sent to the definition as in
    `_canonicalize_orjson`. Anything orjson refuses (other types, non-string keys, integers past 64 bits, lone
    surrogates, deep nesting) goes to the definition too, which then gives its own answer or error.
    """
    try:
        out = orjson.dumps(value, option=_PASSTHROUGH)
        if orjson.loads(out) != value:
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, ValueError, RecursionError):
        return None
    text = out.decode("utf-8")
    return None if _float_form_differs(text) else (out, text)


def _canonical_json_stdlib(value: Any) -> str:
    """The definition: `json.dumps` sorted and compact, then the UTF-8 check."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CanonicalJsonError(f"not canonical JSON: {_short(exc)}") from None
    _require_utf8(text)
    return text


def canonicalize_text(text: str) -> str:
    """Parse JSON text and return its canonical form (CanonicalJsonError when it is not JSON)."""
    fast = _canonicalize_orjson(text)
    if fast is not None:
        return fast
    return _canonicalize_stdlib(text)


def canonicalize_and_hash(text: str) -> tuple[str, int, str]:
    """`canonicalize_text`, the canonical form's UTF-8 size and its `payload_hash`, from one pass where it can.

    The module checks all three for every appended event; orjson's answer is already the canonical UTF-8 bytes,
    so the size and the hash are taken from them instead of encoding the text twice more. Same values and the same
    CanonicalJsonError as calling the three functions one after the other.
    """
    fast = _canonical_orjson(text)
    if fast is not None:
        return fast[1], len(fast[0]), _sha256_text(fast[0])
    canonical = _canonicalize_stdlib(text)
    data = canonical.encode("utf-8")
    return canonical, len(data), _sha256_text(data)


def _canonicalize_stdlib(text: str) -> str:
    """The definition: parse with `json`, print with `canonical_json`."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except CanonicalJsonError:
        raise
    except json.JSONDecodeError as exc:
        raise CanonicalJsonError(f"payload is not JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise CanonicalJsonError("payload is not JSON this reader can parse: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise CanonicalJsonError(f"payload is not JSON this reader can parse: {_short(exc)}") from None
    return _canonical_json_stdlib(value)


def _require_utf8(text: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate from a `\\ud800` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError(
            "payload holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode"
        ) from None


def _short(exc: BaseException) -> str:
    """The first line of an exception's text, cut to 200 characters (no internals, no echo of a huge input)."""
    return str(exc).split("\n", 1)[0][:200]


def _canonicalize_orjson(text: str) -> str | None:
    """orjson's canonical form when it is certainly the same bytes as the definition's, else None."""
    fast = _canonical_orjson(text)
    return None if fast is None else fast[1]


def _canonical_orjson(text: str) -> tuple[bytes, str] | None:
    """`_canonicalize_orjson` as its UTF-8 bytes (what orjson makes) and its text, else None."""
    try:
        out = orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    canonical = out.decode("utf-8")
    return None if _float_form_differs(canonical) else (out, canonical)


def _float_form_differs(canonical: str) -> bool:
    """Whether orjson's output may print a number otherwise than the definition: `0.0000` (a tiny float), or `e+`/`e-`
    right after an ASCII digit (exponent form); a string holding such text answers True too (slower, never wrong).

    Scanned as `str`, not as orjson's bytes: `needle in some_bytes` first tries the needle as an integer and pays
    for the TypeError it swallows (~0.5 µs per test on Python 3.11), and each event is scanned by its producer and
    by the module. A one-character test (`memchr`) skips the multi-character scans where they cannot match: every
    marker holds `.` or `e`. The same answer as scanning the UTF-8 bytes: a non-ASCII character is never an ASCII
    digit, and the markers are ASCII."""
    if "." in canonical and "0.0000" in canonical:
        return True
    if "e" not in canonical:
        return False
    return _digit_before(canonical, "e+") or _digit_before(canonical, "e-")


def _digit_before(text: str, marker: str) -> bool:
    """Whether `marker` occurs right after an ASCII digit: a number in exponent form (or a string that looks so)."""
    at = text.find(marker)
    while at > 0:
        if "0" <= text[at - 1] <= "9":
            return True
        at = text.find(marker, at + 2)
    return False


def _reject_constant(name: str) -> Any:
    raise CanonicalJsonError(f"payload contains {name}, which JSON does not allow")


def payload_hash(canonical: str) -> str:
    """`sha256:<hex>` of canonical JSON text."""
    return _sha256_text(canonical.encode("utf-8"))


def hash_value(value: Any) -> tuple[str, str]:
    """Canonical text and hash of a value, for producers."""
    fast = _value_orjson(value)
    if fast is not None:
        return fast[1], _sha256_text(fast[0])
    text = _canonical_json_stdlib(value)
    return text, payload_hash(text)


def nests_deeper_than(canonical: str, limit: int) -> bool:
    """Whether canonical JSON text nests arrays/objects deeper than `limit` (producers check it before storing).

    Counting brackets outside strings is exact on canonical text (no insignificant whitespace), and skipped entirely
    when the text has no more openers than the limit.
    """
    if canonical.count("[") + canonical.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = False
    for char in canonical:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False
