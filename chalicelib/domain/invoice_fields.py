"""The invoice's vocabulary: code lists, limits and the checked field types.

What one field may hold, on its own (a SIREN's check digit, an amount's
decimals, an allowed VAT rate): the models in `invoice_draft` are built from
these types, so a field's rule is stated once.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    StringConstraints,
)
from pydantic_core import PydanticCustomError
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.eu import vat as eu_vat
from stdnum.fr import siren as fr_siren
from stdnum.fr import siret as fr_siret
from stdnum.fr import tva as fr_tva

from chalicelib.domain.text import is_plain_email, text_problem

FRENCH_VAT_RATES = (Decimal("20"), Decimal("10"), Decimal("5.5"), Decimal("2.1"), Decimal("0"))
# The mention CGI art. 293 E asks of a seller under the VAT franchise (art. 293 B),
# and the CEF VATEX code for it ("France domestic VAT franchise in base").
FRANCHISE_MENTION = "TVA non applicable, art. 293 B du CGI"
FRANCHISE_VATEX = "VATEX-FR-FRANCHISE"
# The fixed recovery indemnity owed by a late-paying business (C. com. D441-5).
RECOVERY_INDEMNITY = Decimal("40.00")

MAX_LINES = 1000
MAX_ADJUSTMENTS = 100
MAX_NOTES = 20

CENT = Decimal("0.01")
_AMOUNT_LIMIT = Decimal(10) ** 12
_QUANTITY_LIMIT = Decimal(10) ** 9
# An amount in the XML has at most 19 characters, sign included, besides the
# point (French CTC BR-FR-DEC-01): 16 digits before 2 decimals.
XML_AMOUNT_LIMIT = Decimal(10) ** 16
ZERO = Decimal("0.00")

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
SIREN_SCHEMES = frozenset({DIRECTORY_SCHEME, SIREN_SCHEME, SIRET_SCHEME})
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
RULE_PREFIX = {
    VatCategory.STANDARD: "S",
    VatCategory.ZERO_RATED: "Z",
    VatCategory.EXEMPT: "E",
    VatCategory.REVERSE_CHARGE: "AE",
    VatCategory.INTRA_COMMUNITY: "IC",
    VatCategory.EXPORT: "G",
    VatCategory.NOT_SUBJECT: "O",
}
CATEGORY_NAME = {
    VatCategory.STANDARD: "standard rate",
    VatCategory.ZERO_RATED: "zero rated",
    VatCategory.EXEMPT: "exempt",
    VatCategory.REVERSE_CHARGE: "reverse charge",
    VatCategory.INTRA_COMMUNITY: "intra-community supply",
    VatCategory.EXPORT: "export outside the EU",
    VatCategory.NOT_SUBJECT: "not subject to VAT",
}
# Categories whose VAT breakdown carries an exemption reason (BR-x-10).
EXEMPT_CATEGORIES = frozenset({VatCategory.EXEMPT, VatCategory.REVERSE_CHARGE,
                                VatCategory.INTRA_COMMUNITY, VatCategory.EXPORT,
                                VatCategory.NOT_SUBJECT})
# The one VATEX code that fits each of these categories (CEF VATEX code list).
CATEGORY_VATEX = {
    VatCategory.REVERSE_CHARGE: "VATEX-EU-AE",
    VatCategory.INTRA_COMMUNITY: "VATEX-EU-IC",
    VatCategory.EXPORT: "VATEX-EU-G",
    VatCategory.NOT_SUBJECT: "VATEX-EU-O",
}
# VAT number prefixes stdnum.eu.vat checks: the member states, Greece as EL, XI.
_EU_VAT_PREFIXES = frozenset(cc.upper() for cc in eu_vat.MEMBER_STATES if cc != "gr") | {"EL"}



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
    return _within(value, 2, _AMOUNT_LIMIT).quantize(CENT)


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
    return value.quantize(CENT)


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


def scheme_problem(scheme: str, value: str) -> str | None:
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


def count_between(minimum: int, maximum: int) -> BeforeValidator:
    """Bounds on a list's length, checked before its items: pydantic's own
    min_length counts only the items that validate, and would report an empty
    list when its one item is wrong."""

    def check(value: object) -> object:
        if isinstance(value, list | tuple) and not minimum <= len(value) <= maximum:
            raise PydanticCustomError("count", "must have {minimum} to {maximum} items",
                                      {"minimum": minimum, "maximum": maximum})
        return value

    return BeforeValidator(check)
