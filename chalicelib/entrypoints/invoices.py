"""The HTTP edge for invoices: issue, credit, read, download.

Thin: authentication and authorization are the guard's (`guard.secured`), the
work is the use case's. The tenant is the caller's, never a field of the request.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.entrypoints.access import EVERYONE, ISSUERS, Rule, protect
from chalicelib.entrypoints.bodies import json_body, path_uuid
from chalicelib.entrypoints.guard import secured
from chalicelib.usecases.accounts import Principal

INVOICES_ISSUE = protect("invoices_issue", Rule(ISSUERS, writes=True, api_scope="invoices:write"))
CREDIT_NOTES_ISSUE = protect("credit_notes_issue",
                             Rule(ISSUERS, writes=True, api_scope="invoices:write"))
INVOICE_BATCHES = protect("invoice_batches",
                          Rule(ISSUERS, writes=True, api_scope="invoices:write"))
INVOICES_LIST = protect("invoices_list", Rule(EVERYONE, api_scope="invoices:read"))
INVOICE_GET = protect("invoice_get", Rule(EVERYONE, api_scope="invoices:read"))
INVOICE_LIFECYCLE = protect("invoice_lifecycle", Rule(EVERYONE, api_scope="invoices:read"))
# The archived documents, one route each (their view names: invoice_pdf, invoice_xml).
INVOICE_DOCUMENTS = {kind: protect(f"invoice_{kind}", Rule(EVERYONE, api_scope="invoices:read"))
                     for kind in ("pdf", "xml")}

_CONTENT_TYPES = {"pdf": "application/pdf", "xml": "application/xml"}


def invoice_body(invoice: Any) -> dict[str, Any]:
    import json

    receipt = invoice.archive.as_dict() if invoice.archive else None
    return {
        "id": str(invoice.invoice_id), "invoice_number": invoice.invoice_number,
        "series": invoice.series, "number": invoice.number, "type_code": invoice.type_code,
        "credited_invoice_id": (str(invoice.credited_invoice_id) if invoice.credited_invoice_id
                                else None),
        "issue_date": invoice.issue_date.isoformat(), "totals": json.loads(invoice.totals),
        "pdf_sha256": invoice.pdf_sha256.hex(), "xml_sha256": invoice.xml_sha256.hex(),
        "ledger_seq": invoice.ledger_seq,
        "archive": receipt if receipt else {"status": "pending"},
        "links": {"pdf": f"/invoices/{invoice.invoice_id}/pdf",
                  "xml": f"/invoices/{invoice.invoice_id}/xml"},
    }


def _issued(outcome: Any) -> Response:
    """201 for a new invoice, 200 for the answer to a retry; the same body."""
    return Response(body=invoice_body(outcome.invoice),
                    status_code=201 if outcome.created else 200,
                    headers={"Location": f"/invoices/{outcome.invoice.invoice_id}"})


def issue_invoice_route(request: Request) -> Response:
    from chalicelib.usecases.issue_invoice import issue_invoice

    def act(principal: Principal, _token: str) -> Response:
        raw = json_body(request)
        return _issued(issue_invoice(principal.tenant_id, request.headers.get("idempotency-key"),
                                     raw, runtime.invoice_ports()))

    return secured(request, INVOICES_ISSUE, act)


def issue_credit_note_route(request: Request, invoice_id: str) -> Response:
    from chalicelib.usecases.issue_invoice import issue_credit_note

    def act(principal: Principal, _token: str) -> Response:
        credited_invoice_id = path_uuid(invoice_id, "invoice_id")
        raw = json_body(request)
        return _issued(issue_credit_note(principal.tenant_id, credited_invoice_id,
                                         request.headers.get("idempotency-key"), raw,
                                         runtime.invoice_ports()))

    return secured(request, CREDIT_NOTES_ISSUE, act)


def get_invoice_route(request: Request, invoice_id: str) -> Response:
    from chalicelib.domain.errors import NotFound

    def act(principal: Principal, _token: str) -> Response:
        wanted = path_uuid(invoice_id, "invoice_id")
        with runtime.database().snapshot(principal.tenant_id) as uow:
            invoice = uow.invoices.get(wanted)
        if invoice is None:
            raise NotFound([Violation("invoice_id", "no such invoice")])
        return Response(body=invoice_body(invoice), status_code=200)

    return secured(request, INVOICE_GET, act)


def invoice_lifecycle_route(request: Request, invoice_id: str) -> Response:
    """The statuses the PA reported, the current one derived from them."""
    from chalicelib.usecases.pa_lifecycle import invoice_lifecycle

    def act(principal: Principal, _token: str) -> Response:
        wanted = path_uuid(invoice_id, "invoice_id")
        return Response(body=invoice_lifecycle(principal.tenant_id, wanted,
                                               runtime.pa_lifecycle_units()), status_code=200)

    return secured(request, INVOICE_LIFECYCLE, act)


def invoice_document_route(request: Request, invoice_id: str, kind: str) -> Response:
    """The archived bytes, checked against the ledger's SHA-256 before they leave."""
    from chalicelib.usecases.archive_invoice import archived_document

    def act(principal: Principal, _token: str) -> Response:
        wanted = path_uuid(invoice_id, "invoice_id")
        invoice, content = archived_document(principal.tenant_id, wanted, kind,
                                             runtime.invoice_ports())
        body: bytes | str = content if kind == "pdf" else content.decode("utf-8")
        return Response(body=body, status_code=200, headers={
            "Content-Type": _CONTENT_TYPES[kind],
            "Content-Disposition": f'attachment; filename="{invoice.invoice_number}.{kind}"'})

    return secured(request, INVOICE_DOCUMENTS[kind], act)


def list_invoices_route(request: Request) -> Response:
    """The newest invoices, or the one issued with `?idempotency_key=` (how a
    bulk caller learns what became of each queued draft)."""
    def act(principal: Principal, _token: str) -> Response:
        params = dict(request.query_params or {})
        key = params.get("idempotency_key")
        if key is not None and not 1 <= len(key) <= 200:
            raise InvalidInput([Violation("idempotency_key", "must be 1 to 200 characters")])
        with runtime.database().snapshot(principal.tenant_id) as uow:
            if key is not None:
                found = uow.invoices.by_idempotency_key(key)
                invoices = [found] if found else []
            else:
                invoices = uow.invoices.latest(50)
        return Response(body={"invoices": [invoice_body(i) for i in invoices]}, status_code=200)

    return secured(request, INVOICES_LIST, act)


def queue_invoices_route(request: Request) -> Response:
    """202: every draft passed validation and waits in the queue; nothing was
    queued if any failed (422 listing every item's violations)."""
    from chalicelib.entrypoints.invocation import current_correlation_id
    from chalicelib.usecases.invoice_batches import queue_invoices

    def act(principal: Principal, _token: str) -> Response:
        keys = queue_invoices(principal.tenant_id, json_body(request), runtime.invoice_queue(),
                              runtime.clock(), current_correlation_id())
        return Response(body={"queued": len(keys), "idempotency_keys": keys,
                              "results": "GET /invoices?idempotency_key=KEY"}, status_code=202)

    return secured(request, INVOICE_BATCHES, act)
