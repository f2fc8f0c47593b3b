"""The Scaleway entry points (functions/) on the real stack: every route of
app.py answers through functions/api.py as Chalice's test client answers it,
the caller's address is the one Scaleway's front appended, and each schedule
answers 200 with what the Chalice schedule returns."""

from __future__ import annotations

import importlib
import json
import logging
import random
import time
import uuid
from typing import Any

import pytest

from chalicelib.adapters.postgres import Database
from chalicelib.config import settings
from chalicelib.entrypoints.guard import SECURITY_HEADERS
from tests.builders import recent
from tests.conftest import Connect
from tests.fakes import FrozenClock
from tests.integration.web import (
    WRITE,
    ScalewayClient,
    get,
    issue,
    owner_with_key,
    post,
    request_signup,
    scaleway_event,
    within_one_minute_window,
)

PUBLIC = {("/health", "GET"), ("/openapi.json", "GET"), ("/signup", "POST"),
          ("/signup/confirm", "POST"), ("/login", "POST")}


def _routes() -> list[tuple[str, str]]:
    import app as app_module

    return sorted((template, method) for template, views in app_module.app.routes.items()
                  for method in views)


def _concrete(template: str) -> str:
    parts = [str(uuid.uuid4()) if p.startswith("{") else p for p in template.split("/")]
    return "/".join(parts)


def _same_answer(scaleway: Any, chalice: Any) -> None:
    """Same status, body and headers (the request id aside: each has its own)."""
    assert scaleway.status_code == chalice.status_code
    assert scaleway.body == chalice.body
    assert {k: v for k, v in scaleway.headers.items() if k != "X-Request-Id"} == \
        {k: v for k, v in chalice.headers.items() if k != "X-Request-Id"}
    assert "X-Request-Id" in scaleway.headers


def _public_address() -> str:
    """A fresh public (global) address: rate-limit counters are per address."""
    return f"51.158.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.mark.parametrize(("template", "method"), _routes(), ids=lambda v: str(v))
def test_every_route_answers_as_on_aws_without_credentials(
        client: Any, template: str, method: str) -> None:
    """Each route is reached through the Scaleway entry (no 404, no 405); a
    protected one refuses an anonymous caller with 401, as on AWS."""
    path = _concrete(template)
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    body = "{}" if method == "POST" else ""
    scaleway = ScalewayClient().request(method, path, headers=dict(headers), body=body)
    chalice = client.request(method, path, headers=dict(headers), body=body.encode())
    _same_answer(scaleway, chalice)
    assert scaleway.status_code not in (403, 404, 405)
    if (template, method) not in PUBLIC:
        assert scaleway.status_code == 401, (template, method, scaleway.body)


def test_a_wrong_method_answers_405_and_an_unknown_path_404(client: Any) -> None:
    scaleway = ScalewayClient()
    for path, method in (("/invoices", "PUT"), ("/logout", "GET"),
                         (f"/invoices/{uuid.uuid4()}/pdf", "DELETE")):
        answer = scaleway.request(method, path)
        _same_answer(answer, client.request(method, path))
        assert answer.status_code == 405 and answer.headers["Allow"]
    for path in ("/", "/nothing", "/invoices/x/y/z", "/invoices//pdf"):
        answer = scaleway.get(path)
        assert answer.status_code == 404 and answer.json_body == {"error": "not found"}
        assert {k: answer.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS
    # A trailing slash is dropped, as API Gateway drops it.
    _same_answer(scaleway.get("/health/"), client.get("/health"))
    # The preflight, answered as API Gateway answers it (Chalice's local
    # gateway; its test client cannot read a preflight's empty body).
    preflight = scaleway.options("/me")
    assert (preflight.status_code, preflight.headers) == (200, {
        "Access-Control-Allow-Methods": "OPTIONS"})  # CORS is off here


def test_the_preflight_is_the_one_api_gateway_answers() -> None:
    from chalice.app import Chalice
    from chalice.config import Config
    from chalice.local import LocalGateway

    from chalicelib.entrypoints.cors import frontend_cors
    from functions.api import preflight_headers

    app = Chalice("preflight")
    app.api.cors = frontend_cors("https://app.example.fr")

    @app.route("/things/{thing_id}", methods=["GET", "DELETE"])
    def thing(thing_id: str) -> dict[str, str]:
        return {}

    gateway = LocalGateway(app, Config()).handle_request(
        "OPTIONS", "/things/1", {"origin": "https://app.example.fr"}, b"")
    assert preflight_headers(app, "/things/{thing_id}") == gateway["headers"]
    assert gateway["headers"]["Access-Control-Allow-Origin"] == "https://app.example.fr"


def test_a_full_flow_through_the_scaleway_entry(client: Any, frozen: FrozenClock,
                                                superuser: Connect) -> None:
    """Sign-up, second factor, API key, invoice, its PDF (binary) and XML, the
    list, one invoice: all through Scaleway events; every read answers what
    Chalice's test client answers for the same request."""
    scaleway = ScalewayClient()
    owner, key = owner_with_key(scaleway, frozen, WRITE)
    secret = key["secret"]
    created = issue(scaleway, secret, recent())
    assert created.status_code == 201, created.body
    invoice = created.json_body
    assert created.headers["Location"] == f"/invoices/{invoice['id']}"
    retried = issue(client, secret, recent())  # the same key, through Chalice
    assert retried.status_code == 200 and retried.json_body["id"] == invoice["id"]

    pdf = get(scaleway, secret, f"/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200 and pdf.body.startswith(b"%PDF")
    assert scaleway.answers[-1]["isBase64Encoded"] is True
    assert pdf.headers["Content-Type"] == "application/pdf"
    for path in (f"/invoices/{invoice['id']}/pdf", f"/invoices/{invoice['id']}/xml",
                 f"/invoices/{invoice['id']}", "/invoices", "/invoices?limit=1",
                 "/ledger/verify", "/health"):
        _same_answer(get(scaleway, secret, path), get(client, secret, path))
    assert get(scaleway, secret, f"/invoices/{invoice['id']}").json_body == invoice
    listed = get(scaleway, secret, "/invoices").json_body
    assert invoice["id"] in json.dumps(listed)
    assert scaleway.get("/health").json_body["status"] == "ok"
    # Cookies survive the trip: the session reads /me, and logs out.
    me = owner.me(scaleway)
    assert me.status_code == 200 and me.json_body["user_id"] == owner.body["user_id"]
    assert owner.post(scaleway, "/logout", {}).status_code in (200, 204)
    assert owner.me(scaleway).status_code == 401

    conn = superuser()
    try:
        [[route, status]] = conn.run("SELECT route, status FROM access_log WHERE request_id = :r",
                                     r=pdf.headers["X-Request-Id"])
    finally:
        conn.close()
    assert (route, status) == ("/invoices/{invoice_id}/pdf", 200)


def test_the_request_id_is_scaleways(stack: Any) -> None:
    event = scaleway_event("GET", "/health")
    from functions.api import handle

    answer = handle(event, {})
    assert answer["headers"]["X-Request-Id"] == event["headers"]["X-Request-Id"]


def test_the_address_is_the_one_scaleways_front_appended(superuser: Connect) -> None:
    """The access log keeps the network Scaleway's front saw; an entry the
    client put in X-Forwarded-For itself, and the internal hops after the
    front, are never taken for the caller."""
    from functions.api import handle

    real = _public_address()
    event = scaleway_event("GET", "/health", headers={"X-Forwarded-For": "8.8.8.8, 10.1.2.3"},
                           client=real)
    event["headers"]["X-Forwarded-For"] += ", 100.64.7.8, 10.0.0.9"  # internal hops
    answer = handle(event, {})
    assert answer["statusCode"] == 200
    conn = superuser()
    try:
        [[prefix]] = conn.run("SELECT ip_prefix FROM access_log WHERE request_id = :r",
                              r=answer["headers"]["X-Request-Id"])
    finally:
        conn.close()
    assert prefix == real.rsplit(".", 1)[0] + ".0/24"


def test_the_rate_limit_counts_the_address_scaleways_front_saw(
        stack: Any, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sign-ups a minute per address: a third from the same address is
    refused whatever it forges in X-Forwarded-For; another address is not."""
    monkeypatch.setenv("EINVOICE_SIGNUP_PER_IP_PER_MINUTE", "2")
    settings.cache_clear()
    try:
        within_one_minute_window(database)
        real, other = _public_address(), _public_address()
        answers = []
        for forged in ("9.9.9.1", "9.9.9.2", "9.9.9.3"):
            email = f"forger.{uuid.uuid4().hex[:8]}@example.fr"
            answers.append(post(ScalewayClient(real), "/signup", {"email": email},
                                **{"X-Forwarded-For": forged}).status_code)
        assert answers == [202, 202, 429]
        assert request_signup(ScalewayClient(other),
                              f"other.{uuid.uuid4().hex[:8]}@example.fr").status_code == 202
    finally:
        monkeypatch.undo()
        settings.cache_clear()


SCHEDULES = ["retention_purge", "scheduled_closings", "anchor_retries", "archive_sweep"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_schedule_answers_200_with_the_chalice_schedules_result(
        stack: Any, name: str, service_logs: pytest.LogCaptureFixture) -> None:
    import app as app_module
    from devstack.dispatcher import LocalContext, scheduled_event

    on_aws = getattr(app_module, name)(
        scheduled_event(name, settings().s3_region),
        LocalContext(name, str(uuid.uuid4()), deadline=time.monotonic() + 300))
    module = importlib.import_module(f"functions.{name}")
    event = scaleway_event("POST", "/", headers={"Content-Type": "application/json"},
                           body=json.dumps({"dry_run": True}))
    answer = module.handle(event, {"memoryLimitInMb": 256, "functionName": name,
                                   "functionVersion": ""})
    assert answer["statusCode"] == 200, answer
    assert set(json.loads(answer["body"])) == set(on_aws)
    ignored = [r for r in service_logs.records if r.getMessage() == "schedule arguments ignored"]
    assert ignored and getattr(ignored[-1], "arguments", None) == ["dry_run"]


def test_a_failed_schedule_answers_500_and_logs_its_type_only(
        stack: Any, monkeypatch: pytest.MonkeyPatch,
        service_logs: pytest.LogCaptureFixture) -> None:
    from chalicelib.entrypoints import cron
    from functions import archive_sweep

    def broken() -> dict[str, int]:
        raise RuntimeError("password=hunter22 in the server's text")

    monkeypatch.setattr(archive_sweep, "sweep_archive", broken)
    with service_logs.at_level(logging.INFO, logger="einvoice"):
        answer = archive_sweep.handle(scaleway_event("POST", "/", body="not json"), {})
    assert answer["statusCode"] == 500
    assert "hunter22" not in answer["body"]
    [failed] = [r for r in service_logs.records if r.getMessage() == "schedule failed"]
    assert failed.__dict__["reason"] == "RuntimeError"
    assert not [r for r in service_logs.records if "hunter22" in r.getMessage()
                or "hunter22" in str(getattr(r, "reason", ""))]
    assert [r for r in service_logs.records if r.getMessage().startswith(
        "schedule arguments ignored: the body is not JSON")]
    assert cron.run_schedule("x", {"body": ""}, lambda: {"done": 1})["statusCode"] == 200


def test_anchor_retries_counts_down_from_the_configured_timeout(
        stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import anchor_retries

    seen: list[int] = []

    def retry(context: anchor_retries.Deadline) -> dict[str, int]:
        seen.append(context.get_remaining_time_in_millis())
        return {"anchors": 0, "closings": 0}

    monkeypatch.setattr(anchor_retries, "retry_anchoring", retry)
    monkeypatch.setenv("EINVOICE_FUNCTION_TIMEOUT_SECONDS", "120")
    settings.cache_clear()
    try:
        assert anchor_retries.handle(scaleway_event("POST", "/"), {})["statusCode"] == 200
    finally:
        monkeypatch.undo()
        settings.cache_clear()
    assert 110_000 < seen[0] <= 120_000
    monkeypatch.setattr(anchor_retries, "retry_anchoring", lambda context: {
        "anchors": int(context is None), "closings": 0})
    answer = anchor_retries.handle(scaleway_event("POST", "/"), {})
    assert json.loads(answer["body"]) == {"anchors": 1, "closings": 0}  # unset: no deadline
