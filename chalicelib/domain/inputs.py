"""Reading what a caller sent: one strict JSON reader, one way to name what is wrong.

Every route and the invoice queue read JSON here (the ledger queue keeps its
own reader, which refuses floats by their path in the payload), so every edge
refuses the same things: text that is not JSON, a repeated key (two parsers
could disagree on which value counts), NaN or Infinity, nesting too deep, and
numbers no field could hold (a short text such as 1e100000000 would otherwise
cost a validator minutes to turn into an integer). Numbers are read as exact
`Decimal`s (money is never a binary float); integers stay `int`.

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


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"an object repeats the key {key[:40]!r}")
        result[key] = value
    return result


def _refuse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a number")


# Far beyond any field (amounts stay below 10^16, counts below 10^9), yet cheap
# to check: longer numbers or larger exponents are refused before any use.
MAX_NUMBER_CHARACTERS = 100
MAX_EXPONENT = 100


def _exact_decimal(text: str) -> Decimal:
    value = Decimal(text) if len(text) <= MAX_NUMBER_CHARACTERS else None
    if value is None or abs(value.adjusted()) > MAX_EXPONENT:
        raise _Refused(f"a number is beyond 10^{MAX_EXPONENT} or {MAX_NUMBER_CHARACTERS} "
                       "characters")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARACTERS:
        raise _Refused(f"a number is beyond 10^{MAX_EXPONENT} or {MAX_NUMBER_CHARACTERS} "
                       "characters")
    return int(text)


def read_json(body: str | bytes | None, *, empty: Any = None,
              not_json: str = "must be a JSON object") -> Any:
    """The JSON text `body` with exact decimals; InvalidInput naming `body`.

    `empty`: what an absent or empty body stands for (None: it is refused).
    `not_json`: the rule named when the text is not JSON at all.
    """
    if not body and empty is not None:
        return empty
    try:
        return json.loads(body or b"", parse_float=_exact_decimal, parse_int=_bounded_int,
                          parse_constant=_refuse_constant,
                          object_pairs_hook=_unique_keys)
    except _Refused as exc:
        refusal = str(exc)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        refusal = not_json
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
