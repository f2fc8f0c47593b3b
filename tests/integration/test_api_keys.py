"""API keys for machine callers: scoped, tenant-bound, expiring, revocable,
stored hashed; and the ledger read routes they (and people) can call."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib import runtime
from chalicelib.adapters.postgres import sqlstate
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock
from tests.integration.web import Session, enrolled_owner, login, member_of, owner_with_key


def bearer(client: Any, path: str, secret: str, method: str = "GET", **headers: str) -> Any:
    return getattr(client, method.lower())(
        path, headers={"Authorization": f"Bearer {secret}", **headers})


def append(tenant: str, n: int) -> None:
    for i in range(n):
        append_ledger(AppendRequest(tenant_id=uuid.UUID(tenant), kind="test.entry",
                                    payload={"i": i}), runtime.database().unit_of_work,
                      FrozenClock())


def test_a_key_reads_its_own_tenant_ledger_only(client: Any, frozen: FrozenClock) -> None:
    owner, key = owner_with_key(client, frozen)
    other, other_key = owner_with_key(client, frozen)
    append(owner.body["tenant_id"], 3)
    append(other.body["tenant_id"], 5)
    assert key["secret"].startswith("eik_") and key["scopes"] == ["ledger:read"]
    verified = bearer(client, "/ledger/verify", key["secret"])
    assert verified.status_code == 200 and verified.json_body["ok"] is True
    assert verified.json_body["entries_checked"] == 3
    entries = bearer(client, "/ledger/entries?after=1&limit=10", key["secret"])
    assert [e["seq"] for e in entries.json_body["entries"]] == [2, 3]
    assert bearer(client, "/ledger/entries", other_key["secret"]).json_body["entries"][4][
        "seq"] == 5
    # The owner's session lists keys, never their secrets.
    keys = client.get("/api-keys", headers={"Cookie": owner.jar}).json_body["api_keys"]
    assert [k["id"] for k in keys] == [key["id"]] and "secret" not in keys[0]
    assert keys[0]["last_used_at"] is not None



def test_a_key_s_last_use_is_stamped_at_most_once_a_minute(
        client: Any, frozen: FrozenClock, superuser: Connect) -> None:
    """Every call is not a write: the stamp moves only when a minute old."""
    _, key = owner_with_key(client, frozen)

    def last_used() -> Any:
        conn = superuser()
        try:
            return conn.run("SELECT last_used_at FROM api_keys WHERE id = :k",
                            k=key["id"])[0][0]
        finally:
            conn.close()

    assert last_used() is None
    assert bearer(client, "/ledger/verify", key["secret"]).status_code == 200
    first = last_used()
    assert first is not None
    assert bearer(client, "/ledger/verify", key["secret"]).status_code == 200
    assert last_used() == first  # within the minute: not written again
    conn = superuser()
    try:
        conn.run("UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds' "
                 "WHERE id = :k", k=key["id"])
    finally:
        conn.close()
    assert bearer(client, "/ledger/verify", key["secret"]).status_code == 200
    assert last_used() >= first  # a minute old (moved back 61 s): stamped again, now



def test_a_key_revoked_while_its_lookup_waits_is_refused(
        client: Any, frozen: FrozenClock, superuser: Connect, as_app: Connect) -> None:
    """A lookup due to stamp the last use waits on a revocation in progress, then
    re-checks: once the revocation commits, the key is refused (and not stamped)."""
    _, key = owner_with_key(client, frozen)
    conn = superuser()
    try:
        [[secret_hash]] = conn.run("SELECT secret_hash FROM api_keys WHERE id = :k",
                                   k=key["id"])
    finally:
        conn.close()
    revoker = superuser()
    revoker.run("BEGIN")
    revoker.run("UPDATE api_keys SET revoked_at = now() WHERE id = :k", k=key["id"])
    found: list[Any] = []

    def lookup() -> None:
        app = as_app()
        try:
            found.extend(app.run("SELECT key_id FROM auth_api_key(:h)", h=bytes(secret_hash)))
        finally:
            app.close()

    worker = threading.Thread(target=lookup)
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive()  # waiting on the revocation's row lock (never stamped yet)
    revoker.run("COMMIT")
    revoker.close()
    worker.join(10)
    assert found == []
    conn = superuser()
    try:
        assert conn.run("SELECT last_used_at FROM api_keys WHERE id = :k",
                        k=key["id"]) == [[None]]
    finally:
        conn.close()


def test_a_key_is_not_a_person(client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen)
    for method, path in (("GET", "/me"), ("GET", "/api-keys"), ("POST", "/api-keys"),
                         ("POST", "/password"), ("POST", "/mfa"), ("POST", "/mfa/totp"),
                         ("POST", "/logout"), ("DELETE", f"/api-keys/{key['id']}")):
        answer = bearer(client, path, key["secret"], method, **{"Content-Type":
                                                                "application/json"})
        assert answer.status_code == 403, path
        assert answer.json_body["violations"][0]["field"] == "Authorization"


def test_unknown_revoked_and_expired_keys_get_one_401(client: Any, frozen: FrozenClock,
                                                      superuser: Connect) -> None:
    owner, key = owner_with_key(client, frozen)
    _, expiring = owner_with_key(client, frozen)
    conn = superuser()
    try:  # time passes: the superuser moves the stored expiry (triggers off)
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id",
                 id=expiring["id"])
    finally:
        conn.close()
    revoked = client.delete(f"/api-keys/{key['id']}",
                            headers={"Cookie": owner.jar, "X-CSRF-Token": owner.csrf})
    assert revoked.status_code == 204
    for header in (f"Bearer {key['secret']}", f"Bearer {expiring['secret']}",
                   "Bearer eik_" + "A" * 43, "Bearer " + key["secret"][4:], "Basic abc", "",
                   "Bearer " + "é" * 50, "Bearer eik_" + "x" * 500):
        answer = client.get("/ledger/verify", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.json_body["violations"][0]["field"] == "Authorization"
    again = client.delete(f"/api-keys/{key['id']}",
                          headers={"Cookie": owner.jar, "X-CSRF-Token": owner.csrf})
    assert again.status_code == 404


def test_a_key_header_wins_over_a_session_cookie(client: Any, frozen: FrozenClock) -> None:
    owner, _ = owner_with_key(client, frozen)
    answer = client.get("/ledger/verify", headers={"Cookie": owner.jar,
                                                   "Authorization": "Bearer eik_wrong"})
    assert answer.status_code == 401


def test_scopes_are_enforced() -> None:
    """Today one scope exists; the check is the same for any route's scope."""
    from chalicelib.domain.errors import Forbidden
    from chalicelib.entrypoints.access import EVERYONE, Rule, authorize
    from chalicelib.usecases.accounts import Principal

    key = Principal(uuid.uuid4(), uuid.uuid4(), "api_key", scopes=frozenset({"ledger:read"}))
    authorize(Rule(EVERYONE, api_scope="ledger:read"), key)
    with pytest.raises(Forbidden) as refused:
        authorize(Rule(EVERYONE, api_scope="invoices:write"), key)
    assert refused.value.violations[0].field == "scope"
    with pytest.raises(Forbidden):
        authorize(Rule(EVERYONE, api_scope="ledger:read"), Principal(
            uuid.uuid4(), uuid.uuid4(), "api_key", scopes=frozenset()))


def test_only_owners_manage_keys_and_bad_input_names_every_field(
        client: Any, frozen: FrozenClock) -> None:
    owner, _, _, _ = enrolled_owner(client, frozen)
    bad = owner.post(client, "/api-keys", {"name": " ", "scopes": ["ledger:read", "root"],
                                          "expires_in_days": 400})
    assert bad.status_code == 422
    assert [v["field"] for v in bad.json_body["violations"]] == [
        "name", "scopes", "expires_in_days"]
    assert owner.post(client, "/api-keys", {"name": "x", "scopes": []}).status_code == 422
    assert client.delete("/api-keys/not-a-uuid", headers={
        "Cookie": owner.jar, "X-CSRF-Token": owner.csrf}).status_code == 422
    for role in ("member", "accountant"):
        person = Session(login(client, member_of(owner.body["tenant_id"], role)))
        refused = person.post(client, "/api-keys", {"name": "mine", "scopes": ["ledger:read"]})
        assert refused.status_code == 403 and refused.json_body["violations"][0]["field"] == "role"
        assert client.get("/api-keys", headers={"Cookie": person.jar}).status_code == 403
        # People of every role may read the ledger (the accountant is read-only).
        assert client.get("/ledger/verify", headers={"Cookie": person.jar}).status_code == 200


def test_key_management_needs_csrf_with_a_cookie(client: Any, frozen: FrozenClock) -> None:
    owner, _, _, _ = enrolled_owner(client, frozen)
    answer = client.post("/api-keys", headers={"Cookie": owner.jar,
                                               "Content-Type": "application/json"},
                         body='{"name": "x", "scopes": ["ledger:read"]}')
    assert answer.status_code == 403
    assert answer.json_body["violations"][0]["field"] == "X-CSRF-Token"


def test_query_parameters_are_checked(client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen)
    for query in ("after=-1", "limit=0", "limit=1001", "after=1e3", "limit=٣", "after="):
        answer = bearer(client, f"/ledger/entries?{query}", key["secret"])
        assert answer.status_code == 422, query


def test_the_secret_is_not_stored_and_keys_cannot_be_altered(
        client: Any, frozen: FrozenClock, as_app: Connect, superuser: Connect) -> None:
    owner, key = owner_with_key(client, frozen)
    conn = superuser()
    try:
        dump = conn.run("SELECT api_keys::text FROM api_keys WHERE id = :id", id=key["id"])
        assert key["secret"] not in dump[0][0] and key["secret"][4:] not in dump[0][0]
    finally:
        conn.close()
    tenant = uuid.UUID(owner.body["tenant_id"])
    attacks = [
        ("UPDATE api_keys SET scopes = '{ledger:read,ledger:read}' WHERE id = :id", "42501"),
        ("UPDATE api_keys SET expires_at = now() + interval '5 years' WHERE id = :id", "42501"),
        ("DELETE FROM api_keys WHERE id = :id", "42501"),
        ("INSERT INTO api_keys (id, tenant_id, name, secret_hash, scopes, created_by, "
         "expires_at) SELECT gen_random_uuid(), tenant_id, 'x', sha256('y'), scopes, "
         "created_by, now() + interval '2 years' FROM api_keys WHERE id = :id", "EL002"),
        ("INSERT INTO api_keys (id, tenant_id, name, secret_hash, scopes, created_by, "
         "expires_at) SELECT gen_random_uuid(), tenant_id, 'x', sha256('y'), '{admin}', "
         "created_by, now() + interval '2 days' FROM api_keys WHERE id = :id", "23514"),
    ]
    app = in_tenant(as_app, tenant)
    try:
        app.run("UPDATE api_keys SET revoked_at = now() WHERE id = :id", id=key["id"])
        attacks.append(("UPDATE api_keys SET revoked_at = NULL WHERE id = :id", "EL001"))
        app.run("SAVEPOINT s")
        for sql, state in attacks:
            with pytest.raises(DatabaseError) as refused:
                app.run(sql, id=key["id"])
            assert sqlstate(refused.value) == state, sql
            app.run("ROLLBACK TO SAVEPOINT s")
    finally:
        app.close()


def test_even_the_table_owner_cannot_widen_a_key(client: Any, frozen: FrozenClock,
                                                 as_owner: Connect) -> None:
    owner, key = owner_with_key(client, frozen)
    conn = in_tenant(as_owner, uuid.UUID(owner.body["tenant_id"]))
    try:
        for sql in ("UPDATE api_keys SET expires_at = expires_at + interval '1 day'",
                    "UPDATE api_keys SET tenant_id = gen_random_uuid()",
                    "UPDATE api_keys SET secret_hash = sha256('known')"):
            conn.run("SAVEPOINT s")
            with pytest.raises(DatabaseError) as refused:
                conn.run(sql + " WHERE id = :id", id=key["id"])
            assert sqlstate(refused.value) == "EL001", sql
            conn.run("ROLLBACK TO SAVEPOINT s")
    finally:
        conn.close()


def test_another_tenant_cannot_see_or_revoke_a_key(client: Any, frozen: FrozenClock,
                                                   as_app: Connect) -> None:
    _, key = owner_with_key(client, frozen)
    intruder, _, _, _ = enrolled_owner(client, frozen)
    answer = client.delete(f"/api-keys/{key['id']}",
                           headers={"Cookie": intruder.jar, "X-CSRF-Token": intruder.csrf})
    assert answer.status_code == 404
    assert client.get("/api-keys", headers={"Cookie": intruder.jar}).json_body == {
        "api_keys": []}
    conn = in_tenant(as_app, uuid.UUID(intruder.body["tenant_id"]))
    try:
        assert conn.run("SELECT count(*) FROM api_keys WHERE id = :id", id=key["id"]) == [[0]]
    finally:
        conn.close()
    assert bearer(client, "/ledger/verify", key["secret"]).status_code == 200
