"""The invoice draft as posted: the pydantic models of its parts.

Structure and the checks of one field (or one small part) only; the rules across
fields live in `invoice_rules`, the totals in `invoice_totals`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.invoice_fields import (
    MAX_ADJUSTMENTS,
    MAX_LINES,
    MAX_NOTES,
    AddressValue,
    Amount,
    BuyerKind,
    CountryCode,
    DocumentNumber,
    EasScheme,
    Iban,
    IsoDate,
    Name,
    Note,
    OperationCategory,
    PenaltyRate,
    PositiveAmount,
    PostCode,
    Quantity,
    Series,
    ShortText,
    Siren,
    Siret,
    Text,
    UnitCode,
    UnitPrice,
    VatCategory,
    VatexCode,
    VatNumber,
    VatRate,
    count_between,
    scheme_problem,
)


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
        problem = scheme_problem(scheme, value) if scheme else None
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

    type_code: Literal[380, 381] = 380  # BT-3, a DocumentType's code
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
    lines: Annotated[tuple[Line, ...], count_between(1, MAX_LINES)]
    allowances: Annotated[tuple[Adjustment, ...], count_between(0, MAX_ADJUSTMENTS)] = ()
    charges: Annotated[tuple[Adjustment, ...], count_between(0, MAX_ADJUSTMENTS)] = ()
    vat_exemptions: Annotated[tuple[VatExemption, ...], count_between(0, len(VatCategory))] = ()
    payment_terms: Text | None = None  # BT-20
    late_payment_penalty_rate: PenaltyRate | None = None  # % a year; B2B (C. com. L441-10)
    recovery_indemnity: Amount | None = None  # 40.00 for B2B (C. com. L441-10, D441-5)
    discount_conditions: Text  # early-payment discount, "néant" allowed (C. com. L441-9)
    notes: Annotated[tuple[Note, ...], count_between(0, MAX_NOTES)] = ()  # BT-22
    preceding_invoice: PrecedingInvoice | None = None  # BG-3; required for a credit note

    @property
    def document_type(self) -> DocumentType:
        return DocumentType(str(self.type_code))
