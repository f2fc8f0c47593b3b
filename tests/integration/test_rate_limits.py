"""Rate limits kept in PostgreSQL: shared by separate app instances, 429 with
Retry-After, counted per IP, per account and per user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pg8000.native
import pytest
from chalice.test import Client
from pg8000.exceptions import DatabaseError

from chalicelib import runtime
from chalicelib.adapters.postgres import Database, PostgresRateLimiter, app_connector, sqlstate
from chalicelib.config import Settings, settings
from chalicelib.domain.errors import TooManyRequests
from chalicelib.usecases.rate_limits import enforce
from devstack.stack import LocalStack
from tests.integration.web import within_one_minute_window

Connect = Callable[[], pg8000.native.Connection]


def test_two_instances_share_one_counter(app_settings: Settings, database: Database) -> None:
    """Two function instances (own connections, own processes in production)."""
    first = Database(app_connector(app_settings))
    second = Database(app_connector(app_settings))
    key = f"login-ip|{uuid.uuid4()}"
    within_one_minute_window(database)
    try:
        answers = [PostgresRateLimiter(db).hit(key, timedelta(minutes=1), 5)
                   for db in (first, second, first, second, first, second)]
    finally:
        first.close()
        second.close()
    assert [allowed for allowed, _ in answers] == [True] * 5 + [False]
    assert 1 <= answers[-1][1] <= 60


def test_every_check_is_counted_and_the_longest_wait_is_given(database: Database) -> None:
    limiter = PostgresRateLimiter(database)
    ip, account = str(uuid.uuid4()), str(uuid.uuid4())
    within_one_minute_window(database)
    for _ in range(2):
        enforce(limiter, [("login-ip", ip, 2), ("login-account", account, 5)])
    with pytest.raises(TooManyRequests) as caught:
        enforce(limiter, [("login-ip", ip, 2), ("login-account", account, 5)])
    assert [v.field for v in caught.value.violations] == ["login-ip"]
    assert caught.value.retry_after >= 1
    # The refused attempt still counted against the account.
    assert not limiter.hit(f"login-account|{account}", timedelta(minutes=1), 3)[0]


def test_the_application_cannot_reset_or_read_counters(as_app: Connect) -> None:
    app = as_app()
    try:
        for sql in ("DELETE FROM rate_limit_hits", "SELECT * FROM rate_limit_hits",
                    "UPDATE rate_limit_hits SET hits = 0"):
            with pytest.raises(DatabaseError) as caught:
                app.run(sql)
            assert sqlstate(caught.value) == "42501"
        with pytest.raises(DatabaseError) as caught:  # nor make a window that never ends
            app.run("SELECT * FROM rate_limit_hit(:b, interval '100 years', 1)", b=b"x" * 32)
        assert sqlstate(caught.value) == "22023"
    finally:
        app.close()


@pytest.fixture
def strict(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The API with 5 logins a minute per account and 2 writes per user. (Every
    test request comes from one local address, so the per-IP limit is shown
    on the limiter above rather than here.)"""
    import app as app_module

    monkeypatch.setenv("EINVOICE_LOGIN_PER_ACCOUNT_PER_MINUTE", "5")
    monkeypatch.setenv("EINVOICE_WRITES_PER_USER_PER_MINUTE", "2")
    settings.cache_clear()
    try:
        with Client(app_module.app) as client:
            yield client.http
    finally:
        monkeypatch.undo()
        settings.cache_clear()


def login(http: Any, email: str, password: str) -> Any:
    return http.post("/login", headers={"Content-Type": "application/json"},
                     body=json.dumps({"email": email, "password": password}))


def test_login_per_account_limit_answers_429_with_retry_after(strict: Any,
                                                               database: Database) -> None:
    http = strict
    email = f"victim.{uuid.uuid4().hex[:8]}@example.fr"
    within_one_minute_window(database)
    variants = [email, email.upper(), f"  {email} ", email, email.title(), email]
    answers = [login(http, who, f"guess number {i}").status_code
               for i, who in enumerate(variants)]
    assert answers == [401] * 5 + [429]  # case and spacing variants share one bucket
    refused = login(http, email, "guess number 7")
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert {v["field"] for v in refused.json_body["violations"]} >= {"login-account"}


def test_writes_per_user_limit(strict: Any) -> None:
    http = strict
    from tests.integration.web import signup

    up, _ = signup(http)
    assert up.status_code == 201
    tenant = uuid.UUID(up.json_body["tenant_id"])
    from chalicelib.ports import Account

    member = f"m.{uuid.uuid4().hex[:8]}@example.fr"
    with runtime.database().unit_of_work(tenant) as uow:
        uow.users.add(Account(uuid.uuid4(), tenant, "member",
                              runtime.passwords().hash("correct horse battery")), member)
    within_one_minute_window(runtime.database())
    session = login(http, member, "correct horse battery")
    values = session.headers["Set-Cookie"]
    jar = "; ".join(v.split(";", 1)[0] for v in values)
    csrf = next(v for v in values if v.startswith("__Host-csrf=")).split(";", 1)[0].split("=", 1)[1]
    codes = [http.post("/password", headers={"Content-Type": "application/json", "Cookie": jar,
                                             "X-CSRF-Token": csrf},
                       body=json.dumps({"current_password": "wrong password here",
                                        "new_password": "a brand new passphrase"})).status_code
             for _ in range(3)]
    assert codes == [403, 403, 429]
    # Logging out is never limited: a stolen session cannot block its own end.
    out = http.post("/logout", headers={"Content-Type": "application/json", "Cookie": jar,
                                        "X-CSRF-Token": csrf}, body="{}")
    assert out.status_code == 204


@pytest.mark.parametrize("context,expected", [
    ({"identity": {"sourceIp": "203.0.113.7"}}, "203.0.113.7"),
    ({"identity": {"sourceIp": "2001:db8:1:2:3:4:5:6"}}, "2001:db8:1:2::/64"),
    ({"identity": {"sourceIp": "2001:db8:1:2:ffff::1"}}, "2001:db8:1:2::/64"),
    ({"identity": {}}, "unknown"),
    ({}, "unknown"),
])
def test_client_address_comes_from_the_gateway_only(context: dict[str, Any],
                                                    expected: str) -> None:
    from chalice.app import Request

    from chalicelib.entrypoints.guard import client_ip

    request = Request({"multiValueQueryStringParameters": None, "headers": {
        "x-forwarded-for": "198.51.100.99", "x-real-ip": "198.51.100.98"},
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"httpMethod": "GET", "resourcePath": "/me", **context}})
    assert client_ip(request) == expected
