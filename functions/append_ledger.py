"""Append ledger entry as a plain function (Scaleway Serverless Functions).

Scaleway's queue trigger delivers one message as an HTTP POST whose body is the
message; an AWS-shaped SQS batch ({"Records": [...]}) is accepted too.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import DomainError
from chalicelib.entrypoints.http import error_response, json_response, request_body
from chalicelib.entrypoints.ledger_queue import handle_ledger_batch, parse_message
from chalicelib.runtime import append_entry


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "Records" in event:
        return dict(handle_ledger_batch(event, append_entry).response)
    try:
        entry = append_entry(parse_message(request_body(event)))
    except DomainError as exc:
        return error_response(exc)
    return json_response(200, entry.as_dict())


handle = handler  # the name Scaleway's Python runtime calls by default
