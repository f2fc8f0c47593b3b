"""Generated cross-tenant attacks over HTTP (docs/security.md, "Tenancy: RLS FORCE"): every route of
the app, called by every kind of credential of tenant A, with every forgery
we know of (another tenant's ids in the path, tenant fields in headers, query
strings and bodies, tenant B's key id with A's key), must not show A a single
identifier or secret of tenant B, nor change any row of B, nor fail with a 5xx.

The route list comes from the app itself, so a new route is attacked the day
it is added.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from chalicelib import runtime
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.issue_invoice import issue_invoice
from tests.builders import recent
from tests.conftest import Connect
from tests.fakes import FrozenClock
from tests.integration.web import Session, login, member_of, owner_with_key

MARKER = f"victim-marker-{uuid.uuid4().hex}"

# Bodies that would pass validation on the routes that take one, so the
# forged fields are tried both alone and next to an otherwise valid request.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "api_keys_create": {"name": "attacker", "scopes": ["ledger:read"]},
    "password": {"current_password": "not the password", "new_password": "another passphrase"},
    "second_factor": {"code": "000000"},
    "totp_confirm": {"code": "000000"},
    "totp_enrol": {},
}
# Ending the attacker's own session would only make the remaining attempts
# trivially 401: those two routes are attacked in test_web_auth/test_sessions.
SELF_ENDING = {"logout", "password"}
# The public routes that read (the public writes, sign-up and login, are
# attacked in test_signup and test_web_auth).
PUBLIC_READS = {"health", "openapi_description"}


def victim_state(superuser: Connect, tenant: str) -> list[Any]:
    """Every row of the victim's tenant that an attack could change."""
    conn = superuser()
    try:
        return [conn.run(sql, t=tenant) for sql in (
            "SELECT id::text, name FROM tenants WHERE id = :t",
            "SELECT id::text, email, role, password_hash, credential_version FROM users "
            "WHERE tenant_id = :t ORDER BY id",
            "SELECT id::text, name, scopes, expires_at, revoked_at FROM api_keys "
            "WHERE tenant_id = :t ORDER BY id",
            "SELECT seq, encode(hash, 'hex') FROM ledger_entries WHERE tenant_id = :t "
            "ORDER BY seq",
            "SELECT count(*), count(revoked_at) FROM sessions s JOIN users u "
            "ON u.id = s.user_id WHERE u.tenant_id = :t",
            "SELECT count(*) FROM user_totp t JOIN users u ON u.id = t.user_id "
            "WHERE u.tenant_id = :t",
            "SELECT id::text, invoice_number, archive FROM invoices WHERE tenant_id = :t "
            "ORDER BY number",
            "SELECT updated_after, seen_at_cursor FROM pa_cursors WHERE tenant_id = :t",
            "SELECT flow_id, position, message_id, verdict FROM pa_status_messages "
            "WHERE tenant_id = :t ORDER BY flow_id, position")]
    finally:
        conn.close()


def victim_status(tenant: uuid.UUID, invoice: Any) -> str:
    """A status the PA reported for the victim's invoice (its poll, its cursor);
    the message id, which no answer to the attacker may show."""
    from datetime import UTC, datetime

    from chalicelib.adapters.pa import ClientCredentials, FlowServiceClient
    from chalicelib.documents.cdar import PLATFORM_STATUS, Party, build_status
    from chalicelib.secret import Secret
    from chalicelib.usecases.pa_lifecycle import poll_tenant
    from devstack.pa_standin import PaStandIn

    message_id = f"CDV-victim-{uuid.uuid4().hex[:12]}"
    at = datetime.now(UTC)
    pa = PaStandIn(client_secret="s3cr3t-for-the-attack-suite")
    with pa:
        pa.deliver(build_status(message_id=message_id, issued_at=at,
                                invoice_number=invoice.invoice_number, invoice_date=at.date(),
                                code=200, issuer=Party("999999999", "WK"),
                                recipients=[Party("999999999", "SE")],
                                type_code=PLATFORM_STATUS), tracking_id=str(invoice.invoice_id))
        client = FlowServiceClient(pa.base_url, ClientCredentials(
            pa.token_url, pa.client_id, Secret(pa.client_secret), clock=FrozenClock()))
        assert poll_tenant(tenant, client, runtime.pa_lifecycle_units(),
                           FrozenClock())["applied"] == 1
    return message_id


def attempts(routes: list[tuple[str, str, str]], victim: dict[str, str],
             credentials: dict[str, dict[str, str]]) -> Iterator[tuple[str, str, str,
                                                                        dict[str, str], str]]:
    """(label, method, path, headers, body) for every combination."""
    b = victim["tenant_id"]
    path_ids = [victim["key_id"], victim["user_id"], victim["invoice_id"], b,
                str(uuid.uuid4()), victim["invoice_id"].upper(), f"..%2F{victim['key_id']}",
                "00000000-0000-0000-0000-000000000000"]
    header_forgeries = [{}, {"X-Tenant-Id": b}, {"Tenant-Id": b},
                        {"X-Forwarded-For": "10.0.0.1", "X-Amzn-Tenant": b},
                        {"X-User-Id": victim["user_id"], "X-Role": "platform_admin"}]
    queries = ["", f"?tenant_id={b}", f"?tenant={b}&after=0&limit=1000"]
    for (view, method, template), (who, creds) in itertools.product(
            routes, credentials.items()):
        paths = [re.sub(r"\{[a-z_]+\}", i, template) for i in path_ids] \
            if "{" in template else [template]
        valid = VALID_BODIES.get(view, {})
        bodies = [valid, {**valid, "tenant_id": b},
                  {**valid, "tenant": {"id": b}, "user_id": victim["user_id"]}] \
            if method != "GET" else [None]
        for path, forged, query, body in itertools.product(paths, header_forgeries, queries,
                                                           bodies):
            headers = {**creds, **forged}
            raw = "" if body is None else json.dumps(body)
            if body is not None:
                headers["Content-Type"] = "application/json"
            yield f"{who} {method} {path}{query} {sorted(forged)} {raw[:60]}", method, \
                path + query, headers, raw


def test_a_thousand_generated_cross_tenant_attempts_leak_nothing(
        client: Any, frozen: FrozenClock, superuser: Connect) -> None:
    import app as app_module
    from chalicelib.entrypoints.access import route_table

    table = route_table()
    # Every protected route, and the public reads (health, the description):
    # what anyone may read must show nothing of tenant B to A's credentials either.
    assert table.public >= PUBLIC_READS
    ROUTES = set(table.rules) | PUBLIC_READS

    victim_owner, victim_key = owner_with_key(client, frozen)
    b = victim_owner.body["tenant_id"]
    append_ledger(AppendRequest(tenant_id=uuid.UUID(b), kind="note.added",
                                payload={"number": MARKER, "total": "120.00"}),
                  runtime.database().unit_of_work, FrozenClock())
    victim_member = member_of(b)
    victim_invoice = issue_invoice(uuid.UUID(b), "victim", recent(), runtime.invoice_ports())
    status_message = victim_status(uuid.UUID(b), victim_invoice.invoice)
    victim = {"tenant_id": b, "user_id": victim_owner.body["user_id"],
              "key_id": victim_key["id"], "invoice_id": str(victim_invoice.invoice.invoice_id)}
    secrets = {b, victim["user_id"], victim_key["id"], victim_key["secret"], MARKER,
               victim_member, victim_owner.token, victim_owner.csrf, victim["invoice_id"],
               victim_invoice.invoice.pdf_sha256.hex(), status_message}

    attacker_owner, attacker_key = owner_with_key(
        client, frozen, ["ledger:read", "invoices:read", "invoices:write"])
    a = attacker_owner.body["tenant_id"]
    sessions = {role: Session(login(client, member_of(a, role)))
                for role in ("member", "accountant")}
    credentials = {
        "owner": {"Cookie": attacker_owner.jar, "X-CSRF-Token": attacker_owner.csrf},
        **{role: {"Cookie": s.jar, "X-CSRF-Token": s.csrf} for role, s in sessions.items()},
        "api_key": {"Authorization": f"Bearer {attacker_key['secret']}"},
        # A's session cookie with B's CSRF token, and A's key beside B's session.
        "mixed_csrf": {"Cookie": attacker_owner.jar, "X-CSRF-Token": victim_owner.csrf},
        "mixed_auth": {"Cookie": victim_owner.jar,
                       "Authorization": f"Bearer {attacker_key['secret']}"},
    }
    routes = sorted({(entry.view_name, method, path)
                     for path, methods in app_module.app.routes.items()
                     for method, entry in methods.items()
                     if entry.view_name in ROUTES and entry.view_name not in SELF_ENDING})
    before = victim_state(superuser, b)
    assert before[2] and before[3], "the victim has keys and ledger entries to steal"
    assert before[7] and before[8], "the victim has a PA cursor and a status to steal"

    tried, statuses = 0, dict[int, int]()
    for label, method, path, headers, raw in attempts(routes, victim, credentials):
        answer = client.request(method, path, headers=headers, body=raw.encode())
        tried += 1
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        seen = answer.body.decode("utf-8", "replace") + json.dumps(dict(answer.headers))
        leaked = [s for s in secrets if s in seen or s.lower() in seen.lower()]
        assert not leaked, f"{label}: {answer.status_code} shows {leaked}"
        assert answer.status_code < 500, f"{label}: {answer.status_code} {seen[:300]}"

    assert tried >= 1000, tried
    assert victim_state(superuser, b) == before
    # The attempts were answered, not all refused at the door: the attacker's
    # own reads succeed (200) while the forgeries change nothing.
    assert statuses.get(200, 0) > 100 and statuses.get(404, 0) > 0, statuses
    # The victim still works normally.
    assert victim_owner.me(client).status_code == 200
    assert login(client, victim_member).status_code == 200
