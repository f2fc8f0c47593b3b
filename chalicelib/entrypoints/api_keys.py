"""The HTTP edge for API keys: an owner makes, lists and revokes the keys of
machine callers; a key's secret is shown once, when it is made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.entrypoints.access import OWNERS, Rule, protect
from chalicelib.entrypoints.bodies import ApiKeyBody, parse, path_uuid
from chalicelib.entrypoints.guard import secured
from chalicelib.ports import ApiKey
from chalicelib.usecases.accounts import Principal

API_KEYS_CREATE = protect("api_keys_create", Rule(OWNERS, writes=True))
API_KEYS_LIST = protect("api_keys_list", Rule(OWNERS))
API_KEY_REVOKE = protect("api_key_revoke", Rule(OWNERS, writes=True))


def api_keys_create_route(request: Request) -> Response:
    from chalicelib.usecases.api_keys import create_api_key

    def act(principal: Principal, _token: str) -> Response:
        body = parse(request, ApiKeyBody)
        key, secret = create_api_key(principal, body.name, body.scopes, body.expires_in_days,
                                     runtime.database().unit_of_work, runtime.clock())
        return Response(body={**_api_key_body(key), "secret": secret}, status_code=201)

    return secured(request, API_KEYS_CREATE, act)


def api_keys_list_route(request: Request) -> Response:
    from chalicelib.usecases.api_keys import list_api_keys

    def act(principal: Principal, _token: str) -> Response:
        keys = list_api_keys(principal, runtime.database().unit_of_work)
        return Response(body={"api_keys": [_api_key_body(k) for k in keys]}, status_code=200)

    return secured(request, API_KEYS_LIST, act)


def api_key_revoke_route(request: Request, key_id: str) -> Response:
    from chalicelib.usecases.api_keys import revoke_api_key

    def act(principal: Principal, _token: str) -> Response:
        revoke_api_key(principal, path_uuid(key_id, "key_id"),
                       runtime.database().unit_of_work)
        return Response(body="", status_code=204)

    return secured(request, API_KEY_REVOKE, act)


def _api_key_body(key: ApiKey) -> dict[str, Any]:
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {"id": str(key.key_id), "name": key.name, "scopes": list(key.scopes),
            "created_by": str(key.created_by), "created_at": when(key.created_at),
            "expires_at": when(key.expires_at), "last_used_at": when(key.last_used_at),
            "revoked_at": when(key.revoked_at)}
