"""The HTTP edge for health: whether the database and the object store answer.

Public, and says nothing of any tenant.
"""

from __future__ import annotations

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.domain.errors import PayloadTooLarge
from chalicelib.entrypoints.access import bounded_body, public
from chalicelib.usecases.health import check_health

public("health")


def health_route(request: Request) -> Response:
    """Reads no body, and is bounded like every route (access.BODY_LIMITS)."""
    try:
        bounded_body(request)
    except PayloadTooLarge as exc:
        return Response(body=exc.as_dict(), status_code=exc.status)
    status, body = check_health(runtime.health_probes())
    return Response(body=body, status_code=status)
