"""The HTTP guard: who is calling (session cookie or API key), CSRF, rate limits.

The tenant a request acts in comes only from its session or API key, never
from a header or a body. State-changing routes require the CSRF token in an
`X-CSRF-Token` header: it is derived from the session token (SHA-256 with a
domain prefix) and handed to the page in the readable `csrf` cookie, so a
cookie planted by someone else (cookie tossing) is worth nothing. What each
caller may then do is the access policy's (access.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.domain.errors import BadRequest, Forbidden, Violation
from chalicelib.entrypoints.access import Protected, authorize, bounded_body
from chalicelib.entrypoints.answers import answer
from chalicelib.logs import logger
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.api_keys import PREFIX as API_KEY_PREFIX
from chalicelib.usecases.api_keys import authenticate_api_key
from chalicelib.usecases.lockout import Backoff
from chalicelib.usecases.rate_limits import enforce
from chalicelib.usecases.sessions import SessionPolicy, authenticate

# `__Host-`: the browser accepts these only from this exact host over HTTPS,
# with Path=/ and no Domain, so a sibling subdomain cannot plant or overwrite them.
SESSION_COOKIE = "__Host-session"
CSRF_COOKIE = "__Host-csrf"

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Who the current request acts as, once known: read by the access log.
_caller: ContextVar[Principal | None] = ContextVar("caller", default=None)


def note_caller(principal: Principal | None) -> None:
    """The request acts as `principal` from now on (None: nobody yet)."""
    _caller.set(principal)


def current_caller() -> Principal | None:
    return _caller.get()


def secured(request: Request, route: Protected,
            action: Callable[[Principal, str], Response]) -> Response:
    """Authenticate, authorize, check CSRF, then act; any refusal is a clear 4xx."""
    rule = route.rule

    def act() -> Response:
        authorization = request.headers.get("authorization")
        token = None
        if authorization is not None:  # a machine: API key, no cookies, no CSRF
            principal = authenticate_api_key(authorization, runtime.api_key_directory())
        else:
            token = cookie(request, SESSION_COOKIE)
            principal = authenticate(token, runtime.session_directory())
        note_caller(principal)
        authorize(rule, principal)
        if rule.writes:
            if token is not None:
                check_csrf(request)
            if rule.rate_limited:
                enforce(runtime.rate_limiter(), [(f"writes-{route.view}", str(principal.user_id),
                                                  settings().writes_per_user_per_minute)])
        bounded_body(request)  # counted first; a route that reads no body is bounded too
        return action(principal, token or "")

    return answer(act)


# A credential never travels in a URL: servers, proxies and browsers log and
# keep URLs. These names (what the guard reads from headers and cookies, and
# the usual spellings elsewhere), and any value shaped like an API key, are
# refused in a query string on every route, before anything reads or logs it.
CREDENTIAL_PARAMETERS = frozenset({
    "api_key", "apikey", "key", "token", "access_token", "refresh_token", "id_token",
    "auth", "authorization", "bearer", "session", "session_token", "session_id",
    "csrf", "csrf_token", "x_csrf_token", "password", "secret", "client_secret",
})
CREDENTIAL_IN_QUERY = ("a credential is never accepted in a query string (URLs are logged and "
                       "kept): send an API key in the Authorization header, a session in its "
                       "cookie")


def credential_in_query(request: Request) -> BadRequest | None:
    """The refusal of a query string that carries a credential (None: it does not).

    Names the parameter when its name says credential; never quotes a value,
    nor a name that is itself shaped like a key."""
    params = request.query_params
    for name in params or {}:
        values = params.getlist(name) if params is not None else []
        spelled = name.lower().replace("-", "_").removeprefix("__host_")
        if spelled in CREDENTIAL_PARAMETERS:
            return BadRequest([Violation(name, CREDENTIAL_IN_QUERY)])
        if any(API_KEY_PREFIX in text for text in (name, *values)):
            return BadRequest([Violation("query string", CREDENTIAL_IN_QUERY)])
    return None


def csrf_token(session_token: str) -> str:
    digest = hashlib.sha256(b"einvoice-csrf-v1|" + session_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_csrf(request: Request) -> None:
    token = cookie(request, SESSION_COOKIE) or ""
    given = request.headers.get("x-csrf-token", "")
    if not token.isascii() or not given.isascii() or not hmac.compare_digest(
            csrf_token(token).encode(), given.encode()):
        raise Forbidden([Violation("X-CSRF-Token", "must echo this session's CSRF token (the "
                                   f"{CSRF_COOKIE} cookie, or csrf_token from login or /me)")])


def client_ip(request: Request) -> str:
    """The caller's address as the gateway saw it, never a client-set header
    such as X-Forwarded-For; an IPv6 caller is its /64 (one subscriber)."""
    identity = (request.context or {}).get("identity") or {}
    raw = str(identity.get("sourceIp") or "")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        logger.warning("request without a usable source address")
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def backoff(*, account_wide: bool = False) -> Backoff:
    """The lock-out after failed secrets: early and long per address, later
    and shorter account-wide (so nobody can lock an owner out from elsewhere)."""
    s = settings()
    base = timedelta(seconds=s.lockout_base_seconds)
    cap = s.lockout_account_cap_seconds if account_wide else s.lockout_cap_seconds
    return Backoff(s.lockout_account_after_failures if account_wide else s.lockout_after_failures,
                   base, max(base, timedelta(seconds=cap)))


def cookie(request: Request, name: str) -> str | None:
    """The one cookie called `name`; None if absent or sent more than once.

    Parsed by hand: the standard library's parser drops every cookie when one
    of them (often a third party's) is malformed.
    """
    found = [value.strip() for key, sep, value in (
        part.strip().partition("=") for part in request.headers.get("cookie", "").split(";"))
        if sep and key == name]
    return found[0] if len(found) == 1 and found[0] else None


def session_cookies(token: str, policy: SessionPolicy) -> list[str]:
    max_age = int(policy.lifetime.total_seconds())
    return [f"{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; "
            "SameSite=Strict",
            f"{CSRF_COOKIE}={csrf_token(token)}; Path=/; Max-Age={max_age}; Secure; "
            "SameSite=Strict"]


def cleared_cookies() -> list[str]:
    return [f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
            f"{CSRF_COOKIE}=; Path=/; Max-Age=0; Secure; SameSite=Strict"]
