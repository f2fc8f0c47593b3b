"""Health as a plain function (Scaleway Serverless Functions, HTTP trigger)."""

from __future__ import annotations

from typing import Any

from chalicelib.entrypoints.http import json_response
from chalicelib.runtime import health_probes
from chalicelib.usecases.health import check_health


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return json_response(*check_health(health_probes()))


handle = handler
