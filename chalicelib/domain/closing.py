"""Closings (sealed periods): the periods, the totals, and the exact signed text.

A closing (format 1) is the RFC 8785 (JCS) JSON text of:

    {"type": "einvoice.closing", "v": 1,
     "tenant_id": "<uuid>",
     "period": {"kind": "day" | "month" | "year", "start": "YYYY-MM-DD", "end": "YYYY-MM-DD"},
     "first_seq": a, "last_seq": b, "count": b - a + 1,      (ledger entries a..b; may be 0)
     "totals": {"entries": {kind: count, ...},               (entries a..b by kind)
                "invoice.issued": T, "credit_note.issued": T},
     "grand_totals": {"invoice.issued": T, "credit_note.issued": T},   (entries 1..b: never reset)
     "last_entry_hash": hex of entry b's hash (32 zero bytes when b = 0),
     "merkle": {"size": b, "root": hex RFC 6962 root of entries 1..b},
     "previous_closing_sha256": hex SHA-256 of the previous closing's text, or null,
     "sealed_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "key_id": "ed25519:<32 hex>"}

    T = {"count": n, "tax_exclusive": D, "tax": D, "tax_inclusive": D,
         "by_rate": {"<category> <rate>": {"taxable": D, "tax": D}, ...}}
    D = decimal string: the exact sum of the entries' own decimal strings
        (data.totals.tax_exclusive_amount, tax_total, tax_inclusive_amount and each
        data.totals.vat_breakdown[] taxable_amount / tax_amount), no rounding.
        Only JSON strings matching MONEY_PATTERN (-?digits[.digits]) are summed;
        by_rate has a line for each breakdown object whose category and rate
        are strings. Anything else an entry holds is counted, not summed.

Periods are calendar days, months and years in Europe/Paris; an entry belongs
to the period of its recorded time ("at"). The signature is Ed25519 over the
UTF-8 bytes of the text; key_id is "ed25519:" + the first 32 hex digits of the
SHA-256 of the raw 32-byte public key, so an auditor can check which key it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

import rfc8785

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.kinds import MONEY_KINDS

PARIS = ZoneInfo("Europe/Paris")
CLOSING_TYPE = "einvoice.closing"
FORMAT_VERSION = 1
MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"  # the amounts summed (SQL and Python alike)
PERIOD_KINDS = ("day", "month", "year")
_SHAPES = {"day": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
           "month": re.compile(r"[0-9]{4}-[0-9]{2}"), "year": re.compile(r"[0-9]{4}")}
YEARS = (2000, 2999)  # sealable years: bounded so every period has an end in any time zone
_EXAMPLES = {"day": "2026-11-22", "month": "2026-11", "year": "2026"}


@dataclass(frozen=True, order=True)
class Period:
    kind: str
    start: date

    @classmethod
    def parse(cls, kind: object, text: object) -> Period:
        """A period from the API's words, or InvalidInput naming the field and rule."""
        if kind not in PERIOD_KINDS:
            raise InvalidInput([Violation("kind", "must be one of day, month, year")])
        assert isinstance(kind, str)
        if not isinstance(text, str) or not _SHAPES[kind].fullmatch(text):
            raise InvalidInput([Violation("period", f"a {kind} is written like "
                                          f"{_EXAMPLES[kind]}")])
        parts = [int(p) for p in text.split("-")] + [1, 1]
        if not YEARS[0] <= parts[0] <= YEARS[1]:
            raise InvalidInput([Violation("period", f"the year must be {YEARS[0]} to "
                                          f"{YEARS[1]}")])
        try:
            start = date(parts[0], parts[1], parts[2])
        except ValueError:
            raise InvalidInput([Violation("period", f"{text} is not a calendar {kind}")]) \
                from None
        return cls(kind, start)

    @property
    def label(self) -> str:
        return {"day": self.start.isoformat(), "month": self.start.strftime("%Y-%m"),
                "year": f"{self.start.year:04d}"}[self.kind]

    @property
    def next_start(self) -> date:
        if self.kind == "day":
            return self.start + timedelta(days=1)
        if self.kind == "month":
            return date(self.start.year + self.start.month // 12, self.start.month % 12 + 1, 1)
        return date(self.start.year + 1, 1, 1)

    @property
    def end(self) -> date:
        """The last day of the period."""
        return self.next_start - timedelta(days=1)

    @property
    def ends_at(self) -> datetime:
        """The instant the period is over: midnight Europe/Paris after its last day."""
        return paris_midnight(self.next_start)

    @property
    def smaller(self) -> str | None:
        """The kind of period that must be sealed before this one."""
        return {"day": None, "month": "day", "year": "month"}[self.kind]

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "start": self.start.isoformat(), "end": self.end.isoformat()}


def paris_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)


def period_of(kind: str, moment: datetime) -> Period:
    """The period of this kind an instant belongs to (Europe/Paris calendar)."""
    day = moment.astimezone(PARIS).date()
    if kind == "day":
        return Period("day", day)
    if kind == "month":
        return Period("month", day.replace(day=1))
    return Period("year", date(day.year, 1, 1))


def signed_by(public_key: bytes | None, signature: bytes, text: str) -> bool:
    """Whether `signature` is the Ed25519 signature of the UTF-8 bytes of `text`
    by `public_key` (None, or not a key: False)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if public_key is None or len(public_key) != 32:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, text.encode("utf-8"))
    except InvalidSignature:
        return False
    return True


def pinned_keys(raw_keys: Iterable[bytes]) -> dict[str, bytes]:
    """Key id -> raw public key, for the keys pinned outside the database."""
    return {key_id_for(raw): raw for raw in raw_keys}


def signature_problem(pinned: Mapping[str, bytes], key_id: str, signature: bytes,
                      text: str) -> str | None:
    """None if `text` is signed by `key_id` and that key is pinned; else why not:
    "key_unpinned" (the key is not one we trust, whatever the signature), or
    "signature" (it does not verify with the pinned key)."""
    key = pinned.get(key_id)
    if key is None:
        return "key_unpinned"
    return None if signed_by(key, signature, text) else "signature"


def key_id_for(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:32]


# -- totals ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RateSum:
    kind: str
    category: str
    rate: str
    taxable: Decimal
    tax: Decimal


@dataclass(frozen=True)
class KindSum:
    kind: str
    count: int
    tax_exclusive: Decimal
    tax: Decimal
    tax_inclusive: Decimal


def empty_money() -> dict[str, Any]:
    return {"count": 0, "tax_exclusive": "0", "tax": "0", "tax_inclusive": "0", "by_rate": {}}


def money_totals(kinds: Iterable[KindSum], rates: Iterable[RateSum]) -> dict[str, Any]:
    """The T objects of the money kinds from per-kind and per-rate sums."""
    out = {kind: empty_money() for kind in MONEY_KINDS}
    for k in kinds:
        if k.kind in out:
            out[k.kind].update(count=k.count, tax_exclusive=str(k.tax_exclusive),
                               tax=str(k.tax), tax_inclusive=str(k.tax_inclusive))
    for r in rates:
        if r.kind in out:
            out[r.kind]["by_rate"][f"{r.category} {r.rate}"] = {"taxable": str(r.taxable),
                                                                "tax": str(r.tax)}
    return out


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def add_money(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """T + T, exactly (the perpetual grand totals are the previous ones plus the period's)."""
    with localcontext(_EXACT):
        return _add_money(a, b)


def _add_money(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    by_rate: dict[str, dict[str, str]] = {}
    for name in sorted(set(a["by_rate"]) | set(b["by_rate"])):
        x = a["by_rate"].get(name, {"taxable": "0", "tax": "0"})
        y = b["by_rate"].get(name, {"taxable": "0", "tax": "0"})
        by_rate[name] = {f: str(Decimal(x[f]) + Decimal(y[f])) for f in ("taxable", "tax")}
    return {"count": a["count"] + b["count"],
            **{f: str(Decimal(a[f]) + Decimal(b[f]))
               for f in ("tax_exclusive", "tax", "tax_inclusive")},
            "by_rate": by_rate}


def add_grand(previous: Mapping[str, Any] | None, period: Mapping[str, Any]) -> dict[str, Any]:
    return {kind: add_money(previous[kind] if previous else empty_money(), period[kind])
            for kind in MONEY_KINDS}


def closing_text(body: Mapping[str, Any]) -> str:
    """The signed text: RFC 8785 canonical JSON."""
    return rfc8785.dumps(dict(body)).decode("utf-8")


def closing_sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
