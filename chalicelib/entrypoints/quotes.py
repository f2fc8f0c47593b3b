"""The HTTP edge for quotes: make, read, convert into an invoice.

Thin, as for invoices: `web.secured` authenticates and authorizes, the use
case works. The tenant is the caller's, never a field of the request; another
tenant's quote is a 404 like a quote that does not exist.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.entrypoints.invoices import exact_body, invoice_body
from chalicelib.entrypoints.web import path_uuid, secured
from chalicelib.ports import StoredQuote
from chalicelib.usecases.accounts import Principal


def _quote_id(raw: str) -> UUID:
    return path_uuid(raw, "quote_id")


def quote_body(quote: StoredQuote) -> dict[str, Any]:
    converted = quote.converted_invoice_id
    return {
        "id": str(quote.quote_id), "reference": quote.reference,
        "created_at": quote.created_at.isoformat() if quote.created_at else None,
        "valid_until": quote.valid_until.isoformat(), "totals": json.loads(quote.totals),
        "invoice": json.loads(quote.document),
        "converted_invoice_id": str(converted) if converted else None,
        "links": {"convert": f"/quotes/{quote.quote_id}/invoice",
                  **({"invoice": f"/invoices/{converted}"} if converted else {})},
    }


def create_quote_route(request: Request) -> Response:
    """201 for a new quote, 200 for the answer to a retry; the same body."""
    from chalicelib.usecases.quotes import QuotePorts, create_quote

    def act(principal: Principal, _token: str) -> Response:
        raw = exact_body(request)
        ports = QuotePorts(runtime.database().unit_of_work, runtime.invoice_documents(),
                           runtime.clock())
        made = create_quote(principal.tenant_id, request.headers.get("idempotency-key"), raw,
                            ports)
        return Response(body=quote_body(made.quote), status_code=201 if made.created else 200,
                        headers={"Location": f"/quotes/{made.quote.quote_id}"})

    return secured(request, "quotes_create", act)


def get_quote_route(request: Request, quote_id: str) -> Response:
    from chalicelib.usecases.quotes import get_quote

    def act(principal: Principal, _token: str) -> Response:
        quote = get_quote(principal.tenant_id, _quote_id(quote_id),
                          runtime.database().snapshot)
        return Response(body=quote_body(quote), status_code=200)

    return secured(request, "quote_get", act)


def convert_quote_route(request: Request, quote_id: str) -> Response:
    """The invoice the quote became: 201 when issued now, 200 for a retry."""
    from chalicelib.usecases.quotes import convert_quote

    def act(principal: Principal, _token: str) -> Response:
        wanted = _quote_id(quote_id)
        raw = exact_body(request)
        outcome = convert_quote(principal.tenant_id, wanted,
                                request.headers.get("idempotency-key"), raw,
                                runtime.invoice_ports())
        return Response(body=invoice_body(outcome.invoice),
                        status_code=201 if outcome.created else 200,
                        headers={"Location": f"/invoices/{outcome.invoice.invoice_id}"})

    return secured(request, "quote_convert", act)
