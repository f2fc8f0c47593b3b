"""The HTTP edge for sealed periods and proofs: thin, the tenant is the caller's."""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.domain.errors import InvalidInput, NotFound, Violation
from chalicelib.entrypoints.access import EVERYONE, SEALERS, Rule, protect
from chalicelib.entrypoints.bodies import json_body, path_uuid
from chalicelib.entrypoints.guard import secured
from chalicelib.usecases.accounts import Principal

CLOSINGS_SEAL = protect("closings_seal", Rule(SEALERS, writes=True, api_scope="closings:write"))
CLOSINGS_LIST = protect("closings_list", Rule(EVERYONE, api_scope="ledger:read"))
CLOSING_GET = protect("closing_get", Rule(EVERYONE, api_scope="ledger:read"))
INVOICE_PROOF = protect("invoice_proof", Rule(EVERYONE, api_scope="ledger:read"))


def _closing_request(request: Request) -> dict[str, Any]:
    body = json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput([Violation("body", "must be a JSON object")])
    unknown = sorted(set(body) - {"kind", "period"})
    if unknown:
        raise InvalidInput([Violation(name, "is not a field of a closing request")
                            for name in unknown])
    return body


def seal_route(request: Request) -> Response:
    """POST /closings {"kind": "day", "period": "2026-11-22"}: 201 sealed now,
    200 sealed before (the same closing), 409 out of order or not over yet."""
    from chalicelib.domain.closing import Period
    from chalicelib.usecases.proofs import closing_view
    from chalicelib.usecases.seal_period import seal_period

    def act(principal: Principal, _token: str) -> Response:
        body = _closing_request(request)
        period = Period.parse(body.get("kind"), body.get("period"))
        sealed = seal_period(principal.tenant_id, period, runtime.closing_ports())
        if sealed.created:
            from chalicelib.usecases.witness import witness_after_sealing

            witness_after_sealing(principal.tenant_id, sealed.closing, runtime.witness_ports())
            # Committed: anchoring can only add, never undo (best-effort, never raises).
            runtime.anchor_after_sealing(principal.tenant_id, sealed.closing.closing_id)
        return Response(body=closing_view(sealed.closing, runtime.pinned_keys()),
                        status_code=201 if sealed.created else 200,
                        headers={"Location": f"/closings/{sealed.closing.closing_id}"})

    return secured(request, CLOSINGS_SEAL, act)


def list_closings_route(request: Request) -> Response:
    from chalicelib.usecases.proofs import closing_view

    def act(principal: Principal, _token: str) -> Response:
        with runtime.database().snapshot(principal.tenant_id) as uow:
            found = uow.closings.recent(100)
        keys = runtime.pinned_keys()
        return Response(body={"closings": [closing_view(c, keys) for c in found]},
                        status_code=200)

    return secured(request, CLOSINGS_LIST, act)


def get_closing_route(request: Request, closing_id: str) -> Response:
    from chalicelib.usecases.proofs import closing_view

    def act(principal: Principal, _token: str) -> Response:
        wanted = path_uuid(closing_id, "closing_id")
        with runtime.database().snapshot(principal.tenant_id) as uow:
            found = uow.closings.by_id(wanted)
        if found is None:
            raise NotFound([Violation("closing_id", "no such closing")])
        return Response(body=closing_view(found, runtime.pinned_keys()), status_code=200)

    return secured(request, CLOSING_GET, act)


def invoice_proof_route(request: Request, invoice_id: str) -> Response:
    from chalicelib.usecases.proofs import invoice_proof

    def act(principal: Principal, _token: str) -> Response:
        wanted = path_uuid(invoice_id, "invoice_id")
        return Response(body=invoice_proof(principal.tenant_id, wanted,
                                           runtime.database().snapshot,
                                           runtime.pinned_keys(),
                                           anchors=runtime.closing_anchors), status_code=200)

    return secured(request, INVOICE_PROOF, act)
