"""The EN 16931 totals and VAT breakdown of a draft, consistent by construction.

One way to compute them (see `chalicelib.domain.invoice` on rounding), so the
CII XML built from them meets BR-CO-10..17.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from chalicelib.domain.invoice_draft import InvoiceDraft
from chalicelib.domain.invoice_fields import CENT, FRANCHISE_VATEX, ZERO, VatCategory


@dataclass(frozen=True)
class VatGroup:
    """One VAT breakdown (BG-23), ready for a CII ApplicableTradeTax."""

    category: VatCategory  # BT-118
    rate: Decimal  # BT-119; the CII builder omits it for O (BR-O-05)
    taxable_amount: Decimal  # BT-116
    tax_amount: Decimal  # BT-117
    exemption_reason: str | None = None  # BT-120
    exemption_reason_code: str | None = None  # BT-121


@dataclass(frozen=True)
class Totals:
    """The document totals (BG-22) and VAT breakdown, consistent by construction:
    building one that breaks BR-CO-10, 13..17 raises ValueError."""

    line_net_amounts: tuple[Decimal, ...]  # BT-131, in line order
    line_total: Decimal  # BT-106
    allowance_total: Decimal  # BT-107
    charge_total: Decimal  # BT-108
    tax_exclusive_amount: Decimal  # BT-109
    tax_total: Decimal  # BT-110
    tax_inclusive_amount: Decimal  # BT-112
    paid_amount: Decimal  # BT-113: prepayments are not supported yet, always 0
    rounding_amount: Decimal  # BT-114: always 0
    amount_due: Decimal  # BT-115
    vat_breakdown: tuple[VatGroup, ...]

    def __post_init__(self) -> None:
        problem = _totals_problem(self)
        if problem:
            raise ValueError(f"inconsistent totals: {problem}")


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _totals_problem(t: Totals) -> str | None:
    amounts = [*t.line_net_amounts, t.line_total, t.allowance_total, t.charge_total,
               t.tax_exclusive_amount, t.tax_total, t.tax_inclusive_amount, t.paid_amount,
               t.rounding_amount, t.amount_due]
    for group in t.vat_breakdown:
        amounts += [group.taxable_amount, group.tax_amount]
    if any(a.as_tuple().exponent != -2 for a in amounts):
        return "every amount has exactly 2 decimals (BR-DEC)"
    with localcontext(prec=60):
        if t.line_total != sum(t.line_net_amounts, ZERO):
            return "BR-CO-10"
        if t.tax_exclusive_amount != t.line_total - t.allowance_total + t.charge_total:
            return "BR-CO-13"
        if t.tax_total != sum((g.tax_amount for g in t.vat_breakdown), ZERO):
            return "BR-CO-14"
        if t.tax_inclusive_amount != t.tax_exclusive_amount + t.tax_total:
            return "BR-CO-15"
        if t.amount_due != t.tax_inclusive_amount - t.paid_amount + t.rounding_amount:
            return "BR-CO-16"
        for g in t.vat_breakdown:
            if g.tax_amount != _round(g.taxable_amount * g.rate / 100):
                return "BR-CO-17"
        if sum((g.taxable_amount for g in t.vat_breakdown), ZERO) != t.tax_exclusive_amount:
            return "the VAT groups' taxable amounts add up to BT-109 (BR-x-08)"
    return None


def compute_totals(draft: InvoiceDraft) -> Totals:
    """The EN 16931 totals and VAT breakdown of a valid draft."""
    exemptions = {e.category: e for e in draft.vat_exemptions}
    with localcontext(prec=60):  # every product and sum below is exact
        line_nets = tuple(_round(line.quantity * line.unit_price) for line in draft.lines)
        bases: dict[tuple[VatCategory, Decimal], Decimal] = {}
        signed = [*((line.vat_category, line.vat_rate, net)
                    for line, net in zip(draft.lines, line_nets, strict=True)),
                  *((a.vat_category, a.vat_rate, -a.amount) for a in draft.allowances),
                  *((c.vat_category, c.vat_rate, c.amount) for c in draft.charges)]
        for category, rate, amount in signed:
            bases[(category, rate)] = bases.get((category, rate), ZERO) + amount
        order = list(VatCategory)
        groups = []
        for (category, rate), base in sorted(bases.items(),
                                             key=lambda kv: (order.index(kv[0][0]), -kv[0][1])):
            exemption = exemptions.get(category)
            code = exemption.code if exemption else None
            if category is VatCategory.EXEMPT and draft.seller.vat_franchise:
                code = code or FRANCHISE_VATEX
            groups.append(VatGroup(
                category=category, rate=rate, taxable_amount=base,
                tax_amount=_round(base * rate / 100),
                exemption_reason=exemption.reason if exemption else None,
                exemption_reason_code=code))
        line_total = sum(line_nets, ZERO)
        allowance_total = sum((a.amount for a in draft.allowances), ZERO)
        charge_total = sum((c.amount for c in draft.charges), ZERO)
        tax_exclusive = line_total - allowance_total + charge_total
        tax_total = sum((g.tax_amount for g in groups), ZERO)
        tax_inclusive = tax_exclusive + tax_total
        return Totals(
            line_net_amounts=line_nets, line_total=line_total,
            allowance_total=allowance_total, charge_total=charge_total,
            tax_exclusive_amount=tax_exclusive, tax_total=tax_total,
            tax_inclusive_amount=tax_inclusive, paid_amount=ZERO, rounding_amount=ZERO,
            amount_due=tax_inclusive, vat_breakdown=tuple(groups))

