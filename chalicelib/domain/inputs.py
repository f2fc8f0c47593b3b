"""Reading what a caller sent: one strict JSON reader, one way to name what is wrong.

Every route and the invoice queue read JSON here (the ledger queue keeps its
own reader, which refuses floats by their path in the payload), so every edge
refuses the same things: text that is not JSON, a repeated key (two parsers
could disagree on which value counts), an object of more than
MAX_OBJECT_KEYS keys, NaN or Infinity, nesting too deep, and
numbers no field could hold (a short text such as 1e100000000 would otherwise
cost a validator minutes to turn into an integer, and 1e999999999999999999999
is beyond what Decimal can read). NaN, Infinity and such numbers are refused
by the path of the field they were sent in, whatever the field. Numbers are
read as exact `Decimal`s (money is never a binary float); integers stay `int`.

A pydantic error becomes violations here too, the same way for every model:
the dotted path of the field and the rule in words, never the input itself
(whose text may be personal data or a secret).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chalicelib.domain.errors import InvalidInput, Violation

if TYPE_CHECKING:
    from pydantic import ValidationError


class _Refused(ValueError):
    pass


# No body model has more than about 40 fields: an object of more keys is
# refused as it is read, before a model lists each as an unknown field (a
# 6 MiB batch of 500,000 unknown keys cost 3.3 s of CPU to list; bodies are
# bounded in size at the edge first, access.BODY_LIMITS).
MAX_OBJECT_KEYS = 1000


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_OBJECT_KEYS:
        raise _Refused(f"an object holds more than {MAX_OBJECT_KEYS} keys")
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"an object repeats the key {key[:40]!r}")
        result[key] = value
    return result


# Far beyond any field (amounts stay below 10^16, counts below 10^9), yet cheap
# to check: longer numbers or larger exponents are refused before any use.
MAX_NUMBER_CHARACTERS = 100
MAX_EXPONENT = 100
BEYOND_BOUNDS = (f"is a number beyond 10^{MAX_EXPONENT} or {MAX_NUMBER_CHARACTERS} characters, "
                 "which no field holds")


class _Unreadable:
    """A number the reader will not turn into a value (too long, an exponent
    too large, NaN or Infinity): left in its place while parsing, so the
    refusal can name the field it was sent in, never handed to a model."""

    __slots__ = ("rule",)

    def __init__(self, rule: str) -> None:
        self.rule = rule


class _Numbers:
    """The number hooks of one json.loads call; counts what it left unread."""

    def __init__(self) -> None:
        self.unread = 0

    def _mark(self, rule: str) -> _Unreadable:
        self.unread += 1
        return _Unreadable(rule)

    def decimal(self, text: str) -> Decimal | _Unreadable:
        try:  # an exponent beyond Decimal's own (1e999999999999999999) cannot be read at all
            value = Decimal(text) if len(text) <= MAX_NUMBER_CHARACTERS else None
        except ArithmeticError:
            value = None
        if value is None or abs(value.adjusted()) > MAX_EXPONENT:
            return self._mark(BEYOND_BOUNDS)
        return value

    def integer(self, text: str) -> int | _Unreadable:
        return self._mark(BEYOND_BOUNDS) if len(text) > MAX_NUMBER_CHARACTERS else int(text)

    def constant(self, text: str) -> _Unreadable:
        return self._mark(f"{text} is not a number")


def _unread(parsed: Any) -> list[Violation]:
    """Each number left unread in `parsed`, as a violation at its dotted path
    (iterative: as deep as json.loads allows, with no recursion of ours)."""
    found: list[Violation] = []
    pending: list[tuple[str, Any]] = [("", parsed)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, _Unreadable):
            found.append(Violation(path or "body", value.rule))
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending += reversed([(f"{path}.{key}" if path else str(key), item)
                                 for key, item in items])
    return found


def read_json(body: str | bytes | None, *, empty: Any = None,
              not_json: str = "must be a JSON object") -> Any:
    """The JSON text `body` with exact decimals; InvalidInput naming `body`,
    or the field of a number no field could hold (NaN and Infinity included).

    `empty`: what an absent or empty body stands for (None: it is refused).
    `not_json`: the rule named when the text is not JSON at all.
    """
    if not body and empty is not None:
        return empty
    numbers = _Numbers()
    try:
        parsed = json.loads(body or b"", parse_float=numbers.decimal, parse_int=numbers.integer,
                            parse_constant=numbers.constant, object_pairs_hook=_unique_keys)
    except _Refused as exc:
        refusal = str(exc)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        refusal = not_json
    else:
        if not numbers.unread:
            return parsed
        raise InvalidInput(_unread(parsed))
    raise InvalidInput([Violation("body", refusal)])


def violations_from(error: ValidationError, *, field: str | None = None,
                    required_because: Mapping[str, str] | None = None) -> list[Violation]:
    """Each problem pydantic found, as a violation (the input never quoted).

    `field`: the name to report when the error has no path of its own (a
    single value checked on its own). `required_because`: a clearer rule for
    a missing field, by its dotted path.
    """
    found = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        path = ".".join(str(part) for part in item["loc"]) or field or "body"
        if item["type"] == "missing":
            rule = (required_because or {}).get(path, "is required")
        elif item["type"] == "extra_forbidden":
            rule = "is not a known field"
        else:
            rule = item["msg"]
        found.append(Violation(path, rule))
    return found
