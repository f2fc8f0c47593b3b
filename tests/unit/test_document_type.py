"""One document type enum for the draft's JSON number, the invoice row's text
and the XML's TypeCode."""

from __future__ import annotations

from typing import get_args

import pytest

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.invoice import InvoiceDraft


def test_the_codes_are_untdid_1001() -> None:
    assert str(DocumentType.INVOICE) == "380" and DocumentType.INVOICE.code == 380
    assert str(DocumentType.CREDIT_NOTE) == "381" and DocumentType.CREDIT_NOTE.code == 381


def test_the_draft_accepts_exactly_the_enum_codes() -> None:
    allowed = get_args(InvoiceDraft.model_fields["type_code"].annotation)
    assert sorted(allowed) == sorted(t.code for t in DocumentType)
    assert InvoiceDraft.model_fields["type_code"].default == DocumentType.INVOICE.code


@pytest.mark.parametrize(("raw", "named"), [
    (381, True), ("381", True), (380, False), ("380", False), (None, False), ("CREDIT", False),
])
def test_a_raw_type_code_names_a_credit_note_as_number_or_text(raw: object,
                                                                named: bool) -> None:
    assert DocumentType.CREDIT_NOTE.named_by(raw) is named


def test_a_draft_knows_its_document_type() -> None:
    # model_construct: only the type code matters here (no whole draft to build).
    assert InvoiceDraft.model_construct().document_type is DocumentType.INVOICE
    assert InvoiceDraft.model_construct(type_code=381).document_type is DocumentType.CREDIT_NOTE
