"""The HTTP edge for health: whether the database and the object store answer.

Public, and says nothing of any tenant.
"""

from __future__ import annotations

from chalice.app import Response

from chalicelib import runtime
from chalicelib.entrypoints.access import public
from chalicelib.usecases.health import check_health

public("health")


def health_route() -> Response:
    status, body = check_health(runtime.health_probes())
    return Response(body=body, status_code=status)
