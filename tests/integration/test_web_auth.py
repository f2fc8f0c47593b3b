"""The HTTP edge through Chalice's test client on the real stack: cookies,
CSRF, authentication, the authorization table, headers, errors."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from chalicelib.adapters.postgres import Database
from tests.integration.web import (
    PASSWORD,
    cookie_header,
    cookies,
    csrf_of,
    login,
    member_of,
    post,
    signup,
)


def test_signup_sets_strict_cookies_and_headers(client: Any) -> None:
    response, _ = signup(client)
    assert response.status_code == 201 and response.json_body["role"] == "owner"
    session, csrf = cookies(response)["__Host-session"], cookies(response)["__Host-csrf"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in session
    assert "HttpOnly" not in csrf and "Secure" in csrf and "SameSite=Strict" in csrf
    for jar in (session, csrf):  # what a browser requires of a __Host- cookie
        assert "Domain" not in jar and "; Path=/;" in jar and "Secure" in jar
    for name in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                 "Content-Security-Policy"):
        assert name in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_owner_without_totp_can_only_log_out(client: Any) -> None:
    response, _ = signup(client)
    jar = cookie_header(response)
    me = client.get("/me", headers={"Cookie": jar})
    assert me.status_code == 403 and me.json_body["violations"][0]["field"] == "totp"
    out = post(client, "/logout", {}, Cookie=jar, **{"X-CSRF-Token": csrf_of(response)})
    assert out.status_code == 204
    assert client.get("/me", headers={"Cookie": jar}).status_code == 401


def test_member_session_scopes_the_tenant_whatever_the_request_says(client: Any) -> None:
    owner, _ = signup(client)
    other, _ = signup(client)
    email = member_of(owner.json_body["tenant_id"])
    session = login(client, email)
    assert session.status_code == 200
    me = client.get("/me", headers={"Cookie": cookie_header(session),
                                    "X-Tenant-Id": other.json_body["tenant_id"]})
    assert me.status_code == 200
    assert me.json_body["tenant_id"] == owner.json_body["tenant_id"]
    assert me.json_body["role"] == "member"


def test_csrf_is_required_on_state_changing_routes(client: Any) -> None:
    owner, _ = signup(client)
    session = login(client, member_of(owner.json_body["tenant_id"]))
    jar = cookie_header(session)
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        refused = post(client, "/logout", {}, Cookie=jar, **headers)
        assert refused.status_code == 403
        assert refused.json_body["violations"][0]["field"] == "X-CSRF-Token"
    assert client.get("/me", headers={"Cookie": jar}).status_code == 200  # still logged in
    assert post(client, "/logout", {}, Cookie=jar,
                **{"X-CSRF-Token": csrf_of(session)}).status_code == 204
    assert client.get("/me", headers={"Cookie": jar}).status_code == 401


def test_password_change_ends_every_session(client: Any) -> None:
    owner, _ = signup(client)
    email = member_of(owner.json_body["tenant_id"], role="accountant")
    first, second = login(client, email), login(client, email)
    changed = post(client, "/password", {"current_password": PASSWORD,
                                         "new_password": "a brand new passphrase"},
                   Cookie=cookie_header(first), **{"X-CSRF-Token": csrf_of(first)})
    assert changed.status_code == 204 and "Max-Age=0" in cookies(changed)["__Host-session"]
    for old in (first, second):
        assert client.get("/me", headers={"Cookie": cookie_header(old)}).status_code == 401
    assert login(client, email).status_code == 401
    assert post(client, "/login", {"email": email,
                                   "password": "a brand new passphrase"}).status_code == 200


def test_login_failures_are_indistinguishable(client: Any) -> None:
    _, email = signup(client)
    wrong = post(client, "/login", {"email": email, "password": "not the password"})
    unknown = post(client, "/login", {"email": "nobody@example.fr", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json_body == unknown.json_body
    assert "Set-Cookie" not in wrong.headers


@pytest.mark.parametrize("body,field", [
    ("{not json", "body"),
    ({"email": "a@b.fr"}, "password"),
    ({"email": "a@b.fr", "password": PASSWORD, "tenant_id": str(uuid.uuid4())}, "tenant_id"),
    ({"email": "a@b.fr", "password": "x" * 5000}, "password"),
])
def test_bad_login_bodies_get_a_clear_422(client: Any, body: Any, field: str) -> None:
    response = post(client, "/login", body)
    assert response.status_code == 422
    assert field in {v["field"] for v in response.json_body["violations"]}


def test_missing_or_forged_session_cookie(client: Any) -> None:
    for jar in ("", "__Host-session=forged", "__Host-session=" + "A" * 43,
                "session=" + "A" * 43, "__Host-csrf=x; __Host-session=;"):
        response = client.get("/me", headers={"Cookie": jar} if jar else {})
        assert response.status_code == 401, jar
        assert response.json_body["violations"][0]["field"] == "session"


def test_health_carries_the_security_headers_too(client: Any, database: Database) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.headers["X-Frame-Options"] == "DENY"


def test_every_route_is_in_exactly_one_table() -> None:
    """A new route that forgets authorization cannot slip in silently public."""
    import app as app_module
    from chalicelib.entrypoints.access import route_table

    table = route_table()
    names = {entry.view_name for methods in app_module.app.routes.values()
             for entry in methods.values()}
    assert names == table.public | set(table.rules)
    assert not table.public & set(table.rules)
    assert sorted(table.declared) == sorted(set(table.declared)), "a route declared twice"


def test_every_route_is_guarded_by_its_own_rule(client: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared once is not enough: each view must hand the guard its own
    declaration, not a neighbour's (whose roles or scope could be wider)."""
    import importlib

    from chalice.app import Response

    import app as app_module
    from chalicelib.entrypoints.access import ROUTE_MODULES, route_table

    table = route_table()
    seen: list[str] = []

    def spy(request: Any, route: Any, action: Any) -> Response:
        seen.append(route.view)
        return Response(body={}, status_code=200)

    for name in ROUTE_MODULES:
        module = importlib.import_module(f"chalicelib.entrypoints.{name}")
        if hasattr(module, "secured"):
            monkeypatch.setattr(module, "secured", spy)
    checked = 0
    for path, methods in app_module.app.routes.items():
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
        for method, entry in methods.items():
            if entry.view_name in table.public:
                continue
            seen.clear()
            response = getattr(client, method.lower())(concrete)
            assert seen == [entry.view_name], (method, path, seen, response.status_code)
            checked += 1
    assert checked == len(table.rules)


def member_session(client: Any) -> Any:
    owner, _ = signup(client)
    return login(client, member_of(owner.json_body["tenant_id"]))


def test_a_planted_or_duplicated_csrf_cookie_is_refused(client: Any) -> None:
    session = member_session(client)
    token = cookies(session)["__Host-session"].split(";", 1)[0]
    for jar, header in ((f"{token}; __Host-csrf=evil", "evil"),
                        (f"{cookie_header(session)}; __Host-csrf=evil", "evil"),
                        (f"{token}; {token}", csrf_of(session))):
        response = post(client, "/logout", {}, Cookie=jar, **{"X-CSRF-Token": header})
        assert response.status_code in {401, 403}, jar
        field = response.json_body["violations"][0]["field"]
        assert field in {"X-CSRF-Token", "session"}
    assert client.get("/me", headers={"Cookie": cookie_header(session)}).status_code == 200


def test_a_malformed_third_party_cookie_does_not_log_out(client: Any) -> None:
    session = member_session(client)
    jar = 'pref={"a":1}; ' + cookie_header(session)
    assert client.get("/me", headers={"Cookie": jar}).status_code == 200


def test_deeply_nested_json_is_a_422(client: Any) -> None:
    """8,000 levels, within the login bound (deeper is first too large)."""
    response = post(client, "/login", "[" * 8_000 + "]" * 8_000)
    assert response.status_code == 422
    assert response.json_body["violations"][0]["field"] == "body"


def test_chalice_errors_carry_the_security_headers(client: Any) -> None:
    wrong_type = client.post("/login", body="x", headers={"Content-Type": "text/plain"})
    wrong_method = client.get("/logout")
    for response in (wrong_type, wrong_method):
        assert response.status_code in {405, 415}
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


def test_only_the_host_prefixed_cookie_counts(client: Any) -> None:
    """A cookie a sibling subdomain could set (no `__Host-` prefix) is not a
    session, even when it carries a real token."""
    session = member_session(client)
    token = cookies(session)["__Host-session"].split(";", 1)[0].split("=", 1)[1]
    assert client.get("/me", headers={"Cookie": f"session={token}"}).status_code == 401
    out = post(client, "/logout", {}, Cookie=f"__Host-session={token}; csrf={csrf_of(session)}")
    assert out.status_code == 403  # the CSRF token travels in the header, never a cookie


def test_csrf_token_is_given_in_the_body_for_a_sibling_origin_frontend(client: Any) -> None:
    session = member_session(client)
    assert session.json_body["csrf_token"] == csrf_of(session)
    me = client.get("/me", headers={"Cookie": cookie_header(session)})
    assert me.json_body["csrf_token"] == csrf_of(session)
    out = post(client, "/logout", {}, Cookie=cookie_header(session),
               **{"X-CSRF-Token": me.json_body["csrf_token"]})
    assert out.status_code == 204
