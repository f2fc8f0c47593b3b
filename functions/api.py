"""The HTTP API as one Scaleway function: every route of app.py, answered by Chalice itself.

Scaleway's front has no route table: it hands the function the request as it
came. This adapter finds the route template the path matches in `app.routes`,
builds the API Gateway event Chalice expects, and calls the Chalice app, so the
middleware (request id, access log, security headers) and each route's guard
run exactly as on AWS. What API Gateway answers itself is answered here: 404
for a path no route has (API Gateway says 403), and the CORS preflight.

What this relies on about Scaleway's Python runtime (the event its local
testing framework builds, scaleway/serverless-functions-python,
`local/event.py`, `local/infra.py`, `framework/v1/hints.py`; Scaleway's
"Functions HTTP headers reference"):

- the event has `httpMethod`, `path` (no query string), `headers` (one string
  per name), `queryStringParameters` (one string per name), `body` (a string)
  and `isBase64Encoded` (present, true, when the body is base64); its
  `requestContext` names no route (`resourcePath` is empty);
- the platform sets `X-Request-Id` on every request, and `X-Forwarded-For`,
  the addresses the request passed through: each proxy appends the address it
  received the request from, so whatever a client sent stands to the left of
  the client's address as Scaleway's front saw it, and internal hops after the
  front add internal routing addresses to the right;
- the answer is `statusCode`, `headers`, `body` and `isBase64Encoded`; a
  header may be a list of values (as scaleway/serverless-examples' handlers
  answer), which carries several `Set-Cookie`.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalice.app import Chalice


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scaleway's HTTP event in, Scaleway's answer out, Chalice in between."""
    from app import app

    method = str(event.get("httpMethod") or "GET").upper()
    path = str(event.get("path") or "/").split("?", 1)[0]
    found = match_route(path)
    if found is None:
        return _not_found()
    template, captured = found
    if method == "OPTIONS" and "OPTIONS" not in app.routes[template]:
        return scaleway_answer({"statusCode": 200, "headers": preflight_headers(app, template),
                                "body": ""})
    return scaleway_answer(app(gateway_event(event, method, path, template, captured), context))


@functools.cache
def _route_templates() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The templates in Chalice's own order: sorted, so a literal segment is
    tried before a {param} at the same place."""
    from app import app

    return tuple((template, tuple(template.split("/"))) for template in sorted(app.routes))


def match_route(path: str) -> tuple[str, dict[str, str]] | None:
    """The route template `path` matches and its parameters, as API Gateway
    matches them (a trailing slash dropped, a parameter never empty)."""
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    parts = path.split("/")
    for template, segments in _route_templates():
        if len(segments) != len(parts):
            continue
        captured: dict[str, str] = {}
        for given, segment in zip(parts, segments, strict=True):
            if segment.startswith("{") and segment.endswith("}") and given:
                captured[segment[1:-1]] = given
            elif given != segment:
                break
        else:
            return template, captured
    return None


def client_address(forwarded_for: str) -> str:
    """The caller's address: the rightmost public address in X-Forwarded-For
    (Scaleway's front appended it; internal hops only add internal addresses
    after it; anything to its left came from the client and is never trusted).
    Without a public one, the rightmost address (a caller on a private network,
    or the local testing framework); "" when there is none."""
    addresses = []
    for entry in forwarded_for.split(","):
        try:
            addresses.append(ipaddress.ip_address(entry.strip()))
        except ValueError:
            continue
    for address in reversed(addresses):
        if address.is_global:
            return str(address)
    return str(addresses[-1]) if addresses else ""


def gateway_event(event: dict[str, Any], method: str, path: str, template: str,
                  captured: dict[str, str]) -> dict[str, Any]:
    """The API Gateway (REST, proxy) event Chalice reads, from Scaleway's."""
    headers = {str(name).lower(): str(value)
               for name, value in (event.get("headers") or {}).items()}
    given_context = event.get("requestContext") or {}
    request_id = headers.get("x-request-id") or str(given_context.get("requestId") or "")
    context: dict[str, Any] = {
        "httpMethod": method, "resourcePath": template, "path": path,
        "identity": {"sourceIp": client_address(headers.get("x-forwarded-for", ""))}}
    if request_id:
        context["requestId"] = request_id
    return {
        "httpMethod": method, "path": path, "resource": template, "headers": headers,
        "multiValueQueryStringParameters": _query(event), "pathParameters": captured,
        "stageVariables": {}, "requestContext": context, "body": event.get("body"),
        "isBase64Encoded": bool(event.get("isBase64Encoded"))}


def _query(event: dict[str, Any]) -> dict[str, list[str]] | None:
    """Chalice's multi-valued query; Scaleway gives one value per name. None
    when empty, as API Gateway gives."""
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, dict) and multi:
        return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                for k, vs in multi.items()}
    single = event.get("queryStringParameters") or {}
    return {str(k): [str(v)] for k, v in single.items()} or None


def scaleway_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Chalice's answer in Scaleway's shape: multi-valued headers as lists."""
    headers: dict[str, Any] = dict(answer.get("headers") or {})
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers[name] = list(values)
    body = answer.get("body")
    return {"statusCode": int(answer["statusCode"]), "headers": headers,
            "body": "" if body is None else body,
            "isBase64Encoded": bool(answer.get("isBase64Encoded"))}


def preflight_headers(app: Chalice, template: str) -> dict[str, str]:
    """What API Gateway answers an OPTIONS preflight from the routes'
    CORSConfig (as Chalice's local gateway does): nothing but the allowed
    methods when CORS is off."""
    views = app.routes[template]
    methods = [method for method, entry in views.items() if entry.cors is not None]
    if not methods:
        return {"Access-Control-Allow-Methods": "OPTIONS"}
    headers: dict[str, str] = views[methods[0]].cors.get_access_control_headers()
    headers["Access-Control-Allow-Methods"] = ",".join([*methods, "OPTIONS"])
    return headers


def _not_found() -> dict[str, Any]:
    """No route has this path: 404 with the security headers; like API Gateway,
    no route runs and no access-log row is written."""
    from chalicelib.entrypoints.guard import SECURITY_HEADERS

    return {"statusCode": 404,
            "headers": {"Content-Type": "application/json", **SECURITY_HEADERS},
            "body": json.dumps({"error": "not found"}), "isBase64Encoded": False}
