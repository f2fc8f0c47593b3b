"""The conformance check as its own function, asked over HTTP (Scaleway) or by
Lambda invoke: functions/conformance_check.py served by a real HTTP server on
loopback answers what the check in process answers, and every way the remote
check can fail (wrong token, dead server, timeout, garbage, a function error)
raises ConformanceCheckUnavailable, never "no failures"."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from chalicelib.adapters.conformance import HttpConformanceCheck, LambdaConformanceCheck
from chalicelib.adapters.documents import FacturXDocuments
from chalicelib.documents.schematron import (
    REMOTE_MAX_XML_BYTES,
    NotXml,
    SchematronUnavailable,
    invoice_failures,
)
from chalicelib.domain.errors import ConformanceCheckUnavailable
from deploy import serve
from functions import conformance_check

SAMPLE = (Path(__file__).parent / "samples" / "valid_en16931.xml").read_bytes()
NS = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
TOKEN = "conformance-token-for-tests"


def broken() -> bytes:
    """The sample with BT-112 wrong (BR-CO-15) and the buyer reference empty (a warning)."""
    root = etree.fromstring(SAMPLE)
    (total,) = root.xpath("//ram:GrandTotalAmount", namespaces=NS)
    total.text = "1359.25"
    (reference,) = root.xpath("//ram:BuyerReference", namespaces=NS)
    reference.text = ""
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _started(server: HTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def function_url() -> Iterator[str]:
    """functions/conformance_check.handle behind deploy/serve.py, which refuses
    another token as a private Scaleway function's gateway does."""
    server = serve.serve(conformance_check.handle, 0, TOKEN, host="127.0.0.1")
    try:
        yield _started(server)
    finally:
        server.shutdown()
        server.server_close()


def canned(status: int, body: bytes, delay: float = 0.0) -> Iterator[str]:
    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    try:
        yield _started(server)
    finally:
        server.shutdown()
        server.server_close()


def test_over_http_the_function_answers_what_the_check_in_process_answers(
        function_url: str) -> None:
    remote = HttpConformanceCheck(function_url, TOKEN, timeout=30)
    assert remote(SAMPLE) == invoice_failures(SAMPLE) == []
    failures = remote(broken())
    assert failures == invoice_failures(broken())
    assert {(f.rule, f.flag) for f in failures} >= {("BR-CO-15", "fatal"),
                                                     ("PEPPOL-EN16931-R008", "warning")}


def test_the_documents_port_stops_only_on_the_remote_fatal_failures(function_url: str) -> None:
    documents = FacturXDocuments(HttpConformanceCheck(function_url, TOKEN, timeout=30))
    assert documents.problems(SAMPLE) == []
    stopped = [v.rule.split(":")[0] for v in documents.problems(broken())]
    assert stopped == [f.rule for f in invoice_failures(broken()) if f.fatal]
    assert "BR-CO-15" in stopped and "PEPPOL-EN16931-R008" not in stopped  # a warning


def test_a_wrong_token_is_unavailable(function_url: str) -> None:
    with pytest.raises(SchematronUnavailable, match="HTTP 401"):
        HttpConformanceCheck(function_url, "not-the-token", timeout=30)(SAMPLE)


def test_a_dead_server_is_unavailable_and_the_documents_port_says_so() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    documents = FacturXDocuments(HttpConformanceCheck(f"http://127.0.0.1:{port}/", TOKEN, 5))
    with pytest.raises(ConformanceCheckUnavailable, match="cannot be reached"):
        documents.problems(SAMPLE)


@pytest.mark.parametrize(("status", "body"), [
    (200, b"<html>gateway</html>"),
    (200, b'{"failures": "none"}'),
    (200, b'{"failures": [], "extra": 1}'),
    (200, b'{"failures": [["BR-CO-15", "loud", "/", "x"]]}'),
    (200, b"[]"),
    (502, b'{"failures": []}'),
    (503, b'{"error": "Unavailable"}'),
    (413, b'{"error": "TooLarge"}'),
], ids=["not-json", "not-a-list", "extra-key", "unknown-flag", "not-an-object", "bad-gateway",
        "unavailable", "too-large"])
def test_a_garbage_answer_is_unavailable_never_no_failures(status: int, body: bytes) -> None:
    for url in canned(status, body):
        with pytest.raises(SchematronUnavailable):
            HttpConformanceCheck(url, TOKEN, timeout=5)(SAMPLE)


def test_an_answer_over_the_bound_is_unavailable() -> None:
    row = b'["R", "fatal", "/", "x"]'
    huge = b'{"failures": [' + b",".join([row] * 400_000) + b"]}"
    for url in canned(200, huge):
        with pytest.raises(SchematronUnavailable, match="too large"):
            HttpConformanceCheck(url, TOKEN, timeout=10)(SAMPLE)


def test_a_check_slower_than_the_timeout_is_unavailable() -> None:
    for url in canned(200, b'{"failures": []}', delay=3):
        started = time.monotonic()
        with pytest.raises(SchematronUnavailable, match=r"TimeoutError|timeout"):
            HttpConformanceCheck(url, TOKEN, timeout=0.5)(SAMPLE)
        assert time.monotonic() - started < 2.5


def test_not_xml_is_not_xml_as_in_process(function_url: str) -> None:
    remote = HttpConformanceCheck(function_url, TOKEN, timeout=30)
    with pytest.raises(NotXml, match="not well-formed"):
        remote(b"<Invoice><unclosed></Invoice>")
    with pytest.raises(NotXml, match="too large"):
        remote(b" " * (REMOTE_MAX_XML_BYTES + 1))


# ---------------------------------------------------------------- the handlers themselves

def _event(method: str, body: str, encoded: bool = False) -> dict[str, Any]:
    return {"httpMethod": method, "path": "/", "headers": {}, "body": body,
            "isBase64Encoded": encoded}


def test_the_http_handler_answers_by_status() -> None:
    handle = conformance_check.handle
    answer = handle(_event("POST", base64.b64encode(broken()).decode(), encoded=True), {})
    assert answer["statusCode"] == 200
    rules = [row[0] for row in json.loads(answer["body"])["failures"]]
    assert "BR-CO-15" in rules
    assert handle(_event("GET", ""), {})["statusCode"] == 405
    not_xml = handle(_event("POST", "plain text"), {})
    assert not_xml["statusCode"] == 400 and json.loads(not_xml["body"])["error"] == "NotXml"
    assert handle(_event("POST", "!!!", encoded=True), {})["statusCode"] == 400
    too_large = handle(_event("POST", " " * (REMOTE_MAX_XML_BYTES * 2)), {})
    assert too_large["statusCode"] == 413


def test_the_http_handler_answers_503_when_the_check_cannot_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(xml: bytes) -> list[Any]:
        raise SchematronUnavailable("the schematron worker died twice")

    monkeypatch.setattr(conformance_check, "invoice_failures", gone)
    answer = conformance_check.handle(_event("POST", SAMPLE.decode()), {})
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"] == "30"
    assert "died" not in answer["body"]
    assert conformance_check.handle_aws({"xml_base64": base64.b64encode(SAMPLE).decode()},
                                        None)["error"] == "Unavailable"


# ---------------------------------------------------------------- Lambda invoke

class StubLambda:
    """Lambda's invoke in front of the real handle_aws (moto cannot run a
    function without Docker): what the platform would hand back."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self._answer = answer

    def invoke(self, **call: Any) -> dict[str, Any]:
        self.calls.append(call)
        if self._answer is not None:
            return self._answer(call)
        result = conformance_check.handle_aws(json.loads(call["Payload"]), None)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}


def test_by_lambda_invoke_the_function_answers_what_the_check_in_process_answers() -> None:
    client = StubLambda()
    remote = LambdaConformanceCheck(client, "einvoice-conformance-check")
    assert remote(broken()) == invoice_failures(broken())
    assert remote(SAMPLE) == []
    assert client.calls[0]["FunctionName"] == "einvoice-conformance-check"
    assert client.calls[0]["InvocationType"] == "RequestResponse"
    with pytest.raises(NotXml):
        remote(b"<not-closed>")


@pytest.mark.parametrize("answer", [
    {"StatusCode": 200, "FunctionError": "Unhandled",
     "Payload": io.BytesIO(b'{"errorMessage": "boom"}')},
    {"StatusCode": 200, "Payload": io.BytesIO(b'{"error": "Unavailable", "detail": "x"}')},
    {"StatusCode": 200, "Payload": io.BytesIO(b'{"error": "BadRequest", "detail": "x"}')},
    {"StatusCode": 200, "Payload": io.BytesIO(b"null")},
    {"StatusCode": 202, "Payload": io.BytesIO(b'{"failures": []}')},
    {"Payload": io.BytesIO(b'{"failures": []}')},
], ids=["function-error", "unavailable", "bad-request", "null", "not-200", "no-status"])
def test_a_failed_invoke_is_unavailable_never_no_failures(answer: dict[str, Any]) -> None:
    remote = LambdaConformanceCheck(StubLambda(lambda call: answer), "f")
    with pytest.raises(SchematronUnavailable):
        remote(SAMPLE)


def test_a_refused_invoke_is_unavailable() -> None:
    from botocore.exceptions import ClientError, ReadTimeoutError

    def refused(call: dict[str, Any]) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                          "Invoke")

    def slow(call: dict[str, Any]) -> dict[str, Any]:
        raise ReadTimeoutError(endpoint_url="https://lambda")

    for behaviour in (refused, slow):
        with pytest.raises(SchematronUnavailable, match="cannot be invoked"):
            LambdaConformanceCheck(StubLambda(behaviour), "f")(SAMPLE)


def test_handle_aws_refuses_what_is_not_its_payload() -> None:
    handle_aws = conformance_check.handle_aws
    assert handle_aws({}, None)["error"] == "BadRequest"
    assert handle_aws("xml", None)["error"] == "BadRequest"
    assert handle_aws({"xml_base64": "%%%"}, None)["error"] == "BadRequest"
    assert handle_aws({"xml_base64": "A" * (REMOTE_MAX_XML_BYTES * 2)}, None)["error"] \
        == "TooLarge"


# ---------------------------------------------------------------- chosen by settings

def test_the_setting_chooses_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import runtime
    from chalicelib.config import settings

    cases: list[tuple[dict[str, str], Callable[[object], bool]]] = [
        ({}, lambda check: check is invoice_failures),
        ({"EINVOICE_CONFORMANCE_CHECK": "aws-lambda:einvoice-conformance-check",
          "AWS_DEFAULT_REGION": "eu-west-3"},
         lambda check: isinstance(check, LambdaConformanceCheck)),
        ({"EINVOICE_CONFORMANCE_CHECK": "https://check.example.fr/",
          "EINVOICE_CONFORMANCE_CHECK_TOKEN": TOKEN},
         lambda check: isinstance(check, HttpConformanceCheck)),
    ]
    for env, expected in cases:
        monkeypatch.delenv("EINVOICE_CONFORMANCE_CHECK", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()
        try:
            assert expected(runtime.conformance_check()), env
        finally:
            settings.cache_clear()


@pytest.mark.parametrize("value", ["http://check.example.fr/", "aws-lambda:", "lambda:f",
                                   "https://user:pw@check.example.fr/", "file:///etc/passwd"])
def test_the_setting_refuses_what_is_no_checker(value: str) -> None:
    from chalicelib.config import ConfigurationError, Settings
    from chalicelib.secret import Secret

    with pytest.raises(ConfigurationError, match="conformance_check"):
        Settings(conformance_check=value, conformance_check_token=Secret(TOKEN))


def test_a_url_without_its_token_is_refused() -> None:
    from chalicelib.config import ConfigurationError, Settings

    with pytest.raises(ConfigurationError, match="conformance_check_token is required"):
        Settings(conformance_check="https://check.example.fr/")
