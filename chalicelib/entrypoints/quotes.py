"""The HTTP edge for quotes: make, read, convert into an invoice.

Thin, as for invoices: `guard.secured` authenticates and authorizes, the use
case works. The tenant is the caller's, never a field of the request; another
tenant's quote is a 404 like a quote that does not exist.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.entrypoints.access import EVERYONE, ISSUERS, Rule, protect
from chalicelib.entrypoints.bodies import json_body, path_uuid
from chalicelib.entrypoints.guard import secured
from chalicelib.entrypoints.invoices import invoice_body
from chalicelib.ports import StoredQuote
from chalicelib.usecases.accounts import Principal

QUOTES_CREATE = protect("quotes_create", Rule(ISSUERS, writes=True, api_scope="invoices:write"))
QUOTE_CONVERT = protect("quote_convert", Rule(ISSUERS, writes=True, api_scope="invoices:write"))
QUOTE_GET = protect("quote_get", Rule(EVERYONE, api_scope="invoices:read"))


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
    from chalicelib.usecases.quotes import create_quote

    def act(principal: Principal, _token: str) -> Response:
        raw = json_body(request)
        made = create_quote(principal.tenant_id, request.headers.get("idempotency-key"), raw,
                            runtime.quote_ports())
        return Response(body=quote_body(made.quote), status_code=201 if made.created else 200,
                        headers={"Location": f"/quotes/{made.quote.quote_id}"})

    return secured(request, QUOTES_CREATE, act)


def get_quote_route(request: Request, quote_id: str) -> Response:
    from chalicelib.usecases.quotes import get_quote

    def act(principal: Principal, _token: str) -> Response:
        quote = get_quote(principal.tenant_id, _quote_id(quote_id),
                          runtime.database().snapshot)
        return Response(body=quote_body(quote), status_code=200)

    return secured(request, QUOTE_GET, act)


def convert_quote_route(request: Request, quote_id: str) -> Response:
    """The invoice the quote became: 201 when issued now, 200 for a retry."""
    from chalicelib.usecases.quotes import convert_quote

    def act(principal: Principal, _token: str) -> Response:
        wanted = _quote_id(quote_id)
        raw = json_body(request)
        outcome = convert_quote(principal.tenant_id, wanted,
                                request.headers.get("idempotency-key"), raw,
                                runtime.invoice_ports())
        return Response(body=invoice_body(outcome.invoice),
                        status_code=201 if outcome.created else 200,
                        headers={"Location": f"/invoices/{outcome.invoice.invoice_id}"})

    return secured(request, QUOTE_CONVERT, act)
