"""RFC 8785 (JCS) canonical form of ledger payloads, decided with the standard library.

Standard library only, like merkle.py: the offline verifier (chalicelib/audit/verify.py)
imports it, so an auditor needs no `rfc8785`. The online verifier uses it too, so the two
cannot disagree; the engine's own check (migration 0023) and `rfc8785` itself are held to
the same verdicts by tests/integration/test_canonical_payloads.py.

The ledger's JSON subset: objects, arrays, strings, true, false, null and integers within
±(2^53 - 1). Non-integer numbers are refused (amounts are decimal strings), so the
canonical number form is an integer's decimal digits. A text is canonical when it is the
one RFC 8785 serialisation of what it parses to: no whitespace, keys sorted by UTF-16 code
units and never repeated, strings escaped exactly as ECMAScript's JSON.stringify escapes
them (\\" \\\\ \\b \\f \\n \\r \\t, other controls as \\u00xx, nothing else), no lone
surrogate and no U+0000 (which PostgreSQL text cannot hold, and the app refuses).
"""

from __future__ import annotations

import json
import re
from typing import Any

SAFE_INTEGER = 2**53 - 1  # I-JSON / RFC 8785 integer domain

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_HIGH = re.compile("[\ud800-\U0010ffff]")  # where UTF-16 order may differ from code points


NOT_CANONICAL = "not RFC 8785 canonical JSON"


class NotCanonical(ValueError):
    """The text is not the canonical JSON of the ledger's subset; says why."""


def _refuse_float(text: str) -> Any:
    raise NotCanonical(f"non-integer number {text}")


def _integer(text: str) -> int:
    value = int(text)
    if len(text) > 15 and abs(value) > SAFE_INTEGER:  # 2^53 has 16 digits
        raise NotCanonical(f"integer {value} beyond ±(2^53-1)")
    return value


def _refuse_constant(text: str) -> Any:
    raise NotCanonical(f"{text} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotCanonical(f"an object repeats the key {key!r}")
        out[key] = value
    return out


# Built once: json.loads / json.dumps with options build a new decoder / encoder per call.
_DECODER = json.JSONDecoder(parse_float=_refuse_float, parse_int=_integer,
                            parse_constant=_refuse_constant)
_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                           check_circular=False)


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def dumps(value: Any) -> str:
    """The RFC 8785 text of a value of the subset (NotCanonical outside it)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{dumps(k)}:{dumps(value[k])}"
                              for k in sorted(value, key=_utf16)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise NotCanonical("a string holds U+0000 or a lone surrogate (not storable "
                               "Unicode text)")
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if abs(value) > SAFE_INTEGER:
            raise NotCanonical(f"integer {value} beyond ±(2^53-1)")
        return str(value)
    raise NotCanonical(f"a {type(value).__name__}, not in the ledger's JSON")


def parse(text: str) -> Any:
    """What a canonical `text` holds, or NotCanonical naming why it is not.

    Fast path: for text below U+D800, the C encoder with sorted keys writes exactly
    RFC 8785 (same escapes, same separators, and code point order is UTF-16 order);
    a repeated key cannot survive that comparison (a dict keeps one). Anything else
    is settled by `dumps`, and a refusal is named by a strict parse.
    """
    try:
        parsed = _DECODER.decode(text)
    except NotCanonical:
        raise
    except (ValueError, RecursionError):
        raise NotCanonical("not JSON") from None
    if (_SORTED.encode(parsed) == text and (text.isascii() or not _HIGH.search(text))
            and "\\u0000" not in text):
        return parsed
    try:
        json.loads(text, object_pairs_hook=_unique)  # names a repeated key
        canonical = dumps(parsed)
    except RecursionError:
        raise NotCanonical("nested too deep") from None
    if canonical != text:
        raise NotCanonical(NOT_CANONICAL)
    return parsed


def problem(text: str) -> str | None:
    """Why `text` is not canonical JSON of the ledger's subset, or None."""
    try:
        parse(text)
    except NotCanonical as exc:
        return str(exc)
    return None
