"""What a closing states about the entries it covers, recomputed: its place in the
sequence of closings and its totals. Shared by the two verifiers, so they cannot drift.

Standard library only, like merkle.py: the offline verifier (chalicelib/audit/verify.py)
imports it, and so does the online one (chalicelib/usecases/verify_ledger.py). Both
stream the entries through a `Running` tally, keep a `Tally` at each entry where a
closing begins or ends, and ask `Sequence.problem` and `totals_problem` about each
closing, in chain order. A problem is a named reason (the online verifier's `reason`)
and a message (the offline verifier's FAIL line, after the closing's name).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

# The ledger's words (chalicelib/domain/kinds.py, closing.py), spelt again so that this
# file needs no other module of ours (tests/unit/test_verifier_copies.py keeps them equal).
MONEY_KINDS = ("invoice.issued", "credit_note.issued")
PERIOD_KINDS = ("day", "month", "year")
T_FIELDS = {"count", "tax_exclusive", "tax", "tax_inclusive", "by_rate"}
# The amounts summed in closings: JSON strings of plain decimals (closing.py MONEY_PATTERN).
MONEY = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# A total a closing states: a decimal string as Python's Decimal writes one.
NUMERIC = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)  # sums never round

# Reasons (the online verifier's `reason`, docs/ledger.md).
TOTALS_MISMATCH = "closing_totals_mismatch"  # totals of the entries first_seq..last_seq
GRAND_TOTAL_MISMATCH = "grand_total_mismatch"  # grand_totals of the entries 1..last_seq
RANGE = "closing_range"  # first_seq, last_seq, count not a range sealable at its entry
GAP = "closing_gap"  # entries left in no closing of the kind
OVERLAP = "closing_overlap"  # entries in two closings of the kind
OUT_OF_ORDER = "closing_out_of_order"  # a period not after the previous one of its kind
PREVIOUS_MISMATCH = "closing_previous_mismatch"  # previous_closing_sha256


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- money: the T objects of a closing, as exact cumulative sums --------------------------
@dataclass
class Money:
    """Cumulative sums of one kind: count, the three amounts, and per "<category> <rate>"
    [number of breakdown lines, taxable, tax]."""

    count: int = 0
    tax_exclusive: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    tax_inclusive: Decimal = Decimal(0)
    by_rate: dict[str, list[Any]] = field(default_factory=dict)

    def copy(self) -> Money:
        return Money(self.count, self.tax_exclusive, self.tax, self.tax_inclusive,
                     {k: list(v) for k, v in self.by_rate.items()})

    def minus(self, other: Money) -> Money:
        rates = {}
        for name, (n, taxable, tax) in self.by_rate.items():
            m, t0, x0 = other.by_rate.get(name, (0, Decimal(0), Decimal(0)))
            if n - m > 0:
                rates[name] = [n - m, EXACT.subtract(taxable, t0), EXACT.subtract(tax, x0)]
        return Money(self.count - other.count,
                     EXACT.subtract(self.tax_exclusive, other.tax_exclusive),
                     EXACT.subtract(self.tax, other.tax),
                     EXACT.subtract(self.tax_inclusive, other.tax_inclusive), rates)

    @classmethod
    def stated(cls, t: dict[str, Any]) -> Money:
        """The sums a verified T object states (an incremental verification starts
        from its checkpoint's grand totals); a rate present counts one line."""
        return cls(t["count"], Decimal(t["tax_exclusive"]), Decimal(t["tax"]),
                   Decimal(t["tax_inclusive"]),
                   {name: [1, Decimal(r["taxable"]), Decimal(r["tax"])]
                    for name, r in t["by_rate"].items()})


def amount(value: Any) -> Decimal | None:
    """An amount that is summed: a JSON string of a plain decimal (-?digits[.digits]),
    the rule the service's SQL applies; anything else is counted, not summed."""
    if isinstance(value, str) and MONEY.fullmatch(value):
        return Decimal(value)
    return None


_AMOUNT_KEYS = (("tax_exclusive", "tax_exclusive_amount"), ("tax", "tax_total"),
                ("tax_inclusive", "tax_inclusive_amount"))
_is_money = MONEY.fullmatch
_add = EXACT.add


def add_entry_money(money: Money, data: dict[str, Any]) -> None:
    """Count one entry of a money kind and add its amounts (`amount`'s rule, inlined:
    this runs for every invoice of every verification)."""
    money.count += 1
    totals = data.get("totals")
    if not isinstance(totals, dict):
        return
    for name, key in _AMOUNT_KEYS:
        value = totals.get(key)
        if isinstance(value, str) and _is_money(value):
            setattr(money, name, _add(getattr(money, name), Decimal(value)))
    lines = totals.get("vat_breakdown")
    if not isinstance(lines, list):
        return
    by_rate = money.by_rate
    for line in lines:
        if not isinstance(line, dict):
            continue
        category, rate = line.get("category"), line.get("rate")
        if not isinstance(category, str) or not isinstance(rate, str):
            continue
        name = f"{category} {rate}"
        slot = by_rate.get(name)
        if slot is None:
            slot = by_rate[name] = [0, Decimal(0), Decimal(0)]
        slot[0] += 1
        value = line.get("taxable_amount")
        if isinstance(value, str) and _is_money(value):
            slot[1] = _add(slot[1], Decimal(value))
        value = line.get("tax_amount")
        if isinstance(value, str) and _is_money(value):
            slot[2] = _add(slot[2], Decimal(value))


def compare_money(claimed: Any, actual: Money, path: str, span: str) -> str | None:
    """Why the T object `claimed` is not `actual` (compared by value), or None."""
    if not isinstance(claimed, dict) or set(claimed) != T_FIELDS:
        return f"{path} is not a totals object ({', '.join(sorted(T_FIELDS))})"
    if not _int(claimed["count"]) or claimed["count"] != actual.count:
        return f"{path}.count is {claimed['count']!r}, {span} hold {actual.count}"
    for name in ("tax_exclusive", "tax", "tax_inclusive"):
        problem = compare_decimal(claimed[name], getattr(actual, name), f"{path}.{name}", span)
        if problem:
            return problem
    rates = claimed["by_rate"]
    if not isinstance(rates, dict):
        return f"{path}.by_rate is not an object"
    for name in sorted(set(rates) | set(actual.by_rate)):
        if name not in actual.by_rate:
            return f"{path}.by_rate[{name}] is there, but no entry of {span} has that rate"
        if name not in rates:
            return f"{path}.by_rate lacks {name}, which entries of {span} have"
        pair = rates[name]
        if not isinstance(pair, dict) or set(pair) != {"taxable", "tax"}:
            return f"{path}.by_rate[{name}] is not a {{taxable, tax}} object"
        for i, key in ((1, "taxable"), (2, "tax")):
            problem = compare_decimal(pair[key], actual.by_rate[name][i],
                                      f"{path}.by_rate[{name}].{key}", span)
            if problem:
                return problem
    return None


def compare_decimal(claimed: Any, actual: Decimal, path: str, span: str) -> str | None:
    if not isinstance(claimed, str) or not NUMERIC.fullmatch(claimed):
        return f"{path} is not a decimal string"
    if Decimal(claimed.strip()) != actual:
        return f"{path} is {claimed}, {span} sum to {actual}"
    return None


# --- the tally of the entries, and its state where a closing begins or ends -------------
@dataclass(frozen=True)
class Tally:
    """Entries 1..n (or from a checkpoint): how many of each kind, and the money sums."""

    counts: dict[str, int]
    money: dict[str, Money]


class Running:
    """The tally as entries stream by, one at a time."""

    def __init__(self, money: dict[str, Money] | None = None) -> None:
        self.counts: dict[str, int] = {}
        self.money = money if money is not None else {k: Money() for k in MONEY_KINDS}

    def add(self, kind: str, data: dict[str, Any]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind in MONEY_KINDS:
            add_entry_money(self.money[kind], data)

    def snapshot(self) -> Tally:
        return Tally(dict(self.counts), {k: m.copy() for k, m in self.money.items()})


def totals_problem(closing: dict[str, Any], begin: Tally, end: Tally, first: int,
                   last: int, grand_only: bool = False) -> Problem | None:
    """Why the closing's totals (entries first..last: `end` less `begin`) or grand totals
    (entries 1..last: `end`) are not the entries', or None. `grand_only`: the period's
    totals cannot be recomputed (it began before an incremental verification's start)."""
    span = f"entries {first}..{last}"
    totals, grand = closing.get("totals"), closing.get("grand_totals")
    if not isinstance(totals, dict) or set(totals) != {"entries", *MONEY_KINDS}:
        return Problem(TOTALS_MISMATCH, "totals is not {entries, invoice.issued, "
                       "credit_note.issued}")
    if not isinstance(grand, dict) or set(grand) != set(MONEY_KINDS):
        return Problem(GRAND_TOTAL_MISMATCH, "grand_totals is not {invoice.issued, "
                       "credit_note.issued}")
    if not grand_only:
        claimed = totals["entries"]
        if not isinstance(claimed, dict):
            return Problem(TOTALS_MISMATCH, "totals.entries is not an object")
        actual = {k: n - begin.counts.get(k, 0) for k, n in end.counts.items()
                  if n - begin.counts.get(k, 0) > 0}
        for kind in sorted(set(claimed) | set(actual)):
            if claimed.get(kind) != actual.get(kind) or not _int(claimed.get(kind, 0)):
                return Problem(TOTALS_MISMATCH, f"totals.entries[{kind}] is "
                               f"{claimed.get(kind, 0)!r}, {span} hold {actual.get(kind, 0)}")
        for kind in MONEY_KINDS:
            problem = compare_money(totals[kind], end.money[kind].minus(begin.money[kind]),
                                    f"totals[{kind}]", span)
            if problem:
                return Problem(TOTALS_MISMATCH, problem)
    for kind in MONEY_KINDS:
        problem = compare_money(grand[kind], end.money[kind], f"grand_totals[{kind}]",
                                f"entries 1..{last}")
        if problem:
            return Problem(GRAND_TOTAL_MISMATCH, problem)
    return None


# --- periods, and the sequence of closings -----------------------------------------------
def label(kind: str, start: date) -> str:
    return {"day": start.isoformat(), "month": start.strftime("%Y-%m"),
            "year": f"{start.year:04d}"}[kind]


def period_end(kind: str, start: date) -> date:
    if kind == "day":
        return start
    if kind == "month":
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    else:
        following = date(start.year + 1, 1, 1)
    return following - timedelta(days=1)


def period(value: Any) -> tuple[str, date] | None:
    """(kind, start) of a well-formed period object, or None."""
    if not isinstance(value, dict) or set(value) != {"kind", "start", "end"}:
        return None
    kind, start, end = value["kind"], value["start"], value["end"]
    if kind not in PERIOD_KINDS or not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        return None
    if len(start) != 10 or first.isoformat() != start or last.isoformat() != end:
        return None
    if (kind == "month" and first.day != 1) or (kind == "year" and (first.month, first.day)
                                                  != (1, 1)):
        return None
    return (kind, first) if period_end(kind, first) == last else None


@dataclass
class Sequence:
    """What a closing is chained to: the previous closing, and the last of each kind.

    Every entry lies in exactly one closing of each kind, in order: a closing's
    first_seq is the previous one of its kind's last_seq + 1 (1 for the first), its
    period comes after that one's, and previous_closing_sha256 is the SHA-256 of the
    text of the closing just before it, whatever its kind."""

    text: str | None = None
    by_kind: dict[str, tuple[int, date, str]] = field(default_factory=dict)

    def problem(self, closing: dict[str, Any], kind: str, start: date,
                seq: int) -> Problem | None:
        """Why the closing at entry `seq`, of period (kind, start), does not follow."""
        first: Any = closing.get("first_seq")
        last: Any = closing.get("last_seq")
        count: Any = closing.get("count")
        if not (_int(first) and _int(last) and _int(count)):
            return Problem(RANGE, "first_seq, last_seq and count must be integers")
        if not 1 <= first <= last + 1 or last >= seq:
            return Problem(RANGE, f"entries {first}..{last} cannot be sealed at entry {seq}")
        if count != last - first + 1:
            return Problem(RANGE, f"count is {count}, entries {first}..{last} are "
                           f"{last - first + 1}")
        before = self.by_kind.get(kind)
        expected_first = before[0] + 1 if before else 1
        if first != expected_first:
            return Problem(GAP if first > expected_first else OVERLAP,
                           f"first_seq is {first}, but " + (
                               f"the previous {kind} closing ({before[2]}) ends at entry "
                               f"{before[0]}" if before
                               else f"it is the first {kind} closing (expected 1)"))
        if before and start <= before[1]:
            return Problem(OUT_OF_ORDER, f"it does not come after the previous {kind} "
                           f"closing ({before[2]})")
        expected_previous = (hashlib.sha256(self.text.encode("utf-8")).hexdigest()
                             if self.text is not None else None)
        if closing.get("previous_closing_sha256") != expected_previous:
            return Problem(PREVIOUS_MISMATCH,
                           "previous_closing_sha256 is not the SHA-256 of the previous "
                           "closing's text" if expected_previous else
                           "previous_closing_sha256 must be null for the first closing")
        return None

    def sealed(self, text: str, kind: str, start: date, last: int) -> None:
        """The closing `text` follows: the next is chained to it."""
        self.text = text
        self.by_kind[kind] = (last, start, label(kind, start))
