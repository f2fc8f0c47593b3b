"""The whole API fuzzed against its own description (docs/api.md, docs/security.md):
schemathesis generates requests from GET /openapi.json, valid and invalid, for
every operation, sends each over HTTP to the local API server on the real
stack, once with an API key holding every scope and once with an owner's
session that passed its second factor, and checks every answer: never a 5xx,
a status, content type, headers and body the description declares.

Bounded and reproducible: a fixed number of examples per operation,
derandomized (the same requests on every run), no example database.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.stack import LocalStack, free_port
from tests.conftest import remember
from tests.fakes import FrozenClock
from tests.integration.web import Session, enrolled_owner, login

EXAMPLES_PER_MODE = 25  # valid, then as many invalid: 50 an operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
SCOPES = ["ledger:read", "invoices:read", "invoices:write", "closings:write"]


@pytest.fixture(scope="module")
def api_server(stack: LocalStack) -> Iterator[str]:
    """The local API server (what bin/run serves) on a free port: its base URL."""
    from chalice.config import Config

    import app as app_module
    from devstack.api import local_api_server

    # Chalice's local server makes the app an instance of its own subclass;
    # put the class back afterwards, or the next local server in this process
    # (test_query_credentials) finds an inheritance cycle.
    chalice_class = app_module.app.__class__
    port = free_port()
    server = local_api_server(app_module.app, Config.create(chalice_stage="dev",
                                                            app_name="einvoice"),
                              "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)
        app_module.app.__class__ = chalice_class


def served_description(api_server: str) -> dict[str, Any]:
    """The description as the server serves it."""
    with urllib.request.urlopen(f"{api_server}/openapi.json", timeout=30) as answer:
        assert answer.status == 200
        document: dict[str, Any] = json.loads(answer.read())
    return document


@pytest.fixture
def callers(client: Any, frozen: FrozenClock) -> dict[str, dict[str, str]]:
    """An API key with every scope, and the session of its owner (second factor passed)."""
    owner, email, _, _ = enrolled_owner(client, frozen)
    made = owner.post(client, "/api-keys", {"name": "fuzz", "scopes": SCOPES})
    assert made.status_code == 201, made.json_body
    remember(made.json_body["secret"])
    return {"api_key": {"Authorization": f"Bearer {made.json_body['secret']}"},
            "session": {"Cookie": owner.jar, "X-CSRF-Token": owner.csrf},
            "owner": {"email": email}}


def test_the_api_answers_as_its_description_says(
        callers: dict[str, dict[str, str]], client: Any, api_server: str) -> None:
    document = served_description(api_server)
    schema = schemathesis.openapi.from_dict(document)
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        described = document["paths"][operation.path][operation.method.lower()]
        takes_input = "parameters" in described or "requestBody" in described
        # Nothing to make invalid on a route that takes no input.
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[:2 if takes_input else 1]:
            try:
                _fuzz(operation, mode, callers, client, api_server)
            except (Exception, BaseExceptionGroup) as failure:
                failures[f"{operation.label} ({mode.value})"] = str(failure)[:3000]
    assert operations >= 30
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _fuzz(operation: Any, mode: GenerationMode, callers: dict[str, dict[str, str]],
          client: Any, api_server: str) -> None:
    """EXAMPLES_PER_MODE requests of `mode` to `operation`, each sent with
    the API key and with the session, each answer checked."""
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_MODE, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        for who in ("api_key", "session"):
            headers = dict(callers[who])
            if who == "session" and operation.path == "/logout":
                # Its own session: ending the shared one would leave the rest 401.
                fresh = Session(login(client, callers["owner"]["email"]))
                headers = {"Cookie": fresh.jar, "X-CSRF-Token": fresh.csrf}
            response = case.call(base_url=api_server, headers=headers, timeout=60)
            case.validate_response(response, checks=CHECKS, headers=headers)

    run()
