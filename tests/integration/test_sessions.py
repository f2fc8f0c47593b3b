"""Sessions on the real PostgreSQL. All session times are the engine's, so the
tests move stored times back (as the superuser) instead of freezing a clock."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import (
    Database,
    PostgresLoginDirectory,
    PostgresSessionDirectory,
    sqlstate,
)
from chalicelib.domain.errors import Unauthorized
from chalicelib.domain.passwords import Passwords
from chalicelib.usecases.accounts import Principal, change_password, log_in, sign_up
from chalicelib.usecases.sessions import (
    SessionPolicy,
    authenticate,
    close_session,
    open_session,
    token_hash,
)
from tests.conftest import in_tenant

Connect = Callable[[], pg8000.native.Connection]
CHEAP = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"
POLICY = SessionPolicy(lifetime=timedelta(hours=12), idle=timedelta(minutes=30))


@pytest.fixture
def owner(database: Database) -> Principal:
    return sign_up("Atelier", f"s.{uuid.uuid4().hex[:8]}@example.fr", PASSWORD,
                   database.unit_of_work, CHEAP)


def check(database: Database, token: str | None) -> Principal:
    return authenticate(token, PostgresSessionDirectory(database))


def age(superuser: Connect, token: str, **shift: str) -> None:
    """Move a session's stored times back, as if that much time had passed."""
    root = superuser()
    try:
        sets = ", ".join(f"{column} = {column} - interval '{value}'"
                         for column, value in shift.items())
        root.run(f"UPDATE sessions SET {sets} WHERE token_hash = :h", h=token_hash(token))
    finally:
        root.close()


def test_a_session_names_its_principal_and_stores_only_a_hash(
        database: Database, owner: Principal, superuser: Connect) -> None:
    token = open_session(owner, database.unit_of_work, POLICY)
    assert len(token) >= 43  # 256 bits, URL-safe
    assert check(database, token) == owner
    root = superuser()
    try:
        stored = root.run("SELECT token_hash FROM sessions WHERE user_id = :u",
                          u=str(owner.user_id))
    finally:
        root.close()
    assert [bytes(r[0]) for r in stored] == [hashlib.sha256(token.encode()).digest()]


def test_idle_timeout(database: Database, owner: Principal, superuser: Connect) -> None:
    token = open_session(owner, database.unit_of_work, POLICY)
    age(superuser, token, last_seen_at="29 minutes")
    assert check(database, token) == owner  # ...and that use moved last_seen_at to now
    age(superuser, token, last_seen_at="29 minutes")
    assert check(database, token) == owner
    age(superuser, token, last_seen_at="31 minutes")
    with pytest.raises(Unauthorized):
        check(database, token)


def test_absolute_expiry_even_when_active(database: Database, owner: Principal,
                                          superuser: Connect) -> None:
    token = open_session(owner, database.unit_of_work, POLICY)
    age(superuser, token, created_at="11 hours 59 minutes", expires_at="11 hours 59 minutes")
    assert check(database, token) == owner
    age(superuser, token, created_at="2 minutes", expires_at="2 minutes")
    with pytest.raises(Unauthorized):
        check(database, token)


def test_logout_revokes_only_that_session(database: Database, owner: Principal) -> None:
    laptop = open_session(owner, database.unit_of_work, POLICY)
    phone = open_session(owner, database.unit_of_work, POLICY)
    close_session(owner, laptop, database.unit_of_work)
    with pytest.raises(Unauthorized):
        check(database, laptop)
    assert check(database, phone) == owner


def test_password_change_ends_every_session(database: Database, owner: Principal) -> None:
    tokens = [open_session(owner, database.unit_of_work, POLICY) for _ in range(3)]
    change_password(owner, PASSWORD, "a brand new passphrase", database.unit_of_work, CHEAP)
    for token in tokens:
        with pytest.raises(Unauthorized):
            check(database, token)


def test_a_login_that_raced_a_password_change_opens_no_session(database: Database) -> None:
    email = f"race.{uuid.uuid4().hex[:8]}@example.fr"
    sign_up("Atelier", email, PASSWORD, database.unit_of_work, CHEAP)
    checked = log_in(email, PASSWORD, PostgresLoginDirectory(database), database.unit_of_work,
                     CHEAP)  # the old password is checked...
    change_password(checked, PASSWORD, "a brand new passphrase", database.unit_of_work, CHEAP)
    with pytest.raises(Unauthorized):  # ...and the session comes after the change
        open_session(checked, database.unit_of_work, POLICY)


@pytest.mark.parametrize("token", [None, "", "guess", "A" * 43, "x" * 10_000, "\ud800" * 43])
def test_missing_or_guessed_tokens_get_one_uniform_401(database: Database, owner: Principal,
                                                       token: str | None) -> None:
    open_session(owner, database.unit_of_work, POLICY)
    with pytest.raises(Unauthorized) as caught:
        check(database, token)
    assert caught.value.as_dict() == {"error": "Unauthorized", "violations": [
        {"field": "session", "rule": "missing, expired or revoked: log in"}],
        "violation_count": 1}


@pytest.mark.parametrize("values,state", [
    # back-dated or everlasting sessions
    ("now() + interval '100 years', interval '30 minutes'", "EL002"),
    ("now() - interval '1 second', interval '30 minutes'", "EL002"),
    ("now() + interval '1 hour', interval '100 years'", "23514"),
])
def test_application_cannot_forge_a_session_row(database: Database, owner: Principal,
                                                as_app: Connect, values: str,
                                                state: str) -> None:
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run("INSERT INTO sessions (token_hash, tenant_id, user_id, credential_version, "
                    f"expires_at, idle_timeout) VALUES (:h, :t, :u, 1, {values})",
                    h=token_hash(str(uuid.uuid4())), t=str(owner.tenant_id),
                    u=str(owner.user_id))
        assert sqlstate(caught.value) == state
    finally:
        app.close()


def test_a_session_cannot_join_a_user_to_another_tenant(database: Database, owner: Principal,
                                                        as_app: Connect) -> None:
    """A session of tenant A for tenant B's owner would act as B's owner in A."""
    victim = sign_up("Victim", f"v.{uuid.uuid4().hex[:8]}@example.fr", PASSWORD,
                     database.unit_of_work, CHEAP)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run("INSERT INTO sessions (token_hash, tenant_id, user_id, credential_version, "
                    "expires_at, idle_timeout) VALUES (:h, :t, :u, 1, now() + interval '1 hour', "
                    "interval '30 minutes')", h=token_hash("x"), t=str(owner.tenant_id),
                    u=str(victim.user_id))
        assert sqlstate(caught.value) in {"23503", "EL004"}
    finally:
        app.close()


@pytest.mark.parametrize("sql", [
    "UPDATE sessions SET expires_at = expires_at + interval '1 year'",
    "UPDATE sessions SET user_id = user_id",
    "UPDATE sessions SET last_seen_at = now()",
    "DELETE FROM sessions",
])
def test_application_cannot_extend_or_move_sessions(database: Database, owner: Principal,
                                                    as_app: Connect, sql: str) -> None:
    open_session(owner, database.unit_of_work, POLICY)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run(sql)
        assert sqlstate(caught.value) == "42501"
    finally:
        app.close()


def test_a_revoked_session_stays_revoked(database: Database, owner: Principal,
                                         as_app: Connect) -> None:
    token = open_session(owner, database.unit_of_work, POLICY)
    close_session(owner, token, database.unit_of_work)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run("UPDATE sessions SET revoked_at = NULL")
        assert sqlstate(caught.value) == "EL001"
    finally:
        app.close()
    with pytest.raises(Unauthorized):
        check(database, token)


def test_sessions_of_other_tenants_are_invisible(database: Database, owner: Principal,
                                                 as_app: Connect) -> None:
    other = sign_up("Other", f"o.{uuid.uuid4().hex[:8]}@example.fr", PASSWORD,
                    database.unit_of_work, CHEAP)
    open_session(owner, database.unit_of_work, POLICY)
    open_session(other, database.unit_of_work, POLICY)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        assert {r[0] for r in app.run("SELECT user_id FROM sessions")} == {owner.user_id}
        app.run("ROLLBACK")
        assert app.run("SELECT count(*) FROM sessions")[0][0] == 0
    finally:
        app.close()
