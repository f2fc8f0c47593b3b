"""The Factur-X libraries behind the documents port.

Imported only by the use cases that produce invoices: factur-x, ReportLab and
lxml cost most of a second to import, which other handlers never pay.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from chalicelib.documents.cii import invoice_xml
from chalicelib.documents.facturx import embed, xsd_problems
from chalicelib.documents.schematron import RuleFailure, invoice_failures
from chalicelib.documents.visual import invoice_pdf, unprintable
from chalicelib.domain.errors import Violation
from chalicelib.domain.invoice import InvoiceDraft, Totals
from chalicelib.ports import InvoiceDocuments

ConformanceCheck = Callable[[bytes], list[RuleFailure]]


class FacturXDocuments(InvoiceDocuments):
    """`check`: the schematron conformance check, in process (the default) or
    in the conformance-check function (chalicelib/adapters/conformance.py)."""

    def __init__(self, check: ConformanceCheck = invoice_failures) -> None:
        self._check = check

    def xml(self, draft: InvoiceDraft, invoice_number: str, totals: Totals) -> bytes:
        return invoice_xml(draft, invoice_number, totals)

    def pdf(self, draft: InvoiceDraft, invoice_number: str, totals: Totals,
            created: datetime) -> bytes:
        return invoice_pdf(draft, invoice_number, totals, created)

    def factur_x(self, pdf: bytes, xml: bytes, draft: InvoiceDraft, invoice_number: str,
                 created: datetime) -> bytes:
        return embed(pdf, xml, draft, invoice_number, created)

    def unprintable(self, draft: InvoiceDraft) -> list[Violation]:
        return [Violation(field, rule) for field, rule in unprintable(draft)]

    def problems(self, xml: bytes) -> list[Violation]:
        """The XSD first (the schematron assumes a well-formed CII), then every
        fatal rule of EN 16931 and of the French CTC (BR-FR, what a Plateforme
        Agréée enforces), in one worker; warnings do not stop an invoice."""
        found = [Violation("document", f"XSD: {problem}") for problem in xsd_problems(xml)]
        if found:
            return found
        return [Violation("document", f"{failure.rule}: {failure.text}")
                for failure in self._check(xml) if failure.fatal]
