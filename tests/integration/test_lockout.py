"""Lock-out with exponential back-off: counted in PostgreSQL on its clock,
per account and address, per account, and per user for second-factor codes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from chalice.app import Request
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database, PostgresLockouts, sqlstate
from chalicelib.adapters.postgres.limits import _bucket
from chalicelib.entrypoints.accounts import log_in_route
from tests.conftest import Connect
from tests.fakes import FrozenClock
from tests.integration.web import PASSWORD, Session, code, enrolled_owner, login, post, signup

BASE, CAP = timedelta(seconds=30), timedelta(minutes=8)


def expire(superuser: Connect, key: str) -> None:
    """Let the lock run out (stored times moved back; the engine's clock decides)."""
    conn = superuser()
    try:
        conn.run("UPDATE lockouts SET locked_until = now() - interval '1 second' "
                 "WHERE bucket = :b", b=_bucket(key))
    finally:
        conn.close()


def test_waits_double_from_the_free_failures_on_up_to_the_cap(database: Database,
                                                              superuser: Connect) -> None:
    lockouts, key = PostgresLockouts(database), f"test|{uuid.uuid4()}"
    waits = []
    for _ in range(10):
        waits.append(lockouts.fail(key, 3, BASE, CAP))
        assert lockouts.wait(key) == waits[-1]
        expire(superuser, key)
        assert lockouts.wait(key) == 0
    assert waits == [0, 0, 30, 60, 120, 240, 480, 480, 480, 480]
    lockouts.clear(key)
    assert lockouts.fail(key, 3, BASE, CAP) == 0  # a success forgot them all


def test_failures_older_than_a_day_are_forgotten(database: Database,
                                                 superuser: Connect) -> None:
    lockouts, key = PostgresLockouts(database), f"test|{uuid.uuid4()}"
    for _ in range(3):
        lockouts.fail(key, 3, BASE, CAP)
    conn = superuser()
    try:
        conn.run("UPDATE lockouts SET last_failure_at = now() - interval '25 hours', "
                 "locked_until = NULL WHERE bucket = :b", b=_bucket(key))
    finally:
        conn.close()
    assert lockouts.fail(key, 3, BASE, CAP) == 0


def test_the_application_cannot_read_or_reset_lockouts(as_app: Connect) -> None:
    conn = as_app()
    try:
        for sql in ("SELECT * FROM lockouts", "DELETE FROM lockouts",
                    "UPDATE lockouts SET locked_until = NULL"):
            with pytest.raises(DatabaseError) as refused:
                conn.run(sql)
            assert sqlstate(refused.value) == "42501", sql
        with pytest.raises(DatabaseError) as bad:  # no lock beyond a day, no zero base
            conn.run("SELECT lockout_fail(:b, 1, interval '0', interval '100 years')",
                     b=b"x" * 32)
        assert sqlstate(bad.value) == "22023"
    finally:
        conn.close()


def test_the_right_password_is_refused_while_locked(client: Any, superuser: Connect) -> None:
    _, email = signup(client)
    answers = [post(client, "/login", {"email": email, "password": f"wrong {i}"}).status_code
               for i in range(5)]
    assert answers == [401] * 5
    locked = login(client, email)  # the right password
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) == 30
    assert locked.json_body["violations"][0]["field"] == "login-address"
    expire(superuser, f"login-address|{email}|127.0.0.1")
    assert login(client, email).status_code == 200  # back in; the failures are forgotten
    assert post(client, "/login", {"email": email, "password": "wrong"}).status_code == 401


def test_an_unknown_email_locks_the_same_way(client: Any) -> None:
    """No difference that would tell whether an account exists."""
    email = f"nobody.{uuid.uuid4().hex[:8]}@example.fr"
    answers = [post(client, "/login", {"email": email, "password": f"wrong {i}"}).status_code
               for i in range(6)]
    assert answers == [401] * 5 + [429]


def from_address(email: str, password: str, address: str) -> Any:
    return log_in_route(Request({
        "multiValueQueryStringParameters": None, "headers": {"content-type": "application/json"},
        "pathParameters": None, "stageVariables": None, "isBase64Encoded": False,
        "body": json.dumps({"email": email, "password": password}),
        "requestContext": {"httpMethod": "POST", "resourcePath": "/login",
                           "identity": {"sourceIp": address}}}))


def test_other_addresses_are_not_locked_until_the_account_wide_threshold(
        client: Any, superuser: Connect) -> None:
    _, email = signup(client)
    for attempt in range(5):
        assert from_address(email, "wrong", "203.0.113.1").status_code == 401, attempt
    assert from_address(email, PASSWORD, "203.0.113.1").status_code == 429
    # The owner, elsewhere, is not kept out (and the success resets the account count).
    assert from_address(email, PASSWORD, "203.0.113.2").status_code == 200
    # A spread attack: 20 failures in all lock the account everywhere, briefly.
    statuses = [from_address(email, "wrong", f"198.51.100.{i}").status_code for i in range(20)]
    assert statuses == [401] * 20
    refused = from_address(email, PASSWORD, "192.0.2.9")
    assert refused.status_code == 429
    assert refused.body["violations"][0]["field"] == "login-account"
    assert int(refused.headers["Retry-After"]) <= 900


def test_second_factor_codes_lock_out_too(client: Any, superuser: Connect,
                                          frozen: FrozenClock) -> None:
    clock = frozen
    _, email, secret, _ = enrolled_owner(client, clock)
    session = Session(login(client, email))
    for attempt in range(5):
        assert session.post(client, "/mfa", {"code": "000000"}).status_code == 403, attempt
    clock.moment += timedelta(seconds=30)
    locked = session.post(client, "/mfa", {"code": code(secret, clock)})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) == 30
    expire(superuser, f"second-factor-address|{session.body['user_id']}|127.0.0.1")
    assert session.post(client, "/mfa", {"code": code(secret, clock)}).status_code == 200


def test_a_password_holder_elsewhere_cannot_keep_the_owner_from_passing(
        client: Any, frozen: FrozenClock) -> None:
    from chalicelib.entrypoints.mfa import second_factor_route

    clock = frozen
    _, email, secret, _ = enrolled_owner(client, clock)

    def attempt(session: Session, given: str, address: str) -> Any:
        return second_factor_route(Request({
            "multiValueQueryStringParameters": None, "pathParameters": None,
            "stageVariables": None, "isBase64Encoded": False,
            "headers": {"content-type": "application/json", "cookie": session.jar,
                        "x-csrf-token": session.csrf},
            "body": json.dumps({"code": given}),
            "requestContext": {"httpMethod": "POST", "resourcePath": "/mfa",
                               "identity": {"sourceIp": address}}}))

    thief, owner = Session(login(client, email)), Session(login(client, email))
    statuses = [attempt(thief, "000000", "198.51.100.7").status_code for _ in range(8)]
    assert statuses[:5] == [403] * 5 and set(statuses[5:]) == {429}
    clock.moment += timedelta(seconds=30)
    assert attempt(owner, code(secret, clock), "203.0.113.9").status_code == 200
