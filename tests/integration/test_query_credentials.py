"""A credential never travels in a URL: on every route, a query string that
carries one is a 400 naming the parameter, before anything reads or logs it;
and the development server's request lines never print a query string."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from chalicelib.entrypoints.guard import CREDENTIAL_IN_QUERY
from devstack.stack import free_port
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, get, issue, owner_with_key


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, ids filled in."""
    import app as app_module

    some_id = str(uuid.uuid4())
    return [(method, path.replace("{invoice_id}", some_id).replace("{quote_id}", some_id)
             .replace("{key_id}", some_id))
            for path, methods in app_module.app.routes.items() for method in methods]


def test_a_credential_in_a_query_string_is_refused_on_every_route(
        client: Any, frozen: FrozenClock, service_logs: pytest.LogCaptureFixture) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    secret = key["secret"]
    routes = every_route()
    assert len(routes) > 20 and ("GET", "/health") in routes
    for method, path in routes:
        for name in ("api_key", "token", "access_token", "key", "X-CSRF-Token",
                     "__Host-session"):
            answer = client.request(method, f"{path}?{name}={secret}", headers={
                "Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
                body=b"{}")
            assert answer.status_code == 400, (method, path, name, answer.body)
            assert answer.json_body == {"error": "BadRequest", "violations": [
                {"field": name, "rule": CREDENTIAL_IN_QUERY}], "violation_count": 1}
            assert secret not in answer.body.decode()
        # A key under any other name, or as a name, is refused without being quoted.
        for query in (f"idempotency_key={secret}", f"limit=5&x={secret}", secret):
            answer = client.request(method, f"{path}?{query}")
            assert answer.status_code == 400, (method, path, answer.body)
            assert answer.json_body["violations"] == [
                {"field": "query string", "rule": CREDENTIAL_IN_QUERY}]
            assert secret not in answer.body.decode()

    refused = issue(client, secret, recent(), path=f"/invoices?api_key={secret}")
    assert refused.status_code == 400
    assert get(client, secret, "/invoices").json_body["invoices"] == []  # nothing was issued
    lines = [record.getMessage() + str(record.__dict__) for record in service_logs.records]
    assert any("credential in a query string refused" in line for line in lines)
    assert not [line for line in lines if secret in line]
    # An ordinary query string still works.
    assert get(client, secret, "/invoices?idempotency_key=none").status_code == 200


def test_the_development_server_never_prints_a_query_string(
        client: Any, frozen: FrozenClock, capfd: pytest.CaptureFixture[str]) -> None:
    from chalice.config import Config

    import app as app_module
    from devstack.api import local_api_server

    _, key = owner_with_key(client, frozen, WRITE)
    secret = key["secret"]
    port = free_port()
    server = local_api_server(app_module.app, Config.create(chalice_stage="dev",
                                                            app_name="einvoice"),
                              "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        statuses = []
        for path in (f"/invoices?api_key={secret}", f"/health?x={secret}",
                     f"/invoices?limit=1&key={secret}"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Authorization": f"Bearer {secret}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as refused:
                statuses.append(refused.code)
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)
    assert statuses == [400, 400, 400]
    printed = capfd.readouterr()
    log = printed.out + printed.err
    assert log.count('"GET /invoices?[redacted] HTTP/1.1" 400') == 2, log
    assert '"GET /health?[redacted] HTTP/1.1" 400' in log
    assert secret not in log and "api_key" not in log
