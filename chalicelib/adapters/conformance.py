"""The conformance check in another function (functions/conformance_check.py):
saxonche lives only in that function's package, so issuing asks it.

Two ways, chosen by EINVOICE_CONFORMANCE_CHECK (chalicelib/runtime.py):
- an https URL: Scaleway's private function, POST of the XML with the
  function's token in X-Auth-Token, no redirect followed, a timeout, the
  answer read up to a bound;
- `aws-lambda:<name or ARN>`: a Lambda invoked directly (RequestResponse).

Whatever goes wrong (refused token, dead endpoint, timeout, an answer that
is not exactly {"failures": [[rule, flag, location, text], ...]}) raises
SchematronUnavailable, a ConformanceCheckUnavailable: nothing is issued and
the caller is answered 503. Never "no failures": an empty list comes only
from a well-formed answer saying so. A body the check calls not XML raises
NotXml, as the check in process does.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from typing import Any, Final
from urllib.parse import urlsplit

from chalicelib.documents.schematron import (
    REMOTE_MAX_XML_BYTES,
    NotXml,
    RuleFailure,
    SchematronUnavailable,
    failures_from_wire,
)

MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024  # far above any real list of failures


def _too_large(xml: bytes) -> None:
    if len(xml) > REMOTE_MAX_XML_BYTES:
        raise NotXml(f"document of {len(xml)} bytes is too large to check")


def _failures(answer: object) -> list[RuleFailure]:
    if not isinstance(answer, dict) or set(answer) != {"failures"}:
        raise SchematronUnavailable("the conformance check answered something else than "
                                    "its failures")
    try:
        return failures_from_wire(answer["failures"])
    except ValueError as error:
        raise SchematronUnavailable(f"the conformance check's answer is malformed: "
                                    f"{error}") from None


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise SchematronUnavailable("the conformance check's answer is not JSON") from None


class HttpConformanceCheck:
    """The check at an https URL (http only on loopback: the settings say so)."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("the conformance check URL has no host")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._token = token
        self._timeout = timeout
        self._tls = ssl.create_default_context() if self._https else None

    def __call__(self, xml: bytes) -> list[RuleFailure]:
        _too_large(xml)
        status, raw = self._post(xml)
        if status == 200:
            return _failures(_json(raw))
        if status == 400:
            answer = _json(raw)
            if isinstance(answer, dict) and answer.get("error") == "NotXml":
                raise NotXml(str(answer.get("detail", "not XML"))[:300])
        raise SchematronUnavailable(f"the conformance check answered HTTP {status}")

    def _post(self, xml: bytes) -> tuple[int, bytes]:
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(self._host, self._port,
                                                     timeout=self._timeout, context=self._tls)
        else:
            connection = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=self._timeout)
        try:
            connection.request("POST", self._path, body=xml, headers={
                "Content-Type": "application/xml", "Accept": "application/json",
                "X-Auth-Token": self._token})
            response = connection.getresponse()
            raw = response.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                raise SchematronUnavailable("the conformance check's answer is too large")
            return response.status, raw
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
            raise SchematronUnavailable(
                f"the conformance check cannot be reached: {type(error).__name__}") from None
        finally:
            connection.close()


class LambdaConformanceCheck:
    """The check as a Lambda function, invoked and awaited (RequestResponse)."""

    def __init__(self, client: Any, function: str) -> None:
        self._client = client
        self._function = function

    def __call__(self, xml: bytes) -> list[RuleFailure]:
        _too_large(xml)
        from botocore.exceptions import BotoCoreError, ClientError

        payload = json.dumps({"xml_base64": base64.b64encode(xml).decode("ascii")})
        try:
            answer = self._client.invoke(FunctionName=self._function,
                                         InvocationType="RequestResponse", Payload=payload)
            raw = answer["Payload"].read(MAX_ANSWER_BYTES + 1)
        except (BotoCoreError, ClientError) as error:
            raise SchematronUnavailable(
                f"the conformance check cannot be invoked: {type(error).__name__}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise SchematronUnavailable("the conformance check's answer is too large")
        status, failed = answer.get("StatusCode"), answer.get("FunctionError")
        if failed or status != 200:
            raise SchematronUnavailable(f"the conformance check failed: {failed or status}")
        result = _json(raw)
        if isinstance(result, dict) and "error" in result:
            if result.get("error") == "NotXml":
                raise NotXml(str(result.get("detail", "not XML"))[:300])
            raise SchematronUnavailable(f"the conformance check refused: {result.get('error')}")
        return _failures(result)
