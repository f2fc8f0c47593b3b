"""Sessions on the real PostgreSQL with a frozen clock: expiry, idle timeout,
logout, password change, fixation, guessing, and attacks as the app role."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database, PostgresSessionDirectory, sqlstate
from chalicelib.domain.errors import Unauthorized
from chalicelib.domain.passwords import Passwords
from chalicelib.usecases.accounts import Principal, change_password, sign_up
from chalicelib.usecases.sessions import (
    SessionPolicy,
    authenticate,
    close_session,
    open_session,
)
from tests.conftest import FrozenClock

Connect = Callable[[], pg8000.native.Connection]
CHEAP = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"
POLICY = SessionPolicy(lifetime=timedelta(hours=12), idle=timedelta(minutes=30))


@pytest.fixture
def owner(database: Database) -> Principal:
    return sign_up("Atelier", f"s.{uuid.uuid4().hex[:8]}@example.fr", PASSWORD,
                   database.unit_of_work, CHEAP)


def check(database: Database, token: str | None, clock: FrozenClock) -> Principal:
    return authenticate(token, PostgresSessionDirectory(database), clock, POLICY)


def test_a_session_names_its_principal_and_stores_only_a_hash(
        database: Database, owner: Principal, clock: FrozenClock, superuser: Connect) -> None:
    token = open_session(owner, database.unit_of_work, clock, POLICY)
    assert len(token) >= 43  # 256 bits, URL-safe
    assert check(database, token, clock) == owner
    root = superuser()
    try:
        stored = root.run("SELECT token_hash FROM sessions WHERE user_id = :u",
                          u=str(owner.user_id))
    finally:
        root.close()
    assert [bytes(r[0]) for r in stored] == [hashlib.sha256(token.encode()).digest()]


def test_idle_timeout_and_sliding_activity(database: Database, owner: Principal,
                                           clock: FrozenClock) -> None:
    token = open_session(owner, database.unit_of_work, clock, POLICY)
    start = clock.moment
    for minutes in (29, 58, 87):  # each use within 30 minutes of the last keeps it alive
        clock.moment = start + timedelta(minutes=minutes)
        assert check(database, token, clock) == owner
    clock.moment = start + timedelta(minutes=87 + 31)
    with pytest.raises(Unauthorized):
        check(database, token, clock)


def test_absolute_expiry_even_when_active(database: Database, owner: Principal,
                                          clock: FrozenClock) -> None:
    token = open_session(owner, database.unit_of_work, clock, POLICY)
    start = clock.moment
    minutes = 0
    while minutes < 12 * 60 - 20:
        minutes += 20
        clock.moment = start + timedelta(minutes=minutes)
        check(database, token, clock)
    clock.moment = start + timedelta(hours=12, seconds=1)
    with pytest.raises(Unauthorized):
        check(database, token, clock)


def test_logout_revokes_only_that_session(database: Database, owner: Principal,
                                          clock: FrozenClock) -> None:
    laptop = open_session(owner, database.unit_of_work, clock, POLICY)
    phone = open_session(owner, database.unit_of_work, clock, POLICY)
    close_session(owner, laptop, database.unit_of_work, clock)
    with pytest.raises(Unauthorized):
        check(database, laptop, clock)
    assert check(database, phone, clock) == owner


def test_password_change_revokes_every_session(database: Database, owner: Principal,
                                               clock: FrozenClock) -> None:
    tokens = [open_session(owner, database.unit_of_work, clock, POLICY) for _ in range(3)]
    change_password(owner, PASSWORD, "a brand new passphrase", database.unit_of_work, CHEAP,
                    clock)
    for token in tokens:
        with pytest.raises(Unauthorized):
            check(database, token, clock)


@pytest.mark.parametrize("token", [None, "", "guess", "A" * 43, "x" * 10_000])
def test_missing_or_guessed_tokens_get_one_uniform_401(database: Database, owner: Principal,
                                                       clock: FrozenClock,
                                                       token: str | None) -> None:
    open_session(owner, database.unit_of_work, clock, POLICY)
    with pytest.raises(Unauthorized) as caught:
        check(database, token, clock)
    assert caught.value.as_dict() == {"error": "Unauthorized", "violations": [
        {"field": "session", "rule": "missing, expired or revoked: log in"}]}


def test_each_login_gets_a_fresh_token(database: Database, owner: Principal,
                                       clock: FrozenClock) -> None:
    """No fixation: a token known before login is never the one after it."""
    tokens = {open_session(owner, database.unit_of_work, clock, POLICY) for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize("sql", [
    "UPDATE sessions SET expires_at = expires_at + interval '1 year'",
    "UPDATE sessions SET user_id = user_id",
    "UPDATE sessions SET last_seen_at = now()",
    "DELETE FROM sessions",
])
def test_application_cannot_extend_or_move_sessions(database: Database, owner: Principal,
                                                    clock: FrozenClock, as_app: Connect,
                                                    sql: str) -> None:
    open_session(owner, database.unit_of_work, clock, POLICY)
    app = as_app()
    try:
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(owner.tenant_id))
        with pytest.raises(DatabaseError) as caught:
            app.run(sql)
        assert sqlstate(caught.value) == "42501"
    finally:
        app.close()


def test_a_revoked_session_stays_revoked(database: Database, owner: Principal,
                                         clock: FrozenClock, as_app: Connect) -> None:
    token = open_session(owner, database.unit_of_work, clock, POLICY)
    close_session(owner, token, database.unit_of_work, clock)
    app = as_app()
    try:
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(owner.tenant_id))
        with pytest.raises(DatabaseError) as caught:
            app.run("UPDATE sessions SET revoked_at = NULL")
        assert sqlstate(caught.value) == "EL001"
    finally:
        app.close()
    with pytest.raises(Unauthorized):
        check(database, token, clock)


def test_sessions_of_other_tenants_are_invisible(database: Database, owner: Principal,
                                                 clock: FrozenClock, as_app: Connect) -> None:
    other = sign_up("Other", f"o.{uuid.uuid4().hex[:8]}@example.fr", PASSWORD,
                    database.unit_of_work, CHEAP)
    open_session(owner, database.unit_of_work, clock, POLICY)
    open_session(other, database.unit_of_work, clock, POLICY)
    app = as_app()
    try:
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(owner.tenant_id))
        assert {r[0] for r in app.run("SELECT user_id FROM sessions")} == {owner.user_id}
        app.run("ROLLBACK")
        assert app.run("SELECT count(*) FROM sessions")[0][0] == 0
    finally:
        app.close()
