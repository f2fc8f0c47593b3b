"""The access log: one row per request, naming the caller's network, never the caller's address.

Every request gets an id (the gateway's, else a new one) carried by every log
line it causes and answered in `X-Request-Id`, the security headers, and its
row: who (once the guard knows), the route template (never a concrete path
with ids), the status and how long it took.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from uuid import uuid4

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.domain.errors import UnsupportedMediaType, Violation
from chalicelib.entrypoints.guard import (
    SECURITY_HEADERS,
    client_ip,
    credential_in_query,
    current_caller,
    note_caller,
)
from chalicelib.entrypoints.invocation import usable_id
from chalicelib.logs import logger
from chalicelib.ports import AccessRecord
from chalicelib.usecases.api_keys import API_KEY_ROLE


def logged(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """The response to `request`, with its id and the security headers, once
    its access-log row is written; a 400 if its query string carries a
    credential (guard.credential_in_query)."""
    request_id, started = begin_request(request)
    refused = credential_in_query(request)
    if refused is None:
        response = in_our_shape(get_response(request))
    else:  # before any route, guard or log line sees it
        logger.warning("credential in a query string refused")
        response = Response(body=refused.as_dict(), status_code=refused.status)
    response.headers.update(SECURITY_HEADERS)
    response.headers["X-Request-Id"] = request_id
    record_access(request, response.status_code, request_id, started)
    return response


def in_our_shape(response: Response) -> Response:
    """Chalice's own refusals ({"Code", "Message"}: a Content-Type no route
    reads, 415) in the one error shape every route answers (domain.errors);
    the Message, which quotes what was sent, is dropped."""
    body = response.body
    if response.status_code == 415 and isinstance(body, dict) and "Code" in body:
        response.body = UnsupportedMediaType([Violation(
            "Content-Type", "must be application/json (or left out)")]).as_dict()
    return response


def begin_request(request: Request) -> tuple[str, float]:
    """The request's id (the gateway's, else a new one) and its start time."""
    request_id = usable_id((request.context or {}).get("requestId")) or str(uuid4())
    note_caller(None)
    logger.set_correlation_id(request_id)
    return request_id, time.monotonic()


def record_access(request: Request, status: int, request_id: str, started: float) -> None:
    """Write the access-log row; a failure to write is logged, never hidden."""
    principal = current_caller()
    kind = "api_key" if principal and principal.role == API_KEY_ROLE else "user"
    entry = AccessRecord(
        tenant_id=principal.tenant_id if principal else None,
        principal=f"{kind}:{principal.user_id}" if principal else None,
        method=request.method if request.method.isalpha() else "OTHER",
        route=str((request.context or {}).get("resourcePath") or "?")[:200],
        status=status, latency_ms=int((time.monotonic() - started) * 1000),
        request_id=request_id, ip_prefix=address_prefix(request))
    try:
        runtime.access_log().record(entry)
    except Exception as exc:  # noqa: BLE001 - logged below by type only
        failure = type(exc).__name__
    else:
        return
    logger.error("access log write failed", extra={"reason": failure, "status": status})


def address_prefix(request: Request) -> str:
    """The caller's network, not the caller: IPv4 /24, IPv6 /48."""
    address = client_ip(request)
    if address == "unknown":
        return address
    network = ipaddress.ip_network(address, strict=False)
    prefix = 24 if network.version == 4 else 48
    return str(network.supernet(new_prefix=prefix))
