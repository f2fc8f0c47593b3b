"""Sign-up with a confirmed address: nothing exists until the mailed link
comes back, and the answer never says whether an address has an account."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib import runtime
from chalicelib.adapters.postgres import Database, sqlstate
from chalicelib.domain.errors import DomainError
from chalicelib.usecases.signup import confirm_sign_up, confirmation_token_hash
from tests.conftest import Connect, remember
from tests.integration.web import (
    PASSWORD,
    confirm_signup,
    confirmation_token,
    cookies,
    login,
    mails_to,
    post,
    request_signup,
    signup,
    within_one_minute_window,
)


def new_email() -> str:
    email = f"new.{uuid.uuid4().hex[:8]}@example.fr"
    remember(email)
    return email


def _rows_for(superuser: Connect, table: str, email: str) -> int:
    conn = superuser()
    try:
        [[count]] = conn.run(f"SELECT count(*) FROM {table} WHERE email = :e", e=email)
        return int(count)
    finally:
        conn.close()


def accounts_with(superuser: Connect, email: str) -> int:
    return _rows_for(superuser, "users", email)


def pending_rows(superuser: Connect, email: str) -> int:
    return _rows_for(superuser, "pending_signups", email)


def test_nothing_exists_until_the_link_comes_back(client: Any, superuser: Connect) -> None:
    email = new_email()
    asked = request_signup(client, email)
    assert asked.status_code == 202 and "Set-Cookie" not in asked.headers
    assert accounts_with(superuser, email) == 0 and pending_rows(superuser, email) == 1
    [mail] = mails_to(email)
    assert mail["Subject"] == "Confirm your einvoice account"
    token = confirmation_token(email)
    confirmed = confirm_signup(client, token)
    assert confirmed.status_code == 201 and confirmed.json_body["role"] == "owner"
    assert "__Host-session" in cookies(confirmed)
    assert accounts_with(superuser, email) == 1 and pending_rows(superuser, email) == 0
    again = confirm_signup(client, token)
    assert again.status_code == 404 and again.json_body["violations"][0]["field"] == "token"
    assert login(client, email).status_code == 200


def test_a_taken_address_gets_the_same_answer_and_a_notice(client: Any,
                                                           superuser: Connect) -> None:
    _, taken = signup(client)
    free = new_email()
    answers = [request_signup(client, who) for who in (taken, free)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json_body == answers[1].json_body
    drop = {"X-Request-Id"}
    assert {k for k in answers[0].headers if k not in drop} == \
        {k for k in answers[1].headers if k not in drop}
    notice = mails_to(taken)[-1]
    body = notice.get_body(("plain",))
    assert body is not None and "#token=" not in body.get_content()
    assert "already has one" in body.get_content()
    assert pending_rows(superuser, taken) == 0 and accounts_with(superuser, taken) == 1
    assert login(client, taken).status_code == 200  # the account is untouched


def test_invalid_input_lists_every_rule_and_mails_nothing(client: Any,
                                                         superuser: Connect) -> None:
    response = post(client, "/signup", {"email": "not-an-email"})
    assert response.status_code == 422
    assert [v["field"] for v in response.json_body["violations"]] == ["email"]
    email = new_email()
    request_signup(client, email)
    token = confirmation_token(email)
    bad = confirm_signup(client, token, password="short", tenant_name=" ")
    assert bad.status_code == 422
    assert {v["field"] for v in bad.json_body["violations"]} == {"tenant_name", "password"}
    assert pending_rows(superuser, email) == 1  # the link still works once the input is right
    assert confirm_signup(client, token).status_code == 201


@pytest.mark.parametrize("trick", [
    "owner(1)@example.fr", "boss,{email}", "<{email}>", "Boss <{email}>",
    "\"q\"@example.fr", "{email}, other@example.fr", "a..b@example.fr", "a@-x.example.fr"])
def test_only_a_plain_address_is_accepted(client: Any, trick: str) -> None:
    """A mail library parses header syntax into another address than the one
    checked and limited: such input is refused before it counts or mails."""
    email = new_email()
    response = post(client, "/signup", {"email": trick.format(email=email)})
    assert response.status_code == 422
    assert response.json_body["violations"][0]["field"] == "email"
    assert mails_to(email) == []


@pytest.mark.parametrize("token", ["", "x" * 10, "é" * 30, "A" * 43])
def test_unknown_or_malformed_tokens_are_refused(client: Any, token: str) -> None:
    response = confirm_signup(client, token)
    assert response.status_code in {404, 422}
    assert response.json_body["violations"][0]["field"] == "token"
    assert "Set-Cookie" not in response.headers


def test_an_expired_link_is_refused_then_purged(client: Any, superuser: Connect) -> None:
    email = new_email()
    request_signup(client, email)
    token = confirmation_token(email)
    conn = superuser()
    try:
        conn.run("UPDATE pending_signups SET expires_at = now() - interval '1 second' "
                 "WHERE email = :e", e=email)
    finally:
        conn.close()
    assert confirm_signup(client, token).status_code == 404
    from chalicelib.adapters.postgres import PostgresRetention
    from chalicelib.usecases.retention import purge_expired

    assert purge_expired(PostgresRetention(runtime.database()))["pending_signups"] >= 1
    assert pending_rows(superuser, email) == 0 and accounts_with(superuser, email) == 0


def test_two_links_for_one_address_make_one_account(client: Any, superuser: Connect) -> None:
    email = new_email()
    request_signup(client, email)
    first = confirmation_token(email)
    request_signup(client, email)
    second = confirmation_token(email)
    assert first != second
    assert confirm_signup(client, second).status_code == 201
    late = confirm_signup(client, first)
    assert late.status_code == 409 and late.json_body["violations"][0]["field"] == "email"
    assert accounts_with(superuser, email) == 1


def test_one_link_confirmed_by_racing_requests_makes_one_tenant(
        client: Any, database: Database, superuser: Connect) -> None:
    email = new_email()
    request_signup(client, email)
    token = confirmation_token(email)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def confirm() -> None:
        start.wait()
        try:
            confirm_sign_up(token, "Atelier", PASSWORD, database.unit_of_work, runtime.passwords())
            outcomes.append("created")
        except DomainError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["NotFound"] * 7 + ["created"]
    assert accounts_with(superuser, email) == 1


def test_the_table_keeps_no_token_and_the_app_cannot_read_it(
        client: Any, superuser: Connect, as_app: Connect) -> None:
    email = new_email()
    request_signup(client, email)
    token = confirmation_token(email)
    conn = superuser()
    try:
        [[stored]] = conn.run("SELECT token_hash FROM pending_signups WHERE email = :e",
                              e=email)
    finally:
        conn.close()
    assert stored == confirmation_token_hash(token) and token.encode() not in stored
    app = as_app()
    try:
        for sql in ("SELECT * FROM pending_signups", "DELETE FROM pending_signups",
                    "UPDATE pending_signups SET expires_at = now() + interval '1 year'",
                    "TRUNCATE pending_signups"):
            with pytest.raises(DatabaseError) as refused:
                app.run(sql)
            assert sqlstate(refused.value) == "42501", sql
        with pytest.raises(DatabaseError) as refused:  # a link that never expires
            app.run("SELECT signup_pend(:h, 'a@example.fr', interval '1 year')",
                    h=b"\x01" * 32)
        assert sqlstate(refused.value) == "22023"
    finally:
        app.close()


def test_per_address_limit_stops_mail_bombing(client: Any, database: Database) -> None:
    email = new_email()
    within_one_minute_window(database)
    codes = [request_signup(client, email).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert len(mails_to(email)) == 2


def test_who_asks_for_a_link_chooses_nothing_about_the_account(client: Any) -> None:
    """An attacker who requests a link for the victim's address cannot set
    the password (or name) of the account the victim then confirms."""
    victim = new_email()
    attacker_password = "attacker chose this one"
    remember(attacker_password)
    assert post(client, "/signup", {"email": victim, "password": attacker_password,
                                    "tenant_name": "Trap"}).status_code == 422
    request_signup(client, victim)
    confirmed = confirm_signup(client, confirmation_token(victim), tenant_name="Jeanne SARL")
    assert confirmed.status_code == 201
    stolen = post(client, "/login", {"email": victim, "password": attacker_password})
    assert stolen.status_code == 401
    assert login(client, victim).status_code == 200


def test_per_address_daily_limit(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings

    monkeypatch.setenv("EINVOICE_SIGNUP_PER_EMAIL_PER_MINUTE", "100")
    monkeypatch.setenv("EINVOICE_SIGNUP_PER_EMAIL_PER_DAY", "3")
    settings.cache_clear()
    try:
        email = new_email()
        codes = [request_signup(client, email).status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        assert len(mails_to(email)) == 3
    finally:
        monkeypatch.undo()
        settings.cache_clear()
