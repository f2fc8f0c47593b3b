"""The HTTP edge for the caller's ledger: verify the chain, read its entries.

Both read the caller's tenant only, in a read-only snapshot; an API key needs
`ledger:read`.
"""

from __future__ import annotations

import itertools

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.entrypoints.access import EVERYONE, Rule, protect
from chalicelib.entrypoints.bodies import path_uuid, query_int
from chalicelib.entrypoints.guard import secured
from chalicelib.usecases.accounts import Principal

LEDGER_VERIFY = protect("ledger_verify", Rule(EVERYONE, api_scope="ledger:read"))
LEDGER_ENTRIES = protect("ledger_entries", Rule(EVERYONE, api_scope="ledger:read"))


def ledger_verify_route(request: Request) -> Response:
    from chalicelib.usecases.verify_ledger import ledger_verdict, verify_ledger
    from chalicelib.usecases.witness import check_witness

    def act(principal: Principal, _token: str) -> Response:
        since = dict(request.query_params or {}).get("since_closing")
        since_id = path_uuid(since, "since_closing") if since is not None else None
        snapshot = runtime.database().snapshot
        pinned = runtime.pinned_keys()
        result = verify_ledger(principal.tenant_id, snapshot, since_id, pinned)
        try:
            witness = check_witness(principal.tenant_id, snapshot, runtime.invoice_archive(),
                                    pinned)
        except Exception as exc:  # noqa: BLE001 - the chain's own result still stands
            witness = {"ok": False, "witnessed": None, "reason": "witness_unavailable",
                       "detail": f"the archive could not be read ({type(exc).__name__})"}
        return Response(body=ledger_verdict(result, witness, since_id), status_code=200)

    return secured(request, LEDGER_VERIFY, act)


def ledger_entries_route(request: Request) -> Response:
    """Entries after `after` (a seq), at most `limit` (1..1000), in order."""
    def act(principal: Principal, _token: str) -> Response:
        after = query_int(request, "after", 0, 0, 2**62)
        limit = query_int(request, "limit", 100, 1, 1000)
        with runtime.database().snapshot(principal.tenant_id) as uow:
            entries = [{"seq": e.seq, "kind": e.kind, "payload": e.payload,
                        "prev_hash": e.prev_hash.hex(), "hash": e.hash.hex()}
                       for e in itertools.islice(uow.ledger.entries(after), limit)]
        return Response(body={"entries": entries}, status_code=200)

    return secured(request, LEDGER_ENTRIES, act)
