"""The access log: one row per request, append-only, tenant-scoped by RLS;
and the log formatter that keeps secrets out of every log line."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
from chalice.app import Request
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import sqlstate
from chalicelib.entrypoints.access_log import address_prefix
from chalicelib.logs import logger, redact
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock
from tests.integration.web import PASSWORD, owner_with_key, post


def rows(superuser: Connect, request_id: str) -> list[list[Any]]:
    conn = superuser()
    try:
        found: list[list[Any]] = conn.run(
            "SELECT tenant_id::text, principal, method, route, status, latency_ms, "
            "ip_prefix FROM access_log WHERE request_id = :r", r=request_id)
        return found
    finally:
        conn.close()


def test_each_request_is_logged_with_who_what_and_outcome(
        client: Any, frozen: FrozenClock, superuser: Connect) -> None:
    owner, key = owner_with_key(client, frozen)
    revoked = client.delete(f"/api-keys/{key['id']}",
                            headers={"Cookie": owner.jar, "X-CSRF-Token": owner.csrf})
    [row] = rows(superuser, revoked.headers["X-Request-Id"])
    assert row[:5] == [owner.body["tenant_id"], f"user:{owner.body['user_id']}", "DELETE",
                       "/api-keys/{key_id}", 204]  # the route template, not the key's id
    assert row[5] >= 0 and row[6] == "127.0.0.0/24"
    _, live = owner_with_key(client, frozen)
    machine = client.get("/ledger/verify", headers={"Authorization": f"Bearer {live['secret']}"})
    [row] = rows(superuser, machine.headers["X-Request-Id"])
    assert row[1] == f"api_key:{live['id']}" and row[4] == 200


def test_anonymous_and_refused_calls_are_logged_without_a_tenant(
        client: Any, superuser: Connect) -> None:
    failed = post(client, "/login", {"email": "nobody@example.fr", "password": "x"})
    [row] = rows(superuser, failed.headers["X-Request-Id"])
    assert row[0] is None and row[1] is None and row[3:5] == ["/login", 401]
    no_method = client.get("/logout")  # refused by Chalice itself
    [row] = rows(superuser, no_method.headers["X-Request-Id"])
    assert row[4] == 405


def test_tenants_read_only_their_own_rows_and_nobody_rewrites_them(
        client: Any, frozen: FrozenClock, as_app: Connect, as_owner: Connect,
        superuser: Connect, tenant: uuid.UUID) -> None:
    owner, _ = owner_with_key(client, frozen)
    mine = uuid.UUID(owner.body["tenant_id"])
    conn = in_tenant(as_app, mine)
    try:
        [[count]] = conn.run("SELECT count(*) FROM access_log")
        assert count >= 3  # sign-up, enrolment, confirmation, key creation
        assert conn.run("SELECT count(*) FROM access_log WHERE tenant_id IS DISTINCT FROM "
                        "app_current_tenant()") == [[0]]
        conn.run("SAVEPOINT s")
        for sql, state in (
                ("UPDATE access_log SET status = 200", "42501"),
                ("DELETE FROM access_log", "42501"),
                ("TRUNCATE access_log", "42501"),
                ("INSERT INTO access_log (tenant_id, method, route, status, latency_ms, "
                 f"request_id, ip_prefix) VALUES ('{tenant}', 'GET', '/x', 200, 1, 'r', 'x')",
                 "42501"),
                ("INSERT INTO access_log (tenant_id, method, route, status, latency_ms, "
                 "request_id, ip_prefix) VALUES (NULL, 'GET', '/x', 200, 1, 'r', 'x')",
                 "42501")):
            with pytest.raises(DatabaseError) as refused:
                conn.run(sql)
            assert sqlstate(refused.value) == state, sql
            conn.run("ROLLBACK TO SAVEPOINT s")
    finally:
        conn.close()
    operator = in_tenant(as_owner, mine)
    try:
        operator.run("SAVEPOINT s")
        for sql in ("UPDATE access_log SET status = 200", "DELETE FROM access_log",
                    "TRUNCATE access_log"):
            with pytest.raises(DatabaseError) as refused:
                operator.run(sql)
            assert sqlstate(refused.value) == "EL001", sql
            operator.run("ROLLBACK TO SAVEPOINT s")
    finally:
        operator.close()


def test_only_rows_older_than_a_year_can_be_purged(client: Any, as_owner: Connect,
                                                   superuser: Connect) -> None:
    answer = client.get("/health")
    request_id = answer.headers["X-Request-Id"]
    conn = superuser()
    try:
        conn.run("SET session_replication_role = replica")  # time passes
        conn.run("UPDATE access_log SET at = now() - interval '13 months' WHERE request_id = :r",
                 r=request_id)
    finally:
        conn.close()
    operator = as_owner()
    try:
        purged = operator.run("DELETE FROM access_log WHERE at < now() - interval '1 year' "
                              "AND request_id = :r RETURNING 1", r=request_id)
        assert purged == [[1]]
    finally:
        operator.close()


@pytest.mark.parametrize("source,expected", [
    ("203.0.113.77", "203.0.113.0/24"),
    ("2001:db8:aaaa:bbbb::1", "2001:db8:aaaa::/48"),
    ("not an address", "unknown"),
])
def test_addresses_are_truncated(source: str, expected: str) -> None:
    request = Request({"multiValueQueryStringParameters": None, "headers": {},
                       "pathParameters": None, "stageVariables": None, "body": None,
                       "isBase64Encoded": False, "requestContext": {
                           "httpMethod": "GET", "resourcePath": "/me",
                           "identity": {"sourceIp": source}}})
    assert address_prefix(request) == expected


def logged_line(message: str, **extra: Any) -> str:
    """What the service logger prints, through its real formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger("einvoice")
    std.addHandler(handler)
    try:
        logger.info(message, extra=extra)
    finally:
        std.removeHandler(handler)
    json.loads(stream.getvalue())  # still one valid JSON document
    return stream.getvalue()


@pytest.mark.parametrize("secret", [PASSWORD, "123456", "ABCD-EFGH-IJKL-MNOP", "s3cr3t"])
def test_values_under_secret_keys_or_in_credentials_are_redacted(secret: str) -> None:
    line = logged_line(f"Bearer {secret} session={secret} Authorization: Basic {secret}",
                       password=secret, cookie=f"csrf={secret}", nested={
                           "code": secret, "list": [{"recovery_code": secret}],
                           "body": json.dumps({"new_password": secret})})
    assert secret not in line


@pytest.mark.parametrize("secret", [
    "eik_" + "a1_-" * 11, "FR7630006000011234567890189", "FR76 3000 6000 0112 3456 7890 189",
    "K" * 43, "otpauth://totp/einvoice:x?secret=ABCDEF", "jean.dupont@"])
def test_secret_shapes_are_redacted_anywhere(secret: str) -> None:
    line = logged_line(f"free text with {secret}example.fr in it", detail=[f"{secret}x.fr"])
    assert secret not in line


def test_redaction_leaves_ordinary_text_alone() -> None:
    text = "tenant 3f1e0c8a-0000-4000-8000-000000000000 appended entry 42 (kind invoice.issued)"
    assert redact(text) == text


def test_only_the_redacting_handler_writes_the_service_logs() -> None:
    """Chalice's own log set-up would add an unredacted handler on the same
    logger name; and a record reaching the root logger (the Lambda runtime's
    handler) would be printed in another format."""
    import app as app_module
    from chalicelib.logs import RedactingFormatter

    std = logging.getLogger("einvoice")
    assert app_module.app.log is std and not std.propagate
    printing = [h for h in std.handlers if type(h) is logging.StreamHandler]
    assert len(printing) == 1 and isinstance(printing[0].formatter, RedactingFormatter)
    assert std.getEffectiveLevel() <= logging.INFO


def test_a_foreign_handler_sees_redacted_records_too() -> None:
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    foreign.setFormatter(logging.Formatter("%(message)s %(password)s"))
    std = logging.getLogger("einvoice")
    std.addHandler(foreign)
    try:
        logger.info("to jean.dupont@example.fr: %s", "Bearer abc.def", extra={"password": "pw1"})
    finally:
        std.removeHandler(foreign)
    assert stream.getvalue().strip() == "to ***@example.fr: Bearer [REDACTED] [REDACTED]"


def test_the_daily_schedule_purges_only_what_is_a_year_old(
        client: Any, superuser: Connect, as_app: Connect) -> None:
    """The scheduled trigger (run as `bin/run` runs it) removes rows past a
    year and keeps the rest; the app role gets no more from the engine
    function than that."""
    from chalice.app import Cron, ScheduledEventConfig

    import app as app_module
    from chalicelib.config import settings
    from devstack.dispatcher import ScheduleRunner

    old, recent = (client.get("/health").headers["X-Request-Id"] for _ in range(2))
    conn = superuser()
    try:
        conn.run("SET session_replication_role = replica")  # time passes for one row
        conn.run("UPDATE access_log SET at = now() - interval '1 year 1 day' "
                 "WHERE request_id = :r", r=old)
        conn.run("UPDATE access_log SET at = now() - interval '364 days' "
                 "WHERE request_id = :r", r=recent)
    finally:
        conn.close()
    [source] = [s for s in app_module.app.event_sources if isinstance(s, ScheduledEventConfig)
                and s.name == "retention_purge"]
    assert isinstance(source.schedule_expression, Cron)
    result = ScheduleRunner(app_module, settings(), 3600).run_once()
    assert result["retention_purge"]["access_log"] >= 1
    assert rows(superuser, old) == [] and len(rows(superuser, recent)) == 1
    app_conn = as_app()
    try:  # a second call, straight from the app role: the recent row stays
        app_conn.run("SELECT purge_access_log()")
        with pytest.raises(DatabaseError) as refused:
            app_conn.run("DELETE FROM access_log WHERE request_id = :r", r=recent)
        assert sqlstate(refused.value) == "42501"
    finally:
        app_conn.close()
    assert len(rows(superuser, recent)) == 1
