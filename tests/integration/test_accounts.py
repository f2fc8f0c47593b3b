"""Sign-up, login and password change on the real PostgreSQL, and attacks on
the users table as the application role."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database, PostgresLoginDirectory, sqlstate
from chalicelib.domain.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from chalicelib.domain.passwords import Passwords
from chalicelib.usecases.accounts import change_password, log_in, sign_up
from tests.conftest import in_tenant

Connect = Callable[[], pg8000.native.Connection]
CHEAP = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"


def new_email() -> str:
    return f"Jeanne.{uuid.uuid4().hex[:8]}@Example.FR"


def test_sign_up_then_log_in(database: Database) -> None:
    email = new_email()
    owner = sign_up("  Atelier Jeanne  ", email, PASSWORD, database.unit_of_work, CHEAP)
    assert owner.role == "owner"
    principal = log_in(email.upper(), PASSWORD, PostgresLoginDirectory(database),
                       database.unit_of_work, CHEAP)
    assert principal == owner
    with database.transaction(owner.tenant_id) as conn:
        assert conn.run("SELECT name FROM tenants") == [["Atelier Jeanne"]]
        assert conn.run("SELECT email FROM users") == [[email.lower()]]


def test_unknown_email_and_wrong_password_get_the_same_answer(database: Database) -> None:
    email = new_email()
    sign_up("Atelier", email, PASSWORD, database.unit_of_work, CHEAP)
    directory = PostgresLoginDirectory(database)
    answers = []
    for who, password in ((email, "wrong password!"), (new_email(), PASSWORD),
                          ("%", PASSWORD), (email.replace("@", "_@"), PASSWORD)):
        with pytest.raises(Unauthorized) as caught:
            log_in(who, password, directory, database.unit_of_work, CHEAP)
        answers.append((caught.value.status, caught.value.as_dict()))
    assert all(answer == answers[0] for answer in answers) and answers[0][0] == 401


def test_sign_up_writes_nothing_on_bad_input_or_taken_email(database: Database,
                                                            superuser: Connect) -> None:
    email = new_email()
    sign_up("First", email, PASSWORD, database.unit_of_work, CHEAP)
    root = superuser()
    try:
        before = root.run("SELECT count(*) FROM tenants")[0][0]
        with pytest.raises(InvalidInput) as caught:
            sign_up("", "not-an-email", "short", database.unit_of_work, CHEAP)
        assert [v.field for v in caught.value.violations] == ["tenant_name", "email", "password"]
        with pytest.raises(Conflict):
            sign_up("Second", email.upper(), PASSWORD, database.unit_of_work, CHEAP)
        assert root.run("SELECT count(*) FROM tenants")[0][0] == before  # no orphan tenant
    finally:
        root.close()


def test_login_rehashes_when_parameters_change(database: Database) -> None:
    email = new_email()
    owner = sign_up("Atelier", email, PASSWORD, database.unit_of_work, CHEAP)
    stronger = Passwords(time_cost=2, memory_kib=2048, parallelism=1)
    log_in(email, PASSWORD, PostgresLoginDirectory(database), database.unit_of_work, stronger)
    with database.unit_of_work(owner.tenant_id) as uow:
        account = uow.users.get(owner.user_id)
    assert account is not None and "m=2048,t=2" in account.password_hash
    log_in(email, PASSWORD, PostgresLoginDirectory(database), database.unit_of_work, stronger)


def test_change_password(database: Database) -> None:
    email = new_email()
    owner = sign_up("Atelier", email, PASSWORD, database.unit_of_work, CHEAP)
    with pytest.raises(Forbidden):
        change_password(owner, "not the password", "a brand new passphrase",
                        database.unit_of_work, CHEAP)
    with pytest.raises(InvalidInput):
        change_password(owner, PASSWORD, "short", database.unit_of_work, CHEAP)
    change_password(owner, PASSWORD, "a brand new passphrase", database.unit_of_work, CHEAP)
    directory = PostgresLoginDirectory(database)
    with pytest.raises(Unauthorized):
        log_in(email, PASSWORD, directory, database.unit_of_work, CHEAP)
    after = log_in(email, "a brand new passphrase", directory, database.unit_of_work, CHEAP)
    assert (after.user_id, after.tenant_id, after.credential_version) == (
        owner.user_id, owner.tenant_id, owner.credential_version + 1)


@pytest.mark.parametrize("sql", [
    "UPDATE users SET role = 'platform_admin'",
    "UPDATE users SET tenant_id = tenant_id",
    "UPDATE users SET email = 'attacker@example.fr'",
    "DELETE FROM users",
])
def test_application_cannot_escalate_or_move_users(database: Database, as_app: Connect,
                                                   sql: str) -> None:
    owner = sign_up("Target", new_email(), PASSWORD, database.unit_of_work, CHEAP)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run(sql)
        assert sqlstate(caught.value) == "42501"
    finally:
        app.close()


def test_users_of_other_tenants_are_invisible(database: Database, as_app: Connect) -> None:
    a = sign_up("A", new_email(), PASSWORD, database.unit_of_work, CHEAP)
    sign_up("B", new_email(), PASSWORD, database.unit_of_work, CHEAP)
    app = as_app()
    try:
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(a.tenant_id))
        assert app.run("SELECT id FROM users") == [[a.user_id]]
        app.run("ROLLBACK")
        # Without a tenant, only the exact-email lookup function answers.
        assert app.run("SELECT count(*) FROM users")[0][0] == 0
        assert app.run("SELECT count(*) FROM auth_login_lookup('%')")[0][0] == 0
        with pytest.raises(DatabaseError) as caught:  # a user for another tenant
            app.run("BEGIN")
            app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(a.tenant_id))
            app.run("INSERT INTO users (id, tenant_id, email, role, password_hash) VALUES "
                    "(:id, :other, 'x@example.fr', 'member', '$argon2id$x')",
                    id=str(uuid.uuid4()), other=str(uuid.uuid4()))
        assert sqlstate(caught.value) in {"42501", "23503"}
    finally:
        app.close()


def test_a_rehash_never_undoes_a_password_change(database: Database) -> None:
    """log_in read the old hash, then a change commits, then log_in rehashes."""
    email = new_email()
    owner = sign_up("Atelier", email, PASSWORD, database.unit_of_work, CHEAP)
    with database.unit_of_work(owner.tenant_id) as uow:
        account = uow.users.get(owner.user_id)
    assert account is not None
    change_password(owner, PASSWORD, "a brand new passphrase", database.unit_of_work, CHEAP)
    with database.unit_of_work(owner.tenant_id) as uow:  # the late rehash of the old one
        assert not uow.users.rehash(owner.user_id, account.password_hash, CHEAP.hash(PASSWORD))
    directory = PostgresLoginDirectory(database)
    with pytest.raises(Unauthorized):
        log_in(email, PASSWORD, directory, database.unit_of_work, CHEAP)
    log_in(email, "a brand new passphrase", directory, database.unit_of_work, CHEAP)


@pytest.mark.parametrize("field,value", [("email", "a\x00b@example.fr"),
                                         ("tenant_name", "Atelier\x00"),
                                         ("email", "\ud800@example.fr"),
                                         ("password", "correct horse \ud800")])
def test_unstorable_text_is_a_422_not_a_500(database: Database, field: str, value: str) -> None:
    fields = {"tenant_name": "Atelier", "email": new_email(), "password": PASSWORD}
    fields[field] = value
    with pytest.raises(InvalidInput) as caught:
        sign_up(fields["tenant_name"], fields["email"], fields["password"],
                database.unit_of_work, CHEAP)
    assert [v.field for v in caught.value.violations] == [field]


@pytest.mark.parametrize("email,password", [("a\x00b@example.fr", PASSWORD),
                                            ("\ud800@example.fr", PASSWORD),
                                            ("x@example.fr", "\ud800 password")])
def test_unstorable_login_input_gets_the_uniform_401(database: Database, email: str,
                                                      password: str) -> None:
    with pytest.raises(Unauthorized):
        log_in(email, password, PostgresLoginDirectory(database), database.unit_of_work, CHEAP)


def test_application_cannot_create_a_platform_admin(database: Database, as_app: Connect) -> None:
    owner = sign_up("Target", new_email(), PASSWORD, database.unit_of_work, CHEAP)
    app = in_tenant(as_app, owner.tenant_id)
    try:
        with pytest.raises(DatabaseError) as caught:
            app.run("INSERT INTO users (id, tenant_id, email, role, password_hash) VALUES "
                    "(:id, :t, 'root@example.fr', 'platform_admin', :h)",
                    id=str(uuid.uuid4()), t=str(owner.tenant_id), h=CHEAP.hash(PASSWORD))
        assert sqlstate(caught.value) == "42501"
        app.run("ROLLBACK")
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(owner.tenant_id))
        with pytest.raises(DatabaseError) as caught:  # nor wind the credentials back
            app.run("UPDATE users SET credential_version = 0")
        assert sqlstate(caught.value) in {"EL001", "23514"}
    finally:
        app.close()
