"""GET /openapi.json (docs/api.md): a valid OpenAPI 3.1 description of every
route, generated from the route table, the body bounds and the request
models, whose one error shape is the shape every error really has; built on
its first request only, never on another route's cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.builders import quote_request, recent
from tests.fakes import FrozenClock
from tests.integration.web import get, issue, owner_with_key, post


def served(client: Any) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Frame-Options"] == "DENY"  # the middleware ran, as on every route
    document: dict[str, Any] = json.loads(answer.body)
    return document


def error_shape(document: dict[str, Any], name: str) -> OAS31Validator:
    return OAS31Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": document["components"]})


def test_the_served_description_is_valid_openapi_3_1(client: Any) -> None:
    document = served(client)
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()


def test_every_route_is_described_with_its_access_rule_and_body_bound(client: Any) -> None:
    import app as app_module
    from chalicelib.entrypoints.access import BODY_LIMITS, route_table
    from chalicelib.entrypoints.openapi import OPERATIONS

    document = served(client)
    table = route_table()
    views = {entry.view_name for methods in app_module.app.routes.values()
             for entry in methods.values()}
    assert set(OPERATIONS) == views, "every route, and only routes, have an entry"
    described = {(path, method.upper()) for path, item in document["paths"].items()
                 for method in item}
    assert described == {(path, method) for path, methods in app_module.app.routes.items()
                         for method in methods}
    for path, methods in app_module.app.routes.items():
        for method, entry in methods.items():
            operation = document["paths"][path][method.lower()]
            limit = BODY_LIMITS[f"{method} {path}"]
            assert operation["operationId"] == entry.view_name
            assert operation["x-body-limit-bytes"] == limit
            assert str(limit) in operation["responses"]["413"]["description"]
            rule = table.rules.get(entry.view_name)
            if rule is None:
                assert entry.view_name in table.public and operation["security"] == []
                continue
            schemes = operation["security"]
            assert {"session": [], "csrf": []} in schemes if rule.writes \
                else {"session": []} in schemes
            keys = [s["apiKey"] for s in schemes if "apiKey" in s]
            assert keys == ([[rule.api_scope]] if rule.api_scope else []), (path, method)
            assert {"401", "403"} <= set(operation["responses"])


def test_every_error_answer_refers_to_the_one_error_shape(client: Any) -> None:
    from chalicelib.domain.errors import MAX_LISTED_VIOLATIONS

    document = served(client)
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["properties"]["violations"]["maxItems"] == MAX_LISTED_VIOLATIONS
    assert schemas["Violation"]["required"] == ["field", "rule"]
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or (path, status) == ("/health", "503"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/" + (
                    "Refusal" if int(status) < 500 else "Fault")}, (method, path, status)
                if status in ("429", "503"):
                    assert response["headers"]["Retry-After"]["required"] is True
                checked += 1
    assert checked > 200


def test_real_error_bodies_have_the_described_shape(client: Any) -> None:
    """Refusals from the guard, the body reader, the bound and Chalice itself."""
    document = served(client)
    refusal = error_shape(document, "Refusal")
    answers = [
        client.get("/me"),  # 401
        post(client, "/login", {"email": 1, "password": [], "extra": True}),  # 422
        post(client, "/login", "x" * 20_000),  # 413
        client.post("/login", body=b"{}", headers={"Content-Type": "text/plain"}),  # 415
        client.get("/invoices?api_key=eik_x"),  # 400
    ]
    assert [a.status_code for a in answers] == [401, 422, 413, 415, 400]
    for answer in answers:
        body = json.loads(answer.body)
        refusal.validate(body)
        assert body["violations"] and body["violation_count"] >= len(body["violations"])
    error_shape(document, "Fault").validate({"error": "internal error"})
    with pytest.raises(Exception, match="violations"):
        refusal.validate({"error": "internal error"})


def test_a_content_type_no_route_reads_is_a_415_naming_the_header(client: Any) -> None:
    """Chalice's own refusal ({"Code", "Message"}, quoting what was sent) is
    answered in the one error shape instead."""
    answer = client.post("/login", body=b"{}", headers={"Content-Type": "text/x-attack"})
    assert answer.status_code == 415
    body = json.loads(answer.body)
    assert body["error"] == "UnsupportedMediaType" and body["violation_count"] == 1
    assert body["violations"][0]["field"] == "Content-Type"
    assert "x-attack" not in answer.body.decode()


def test_request_bodies_are_the_models_the_routes_validate_with(client: Any) -> None:
    from chalicelib.domain.invoice_draft import InvoiceDraft
    from chalicelib.entrypoints.bodies import ApiKeyBody, LogInBody

    document = served(client)
    schemas = document["components"]["schemas"]
    template = "#/components/schemas/{model}"
    for path, model in (("/login", LogInBody), ("/api-keys", ApiKeyBody),
                        ("/invoices", InvoiceDraft)):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        generated = model.model_json_schema(ref_template=template)
        generated.pop("$defs", None)
        assert schemas[model.__name__] == generated
    # A credit note and a quote's draft: the invoice's, less what the route fills in.
    draft = set(schemas["InvoiceDraft"]["properties"])
    assert set(schemas["CreditNoteDraft"]["properties"]) == draft - {"type_code",
                                                                     "preceding_invoice"}
    assert set(schemas["QuoteDraft"]["properties"]) == draft - {"issue_date", "due_date"}
    idempotent = {path for path, item in document["paths"].items() for op in item.values()
                  if any(p["name"] == "Idempotency-Key" and p["required"]
                         for p in op.get("parameters", []))}
    assert idempotent == {"/invoices", "/invoices/{invoice_id}/credit-notes", "/quotes",
                          "/quotes/{quote_id}/invoice"}


def test_the_description_is_built_once_and_never_on_another_routes_cold_start(
        client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.entrypoints import openapi

    cold = subprocess.run(
        [sys.executable, "-c", "import sys, app; from chalicelib.entrypoints import access; "
         "print(sorted(m for m in ('pydantic', 'chalicelib.entrypoints.openapi', "
         "'chalicelib.domain.invoice_draft') if m in sys.modules))"],
        capture_output=True, text=True, check=True, timeout=60)
    assert cold.stdout.strip() == "[]", cold.stdout + cold.stderr
    openapi.description_text.cache_clear()
    built: list[int] = []
    real = openapi.description

    def counted() -> dict[str, Any]:
        built.append(1)
        return real()

    monkeypatch.setattr(openapi, "description", counted)
    first, second = client.get("/openapi.json"), client.get("/openapi.json")
    assert first.body == second.body and len(built) == 1


def test_real_answers_have_the_described_shapes(client: Any, frozen: FrozenClock) -> None:
    """What the routes answer when they succeed, against the description's schemas."""
    document = served(client)
    owner, key = owner_with_key(client, frozen, ["ledger:read", "invoices:read",
                                                 "invoices:write"])
    secret = key["secret"]
    issued = issue(client, secret, recent())
    quote = issue(client, secret, quote_request(), key="q-1", path="/quotes")
    answers = [
        ("/invoices", "post", issued),
        ("/invoices", "get", get(client, secret, "/invoices")),
        ("/invoices/{invoice_id}", "get",
         get(client, secret, f"/invoices/{issued.json_body['id']}")),
        ("/quotes", "post", quote),
        ("/quotes/{quote_id}", "get", get(client, secret, f"/quotes/{quote.json_body['id']}")),
        ("/ledger/entries", "get", get(client, secret, "/ledger/entries")),
        ("/api-keys", "post", owner.post(client, "/api-keys", {"name": "n",
                                                               "scopes": ["ledger:read"]})),
        ("/api-keys", "get", client.get("/api-keys", headers={"Cookie": owner.jar})),
        ("/me", "get", owner.me(client)),
        ("/signup", "post", post(client, "/signup", {"email": "shape@example.fr"})),
        ("/health", "get", client.get("/health")),
    ]
    for path, method, answer in answers:
        responses = document["paths"][path][method]["responses"]
        assert str(answer.status_code) in responses, (path, method, answer.status_code)
        schema = responses[str(answer.status_code)]["content"]["application/json"]["schema"]
        assert schema != {"type": "object"}, f"{method} {path} has an answer model"
        OAS31Validator({**schema, "components": document["components"]}).validate(
            json.loads(answer.body))
    assert issued.status_code == 201 and quote.status_code == 201
    assert issued.json_body["archive"]["objects"], "an archived invoice, not a pending one"
