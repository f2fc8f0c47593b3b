"""HTTP edge helpers shared by Chalice routes and the plain function handlers."""

from __future__ import annotations

import base64
import json
from typing import Any

from chalicelib.domain.errors import DomainError


def json_response(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body)}


def error_response(exc: DomainError) -> dict[str, Any]:
    """A 4xx naming each field and the rule it broke."""
    return json_response(exc.status, exc.as_dict())


def request_body(event: dict[str, Any]) -> str:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body).decode("utf-8")
    return str(body)
