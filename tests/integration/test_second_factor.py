"""TOTP second factor over HTTP on the real stack: enrolment, passing it per
session, replay refusal, recovery codes, sealed secrets, engine-level rules."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib import runtime
from chalicelib.adapters.postgres import sqlstate
from chalicelib.domain.errors import Forbidden
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.second_factor import pass_second_factor
from chalicelib.usecases.sessions import token_hash
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock
from tests.integration.web import (
    Session,
    code,
    enrolled_owner,
    login,
    member_of,
    signup,
)


def test_owner_reaches_nothing_but_enrolment_until_totp(client: Any, frozen: FrozenClock) -> None:
    response, _ = signup(client)
    session = Session(response)
    refused = session.me(client)
    assert refused.status_code == 403
    assert "POST /mfa/totp" in refused.json_body["violations"][0]["rule"]
    assert session.post(client, "/password", {"current_password": "x", "new_password": "y"}
                        ).status_code == 403
    secret = session.post(client, "/mfa/totp", {}).json_body["secret"]
    wrong = session.post(client, "/mfa/totp/confirm", {"code": code(secret, frozen, steps=5)})
    assert wrong.status_code == 403 and wrong.json_body["violations"][0]["field"] == "code"
    assert session.me(client).status_code == 403
    confirmed = session.post(client, "/mfa/totp/confirm", {"code": code(secret, frozen)})
    codes = confirmed.json_body["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert session.me(client).status_code == 200


def test_each_new_session_must_pass_and_a_code_works_once(client: Any,
                                                         frozen: FrozenClock) -> None:
    _, email, secret, _ = enrolled_owner(client, frozen)
    first, second = Session(login(client, email)), Session(login(client, email))
    assert first.me(client).status_code == 403
    # The code that confirmed enrolment (same step) is spent already.
    replay = first.post(client, "/mfa", {"code": code(secret, frozen)})
    assert replay.status_code == 403
    frozen.moment += timedelta(seconds=30)
    now = code(secret, frozen)
    assert first.post(client, "/mfa", {"code": now}).status_code == 200
    assert first.me(client).status_code == 200
    # The same code again, even from another session within its 30 seconds.
    assert second.post(client, "/mfa", {"code": now}).status_code == 403
    # An older step's code, still inside the drift window, is refused too.
    assert second.post(client, "/mfa", {"code": code(secret, frozen, steps=-1)}
                       ).status_code == 403
    assert second.me(client).status_code == 403
    # One step of drift ahead is accepted (the phone's clock runs fast).
    assert second.post(client, "/mfa", {"code": code(secret, frozen, steps=1)}
                       ).status_code == 200
    assert second.me(client).status_code == 200


def test_codes_outside_the_drift_window_and_garbage_are_refused(
        client: Any, frozen: FrozenClock, superuser: Connect) -> None:
    _, email, secret, _ = enrolled_owner(client, frozen)
    session = Session(login(client, email))
    for number, bad in enumerate(("+2 steps", "-2 steps", "12345", "1234567", "abcdef",
                                  "٠١٢٣٤٥", "")):
        if number == 4:  # five failures lock out (test_lockout.py): start afresh
            conn = superuser()
            conn.run("DELETE FROM lockouts")
            conn.close()
        frozen.moment += timedelta(seconds=90)
        steps = {"+2 steps": 2, "-2 steps": -2}.get(bad)
        answer = session.post(client, "/mfa", {
            "code": code(secret, frozen, steps=steps) if steps else bad})
        assert answer.status_code == 403, bad
    both = session.post(client, "/mfa", {"code": "123456", "recovery_code": "x"})
    assert both.status_code == 422
    assert session.me(client).status_code == 403


def test_recovery_codes_work_once_each(client: Any, frozen: FrozenClock) -> None:
    _, email, _, codes = enrolled_owner(client, frozen)
    first, second = Session(login(client, email)), Session(login(client, email))
    typed = codes[3].lower().replace("-", " ")  # case and separators do not matter
    used = first.post(client, "/mfa", {"recovery_code": typed})
    assert used.status_code == 200 and used.json_body["recovery_codes_left"] == 9
    assert first.me(client).status_code == 200
    assert second.post(client, "/mfa", {"recovery_code": codes[3]}).status_code == 403
    assert second.post(client, "/mfa", {"recovery_code": "AAAA-AAAA-AAAA-AAAA"}
                       ).status_code == 403
    assert second.me(client).status_code == 403


def test_replacing_the_second_factor_needs_it_passed_and_a_fresh_code(
        client: Any, frozen: FrozenClock) -> None:
    first, email, secret, old_codes = enrolled_owner(client, frozen)
    thief = Session(login(client, email))  # knows the password only
    assert thief.post(client, "/mfa/totp", {}).status_code == 403
    assert thief.post(client, "/mfa/totp/confirm", {"code": "000000"}).status_code == 403
    # A session that passed is not enough either (it may be a stolen cookie).
    bare = first.post(client, "/mfa/totp", {})
    assert bare.status_code == 422 and bare.json_body["violations"][0]["field"] == "code"
    assert first.post(client, "/mfa/totp", {"code": "000000"}).status_code == 403
    other = Session(login(client, email))
    frozen.moment += timedelta(seconds=30)
    assert other.post(client, "/mfa", {"code": code(secret, frozen)}).status_code == 200
    frozen.moment += timedelta(seconds=30)
    new_secret = first.post(client, "/mfa/totp", {"code": code(secret, frozen)}
                            ).json_body["secret"]
    assert new_secret != secret
    frozen.moment += timedelta(seconds=30)
    confirmed = first.post(client, "/mfa/totp/confirm", {"code": code(new_secret, frozen)})
    assert confirmed.status_code == 200
    assert other.me(client).status_code == 401  # other sessions end with the old factor
    assert first.me(client).status_code == 200
    later = Session(login(client, email))
    assert later.post(client, "/mfa", {"recovery_code": old_codes[0]}).status_code == 403
    frozen.moment += timedelta(seconds=30)
    assert later.post(client, "/mfa", {"code": code(secret, frozen)}).status_code == 403
    assert later.post(client, "/mfa", {"code": code(new_secret, frozen)}).status_code == 200


def test_a_member_may_enrol_and_then_must_pass_it(client: Any, frozen: FrozenClock) -> None:
    owner, _ = signup(client)
    email = member_of(owner.json_body["tenant_id"])
    member = Session(login(client, email))
    assert member.me(client).status_code == 200  # not mandatory for members
    secret = member.post(client, "/mfa/totp", {}).json_body["secret"]
    assert member.me(client).status_code == 200  # pending: not yet required
    assert member.post(client, "/mfa/totp/confirm", {"code": code(secret, frozen)}
                       ).status_code == 200
    later = Session(login(client, email))
    assert later.me(client).status_code == 403


def test_concurrent_replays_pass_exactly_once(client: Any, frozen: FrozenClock) -> None:
    _, email, secret, _ = enrolled_owner(client, frozen)
    sessions = [Session(login(client, email)) for _ in range(8)]
    frozen.moment += timedelta(seconds=30)
    now = code(secret, frozen)
    barrier = threading.Barrier(len(sessions))
    outcomes: list[str] = []

    def attempt(session: Session) -> None:
        database = runtime.database()  # one connection per thread
        principal = Principal(uuid.UUID(session.body["user_id"]),
                              uuid.UUID(session.body["tenant_id"]), "owner",
                              has_second_factor=True)
        barrier.wait()
        try:
            pass_second_factor(principal, now, None, token_hash(session.token),
                               database.unit_of_work, runtime.field_cipher(), frozen)
            outcomes.append("passed")
        except Forbidden:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["passed"] + ["refused"] * 7
    assert sum(s.me(client).status_code == 200 for s in sessions) == 1


def test_secrets_are_sealed_and_bound_to_their_row(client: Any, frozen: FrozenClock,
                                                   superuser: Connect) -> None:
    a_session, a_email, a_secret, _ = enrolled_owner(client, frozen)
    _, b_email, b_secret, _ = enrolled_owner(client, frozen)
    conn = superuser()
    try:
        rows = conn.run("SELECT u.email, t.secret FROM user_totp t JOIN users u "
                        "ON u.id = t.user_id WHERE u.email IN (:a, :b)", a=a_email, b=b_email)
        stored = {email: bytes(secret) for email, secret in rows}
        for secret in (a_secret, b_secret):
            raw = base64.b32decode(secret)
            assert all(secret.encode() not in v and raw not in v for v in stored.values())
        # B's ciphertext copied into A's row (same tenant would be no better:
        # the row id is bound too) does not open: A cannot pass with B's codes.
        conn.run("UPDATE user_totp SET secret = :s WHERE user_id = "
                 "(SELECT id FROM users WHERE email = :a)", s=stored[b_email], a=a_email)
    finally:
        conn.close()
    session = Session(login(client, a_email))
    frozen.moment += timedelta(seconds=30)
    for secret in (a_secret, b_secret):
        refused = session.post(client, "/mfa", {"code": code(secret, frozen)})
        assert refused.status_code == 403
        assert "integrity" in refused.json_body["violations"][0]["rule"]
    assert session.me(client).status_code == 403
    assert a_session.me(client).status_code == 200  # already passed before


@pytest.fixture
def enrolled(client: Any, frozen: FrozenClock) -> Iterator[tuple[Session, uuid.UUID]]:
    session, _, _, _ = enrolled_owner(client, frozen)
    yield session, uuid.UUID(session.body["tenant_id"])


def test_the_application_cannot_unset_or_rewind_the_second_factor(
        enrolled: tuple[Session, uuid.UUID], as_app: Connect) -> None:
    session, tenant = enrolled
    user = session.body["user_id"]
    attacks = [
        ("UPDATE user_totp SET secret = NULL, confirmed_at = NULL WHERE user_id = :u", "42501"),
        ("UPDATE user_totp SET last_step = 0 WHERE user_id = :u", "42501"),
        ("DELETE FROM user_totp WHERE user_id = :u", "42501"),
        ("UPDATE recovery_codes SET used_at = NULL WHERE user_id = :u", "42501"),
        # No session passes without spending a code in the same statement.
        ("UPDATE sessions SET mfa_at = now() WHERE user_id = :u", "42501"),
        ("SELECT second_factor_mark(token_hash) FROM sessions WHERE user_id = :u", "42501"),
        # A step from the future would refuse every code to come.
        ("SELECT second_factor_pass_step(token_hash, 4000000000) FROM sessions "
         "WHERE user_id = :u", "EL002"),
    ]
    conn = in_tenant(as_app, tenant)
    try:
        conn.run("SAVEPOINT s")
        for sql, state in attacks:
            with pytest.raises(DatabaseError) as refused:
                conn.run(sql, u=user)
            assert sqlstate(refused.value) == state, sql
            conn.run("ROLLBACK TO SAVEPOINT s")
        # A new session can never start with the second factor passed.
        [[inserted]] = conn.run(
            "INSERT INTO sessions (token_hash, tenant_id, user_id, credential_version, "
            "expires_at, idle_timeout, mfa_at) VALUES (:h, :t, :u, 1, now() + interval '1 h', "
            "interval '10 min', now()) RETURNING mfa_at", h=b"\x01" * 32, t=str(tenant), u=user)
        assert inserted is None
    finally:
        conn.close()


def test_even_the_table_owner_cannot_unset_or_rewind_it(
        enrolled: tuple[Session, uuid.UUID], as_owner: Connect) -> None:
    session, tenant = enrolled
    conn = in_tenant(as_owner, tenant)
    try:
        conn.run("SAVEPOINT s")
        for sql, state in (
                ("UPDATE user_totp SET secret = NULL, confirmed_at = NULL", "EL001"),
                ("UPDATE user_totp SET last_step = 0", "EL001"),
                ("UPDATE user_totp SET last_step = 4000000000", "EL002"),
                ("UPDATE sessions SET mfa_at = NULL", "EL001")):
            with pytest.raises(DatabaseError) as refused:
                conn.run(sql + " WHERE user_id = :u", u=session.body["user_id"])
            assert sqlstate(refused.value) == state, sql
            conn.run("ROLLBACK TO SAVEPOINT s")
    finally:
        conn.close()


def test_another_tenant_sees_no_second_factor_rows(enrolled: tuple[Session, uuid.UUID],
                                                   as_app: Connect, tenant: uuid.UUID) -> None:
    conn = in_tenant(as_app, tenant)  # a different, fresh tenant
    try:
        for table in ("user_totp", "recovery_codes"):
            assert conn.run(f"SELECT count(*) FROM {table}") == [[0]]
        assert conn.run("UPDATE user_totp SET pending_secret = NULL RETURNING 1") == []
    finally:
        conn.close()


def test_second_factor_attempts_are_rate_limited_per_user(
        client: Any, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings
    from tests.integration.web import within_one_minute_window

    monkeypatch.setenv("EINVOICE_SECOND_FACTOR_PER_USER_PER_MINUTE", "3")
    settings.cache_clear()
    try:
        within_one_minute_window(runtime.database())
        _, email, secret, _ = enrolled_owner(client, frozen)  # attempt 1: the confirmation
        sessions = [Session(login(client, email)) for _ in range(2)]
        answers = [sessions[i % 2].post(client, "/mfa", {"code": "000000"}).status_code
                   for i in range(3)]
        assert answers == [403, 403, 429]  # whichever session asks
        frozen.moment += timedelta(seconds=30)
        blocked = sessions[0].post(client, "/mfa", {"code": code(secret, frozen)})
        assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    finally:
        monkeypatch.undo()
        settings.cache_clear()
