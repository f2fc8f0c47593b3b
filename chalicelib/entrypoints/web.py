"""The HTTP edge for people: cookies, CSRF, authentication, authorization.

Every route is listed, by its view name in app.py, either in PUBLIC or in
ROUTES, the single place that says who may call what (a test checks each
Chalice route is in exactly one).
The tenant a request acts in comes only from its session, never from a header
or a body. State-changing routes require the CSRF token in an `X-CSRF-Token`
header: it is derived from the session token (SHA-256 with a domain prefix)
and handed to the page in the readable `csrf` cookie, so a cookie planted by
someone else (cookie tossing) is worth nothing. Owners and platform admins (and
anyone who enrolled one) must pass their second factor in each session before
anything but enrolling it, passing it, or logging out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from chalice.app import Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    DomainError,
    Forbidden,
    InvalidInput,
    TooManyRequests,
    Violation,
)
from chalicelib.logs import logger
from chalicelib.ports import AccessRecord
from chalicelib.usecases.accounts import (
    Principal,
    change_password,
    log_in,
    normalise_email,
)
from chalicelib.usecases.api_keys import API_KEY_ROLE, authenticate_api_key
from chalicelib.usecases.lockout import Backoff, guarded
from chalicelib.usecases.rate_limits import DAY, enforce
from chalicelib.usecases.sessions import (
    SessionPolicy,
    authenticate,
    close_session,
    open_session,
    token_hash,
)

# `__Host-`: the browser accepts these only from this exact host over HTTPS,
# with Path=/ and no Domain, so a sibling subdomain cannot plant or overwrite them.
SESSION_COOKIE = "__Host-session"
CSRF_COOKIE = "__Host-csrf"

EVERYONE = frozenset({"owner", "accountant", "member", "platform_admin"})
OWNERS = frozenset({"owner"})
# Who may issue invoices and credit notes: not the accountant, who reads.
ISSUERS = frozenset({"owner", "member"})
# Who may seal a period: the owner and the accountant, whose act it is.
SEALERS = frozenset({"owner", "accountant"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    writes: bool = False  # state-changing: CSRF token required, rate-limited per user
    before_mfa: bool = False  # reachable before an owner/admin has passed TOTP
    # Each route has its own per-user bucket; logging out is never limited, so
    # a stolen session cannot keep its victim from ending it.
    rate_limited: bool = True
    # The scope an API key needs here; None: people only (cookie session).
    api_scope: str | None = None


PUBLIC = frozenset({"health", "signup", "signup_confirm", "login"})

ROUTES: dict[str, Rule] = {
    "me": Rule(EVERYONE),
    "logout": Rule(EVERYONE, writes=True, before_mfa=True, rate_limited=False),
    "password": Rule(EVERYONE, writes=True),
    "totp_enrol": Rule(EVERYONE, writes=True, before_mfa=True),
    "totp_confirm": Rule(EVERYONE, writes=True, before_mfa=True),
    "second_factor": Rule(EVERYONE, writes=True, before_mfa=True),
    "ledger_verify": Rule(EVERYONE, api_scope="ledger:read"),
    "ledger_entries": Rule(EVERYONE, api_scope="ledger:read"),
    "api_keys_create": Rule(OWNERS, writes=True),
    "api_keys_list": Rule(OWNERS),
    "api_key_revoke": Rule(OWNERS, writes=True),
    "invoices_issue": Rule(ISSUERS, writes=True, api_scope="invoices:write"),
    "credit_notes_issue": Rule(ISSUERS, writes=True, api_scope="invoices:write"),
    "invoice_batches": Rule(ISSUERS, writes=True, api_scope="invoices:write"),
    "invoices_list": Rule(EVERYONE, api_scope="invoices:read"),
    "invoice_get": Rule(EVERYONE, api_scope="invoices:read"),
    "invoice_pdf": Rule(EVERYONE, api_scope="invoices:read"),
    "invoice_xml": Rule(EVERYONE, api_scope="invoices:read"),
    "quotes_create": Rule(ISSUERS, writes=True, api_scope="invoices:write"),
    "quote_convert": Rule(ISSUERS, writes=True, api_scope="invoices:write"),
    "quote_get": Rule(EVERYONE, api_scope="invoices:read"),
    "closings_seal": Rule(SEALERS, writes=True, api_scope="closings:write"),
    "closings_list": Rule(EVERYONE, api_scope="ledger:read"),
    "closing_get": Rule(EVERYONE, api_scope="ledger:read"),
    "invoice_proof": Rule(EVERYONE, api_scope="ledger:read"),
}

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignUpBody(_Body):
    email: str = Field(max_length=1000)


class ConfirmBody(_Body):
    token: str = Field(max_length=200)
    tenant_name: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class LogInBody(_Body):
    email: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class ChangePasswordBody(_Body):
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


class ApiKeyBody(_Body):
    name: str = Field(max_length=1000)
    scopes: list[str] = Field(max_length=20)
    expires_in_days: int = 90


class CodeBody(_Body):
    code: str = Field(max_length=100)


class SecondFactorBody(_Body):
    code: str | None = Field(default=None, max_length=100)
    recovery_code: str | None = Field(default=None, max_length=100)


# Who the current request acts as, once known: read by the access log.
_caller: ContextVar[Principal | None] = ContextVar("caller", default=None)


def begin_request(request: Request) -> tuple[str, float]:
    """The request's id (the gateway's, else a new one) and its start time."""
    given = str((request.context or {}).get("requestId") or "")
    request_id = given if 1 <= len(given) <= 100 and given.isascii() and given.isprintable() \
        else str(uuid4())
    _caller.set(None)
    logger.set_correlation_id(request_id)
    return request_id, time.monotonic()


def record_access(request: Request, status: int, request_id: str, started: float) -> None:
    """Write the access-log row; a failure to write is logged, never hidden."""
    from chalicelib.adapters.postgres import PostgresAccessLog

    principal = _caller.get()
    kind = "api_key" if principal and principal.role == API_KEY_ROLE else "user"
    entry = AccessRecord(
        tenant_id=principal.tenant_id if principal else None,
        principal=f"{kind}:{principal.user_id}" if principal else None,
        method=request.method if request.method.isalpha() else "OTHER",
        route=str((request.context or {}).get("resourcePath") or "?")[:200],
        status=status, latency_ms=int((time.monotonic() - started) * 1000),
        request_id=request_id, ip_prefix=address_prefix(request))
    try:
        PostgresAccessLog(runtime.database()).record(entry)
    except Exception as exc:  # noqa: BLE001 - logged below by type only
        failure = type(exc).__name__
    else:
        return
    logger.error("access log write failed", extra={"reason": failure, "status": status})


def address_prefix(request: Request) -> str:
    """The caller's network, not the caller: IPv4 /24, IPv6 /48."""
    address = client_ip(request)
    if address == "unknown":
        return address
    network = ipaddress.ip_network(address, strict=False)
    prefix = 24 if network.version == 4 else 48
    return str(network.supernet(new_prefix=prefix))


def sign_up_route(request: Request) -> Response:
    """202 whether or not the address has an account: the mailbox learns which."""
    from chalicelib.adapters.postgres import PostgresLoginDirectory, PostgresPendingSignUps
    from chalicelib.usecases.signup import SignUpMail, checked_email, request_sign_up

    def act() -> Response:
        limits = settings()
        enforce(_limiter(), [("signup-ip", client_ip(request), limits.signup_per_ip_per_minute)])
        email = checked_email(parse(request, SignUpBody).email)  # only a valid address counts
        try:
            enforce(_limiter(), [("signup-email", email, limits.signup_per_email_per_minute)])
        finally:
            enforce(_limiter(), [("signup-email-day", email, limits.signup_per_email_per_day)],
                    window=DAY)
        database = runtime.database()
        request_sign_up(email, directory=PostgresLoginDirectory(database),
                        pending=PostgresPendingSignUps(database), mailer=runtime.mailer(),
                        mail=SignUpMail(limits.signup_confirm_url,
                                        timedelta(hours=limits.signup_confirm_hours)))
        return Response(body={"status": "confirmation sent", "detail": (
            "If this address can be used, a link to confirm it was mailed to it. "
            f"It works once, within {limits.signup_confirm_hours} hours.")}, status_code=202)

    return _answer(act)


def sign_up_confirm_route(request: Request) -> Response:
    """The link's token with the company name and password: the tenant, its
    owner and a session."""
    from chalicelib.usecases.signup import confirm_sign_up

    def act() -> Response:
        enforce(_limiter(), [("signup-ip", client_ip(request),
                              settings().signup_per_ip_per_minute)])
        body = parse(request, ConfirmBody)
        principal = confirm_sign_up(body.token, body.tenant_name, body.password,
                                    runtime.database().unit_of_work, runtime.passwords())
        return _logged_in(principal, 201)

    return _answer(act)


def log_in_route(request: Request) -> Response:
    def act() -> Response:
        body = parse(request, LogInBody)
        limits = settings()
        ip = client_ip(request)
        email = normalise_email(body.email)
        # Per account *and address*: nobody can lock an owner out from elsewhere.
        enforce(_limiter(), [
            ("login-ip", ip, limits.login_per_ip_per_minute),
            ("login-account", f"{email}|{ip}",
             limits.login_per_account_per_minute)])
        database = runtime.database()
        from chalicelib.adapters.postgres import PostgresLoginDirectory

        principal = guarded(_lockouts(), [
            (f"login-address|{email}|{ip}", _backoff()),
            (f"login-account|{email}", _backoff(account_wide=True))],
            lambda: log_in(body.email, body.password, PostgresLoginDirectory(database),
                           database.unit_of_work, runtime.passwords()))
        return _logged_in(principal, 200)

    return _answer(act)


def me_route(request: Request) -> Response:
    return secured(request, "me", lambda principal, token: Response(
        body=_principal_body(principal, token), status_code=200))


def log_out_route(request: Request) -> Response:
    def act(principal: Principal, token: str) -> Response:
        close_session(principal, token, runtime.database().unit_of_work)
        return Response(body="", status_code=204, headers={"Set-Cookie": cleared_cookies()})

    return secured(request, "logout", act)


def change_password_route(request: Request) -> Response:
    def act(principal: Principal, _token: str) -> Response:
        body = parse(request, ChangePasswordBody)
        change_password(principal, body.current_password, body.new_password,
                        runtime.database().unit_of_work, runtime.passwords())
        # Every session ended, this one included: log in again.
        return Response(body="", status_code=204, headers={"Set-Cookie": cleared_cookies()})

    return secured(request, "password", act)


def totp_enrol_route(request: Request) -> Response:
    """A replacement must carry a current code (or recovery code) in the body."""
    from chalicelib.usecases.second_factor import SecondFactorProof, start_enrolment

    def act(principal: Principal, token: str) -> Response:
        body = parse(request, SecondFactorBody)
        if body.code is not None and body.recovery_code is not None:
            raise InvalidInput([Violation("code", "give at most one of code, recovery_code")])
        proof = SecondFactorProof(body.code, body.recovery_code)
        if principal.has_second_factor:
            _second_factor_attempt(principal, request)
        enrolment = guarded(_lockouts(), _second_factor_lockouts(principal, request),
                            lambda: start_enrolment(
                                principal, proof, token_hash(token),
                                runtime.database().unit_of_work, runtime.field_cipher(),
                                runtime.clock()))
        return Response(body={"secret": enrolment.secret, "otpauth_uri": enrolment.uri},
                        status_code=201)

    return secured(request, "totp_enrol", act)


def totp_confirm_route(request: Request) -> Response:
    from chalicelib.usecases.second_factor import confirm_enrolment

    def act(principal: Principal, token: str) -> Response:
        body = parse(request, CodeBody)
        _second_factor_attempt(principal, request)
        codes = guarded(_lockouts(), _second_factor_lockouts(principal, request),
                        lambda: confirm_enrolment(
                            principal, body.code, token_hash(token),
                            runtime.database().unit_of_work, runtime.field_cipher(),
                            runtime.clock()))
        return Response(body={"recovery_codes": codes}, status_code=200)

    return secured(request, "totp_confirm", act)


def second_factor_route(request: Request) -> Response:
    from chalicelib.usecases.second_factor import pass_second_factor

    def act(principal: Principal, token: str) -> Response:
        body = parse(request, SecondFactorBody)
        if (body.code is None) == (body.recovery_code is None):
            raise InvalidInput([Violation("code", "give exactly one of code, recovery_code")])
        _second_factor_attempt(principal, request)
        left = guarded(_lockouts(), _second_factor_lockouts(principal, request),
                       lambda: pass_second_factor(
                           principal, body.code, body.recovery_code, token_hash(token),
                           runtime.database().unit_of_work, runtime.field_cipher(),
                           runtime.clock()))
        return Response(body={"recovery_codes_left": left}, status_code=200)

    return secured(request, "second_factor", act)


def ledger_verify_route(request: Request) -> Response:
    from chalicelib.usecases.verify_ledger import verify_ledger
    from chalicelib.usecases.witness import check_witness

    def act(principal: Principal, _token: str) -> Response:
        since = dict(request.query_params or {}).get("since_closing")
        since_id = path_uuid(since, "since_closing") if since is not None else None
        snapshot = runtime.database().snapshot
        result = verify_ledger(principal.tenant_id, snapshot, since_id)
        try:
            witness = check_witness(principal.tenant_id, snapshot, runtime.invoice_archive())
        except Exception as exc:  # noqa: BLE001 - the chain's own result still stands
            witness = {"ok": False, "witnessed": None, "reason": "witness_unavailable",
                       "detail": f"the archive could not be read ({type(exc).__name__})"}
        body = {**result.as_dict(), "ok": result.ok and witness["ok"],
                "since_closing": str(since_id) if since_id else None, "witness": witness}
        return Response(body=body, status_code=200)

    return secured(request, "ledger_verify", act)


def ledger_entries_route(request: Request) -> Response:
    """Entries after `after` (a seq), at most `limit` (1..1000), in order."""
    def act(principal: Principal, _token: str) -> Response:
        after = _query_int(request, "after", 0, 0, 2**62)
        limit = _query_int(request, "limit", 100, 1, 1000)
        with runtime.database().snapshot(principal.tenant_id) as uow:
            entries = [{"seq": e.seq, "kind": e.kind, "payload": e.payload,
                        "prev_hash": e.prev_hash.hex(), "hash": e.hash.hex()}
                       for e in itertools.islice(uow.ledger.entries(after), limit)]
        return Response(body={"entries": entries}, status_code=200)

    return secured(request, "ledger_entries", act)


def api_keys_create_route(request: Request) -> Response:
    from chalicelib.usecases.api_keys import create_api_key

    def act(principal: Principal, _token: str) -> Response:
        body = parse(request, ApiKeyBody)
        key, secret = create_api_key(principal, body.name, body.scopes, body.expires_in_days,
                                     runtime.database().unit_of_work, runtime.clock())
        return Response(body={**_api_key_body(key), "secret": secret}, status_code=201)

    return secured(request, "api_keys_create", act)


def api_keys_list_route(request: Request) -> Response:
    from chalicelib.usecases.api_keys import list_api_keys

    def act(principal: Principal, _token: str) -> Response:
        keys = list_api_keys(principal, runtime.database().unit_of_work)
        return Response(body={"api_keys": [_api_key_body(k) for k in keys]}, status_code=200)

    return secured(request, "api_keys_list", act)


def api_key_revoke_route(request: Request, key_id: str) -> Response:
    from chalicelib.usecases.api_keys import revoke_api_key

    def act(principal: Principal, _token: str) -> Response:
        revoke_api_key(principal, path_uuid(key_id, "key_id"),
                       runtime.database().unit_of_work)
        return Response(body="", status_code=204)

    return secured(request, "api_key_revoke", act)


def _api_key_body(key: Any) -> dict[str, Any]:
    def when(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {"id": str(key.key_id), "name": key.name, "scopes": list(key.scopes),
            "created_by": str(key.created_by), "created_at": when(key.created_at),
            "expires_at": when(key.expires_at), "last_used_at": when(key.last_used_at),
            "revoked_at": when(key.revoked_at)}


def path_uuid(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise InvalidInput([Violation(field, "must be a UUID")]) from None


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    params = request.query_params
    raw = params.get(name) if params is not None else None
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and low <= int(raw) <= high):
        raise InvalidInput([Violation(name, f"must be a whole number from {low} to {high}")])
    return int(raw)


def _second_factor_attempt(principal: Principal, request: Request) -> None:
    """Six digits are guessable: few attempts per user and address (per
    address, so a password thief elsewhere cannot keep the owner out)."""
    enforce(_limiter(), [("second-factor", f"{principal.user_id}|{client_ip(request)}",
                          settings().second_factor_per_user_per_minute)])


def _second_factor_lockouts(principal: Principal,
                            request: Request) -> list[tuple[str, Backoff]]:
    """As for passwords: early and long per address, later and shorter per user."""
    return [(f"second-factor-address|{principal.user_id}|{client_ip(request)}", _backoff()),
            (f"second-factor-account|{principal.user_id}", _backoff(account_wide=True))]


def secured(request: Request, route: str,
            action: Callable[[Principal, str], Response]) -> Response:
    """Authenticate, authorize, check CSRF, then act; any refusal is a clear 4xx."""
    rule = ROUTES[route]

    def act() -> Response:
        from chalicelib.adapters.postgres import PostgresApiKeyDirectory, PostgresSessionDirectory

        authorization = request.headers.get("authorization")
        token = None
        if authorization is not None:  # a machine: API key, no cookies, no CSRF
            principal = authenticate_api_key(authorization,
                                             PostgresApiKeyDirectory(runtime.database()))
        else:
            token = cookie(request, SESSION_COOKIE)
            principal = authenticate(token, PostgresSessionDirectory(runtime.database()))
        _caller.set(principal)
        authorize(rule, principal)
        if rule.writes:
            if token is not None:
                check_csrf(request)
            if rule.rate_limited:
                enforce(_limiter(), [(f"writes-{route}", str(principal.user_id),
                                      settings().writes_per_user_per_minute)])
        return action(principal, token or "")

    return _answer(act)


def authorize(rule: Rule, principal: Principal) -> None:
    if principal.role == API_KEY_ROLE:
        if rule.api_scope is None:
            raise Forbidden([Violation("Authorization", "API keys may not do this: "
                                       "people only")])
        if rule.api_scope not in principal.scopes:
            raise Forbidden([Violation("scope", f"this API key lacks {rule.api_scope}")])
        return
    if principal.role not in rule.roles:
        raise Forbidden([Violation("role", f"{principal.role} may not do this")])
    if principal.needs_second_factor and not rule.before_mfa:
        if principal.has_second_factor:
            raise Forbidden([Violation("totp", "pass your second factor first: POST /mfa")])
        raise Forbidden([Violation("totp", "owners and admins must enrol a second factor "
                                   "first: POST /mfa/totp, then POST /mfa/totp/confirm")])


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


def _lockouts() -> Any:
    from chalicelib.adapters.postgres import PostgresLockouts

    return PostgresLockouts(runtime.database())


def _backoff(*, account_wide: bool = False) -> Backoff:
    s = settings()
    base = timedelta(seconds=s.lockout_base_seconds)
    cap = s.lockout_account_cap_seconds if account_wide else s.lockout_cap_seconds
    return Backoff(s.lockout_account_after_failures if account_wide else s.lockout_after_failures,
                   base, max(base, timedelta(seconds=cap)))


def _limiter() -> Any:
    from chalicelib.adapters.postgres import PostgresRateLimiter

    return PostgresRateLimiter(runtime.database())


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


Model = TypeVar("Model", bound=BaseModel)


def parse(request: Request, model: type[Model]) -> Model:
    try:
        raw = json.loads(request.raw_body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput([Violation("body", "is not valid JSON (or nested too deeply)")]) \
            from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput([
            Violation(".".join(str(p) for p in e["loc"]) or "body", e["msg"])
            for e in exc.errors(include_input=False, include_url=False)]) from None


def _logged_in(principal: Principal, status: int) -> Response:
    _caller.set(principal)
    token = open_session(principal, runtime.database().unit_of_work, runtime.session_policy())
    return Response(body=_principal_body(principal, token), status_code=status,
                    headers={"Set-Cookie": session_cookies(token, runtime.session_policy())})


def _principal_body(principal: Principal, token: str) -> dict[str, Any]:
    """With the CSRF token: a frontend on a sibling origin cannot read the
    API host's `__Host-` cookie, and CORS lets only that origin read this."""
    return {"user_id": str(principal.user_id), "tenant_id": str(principal.tenant_id),
            "role": principal.role, "csrf_token": csrf_token(token)}


def _answer(act: Callable[[], Response]) -> Response:
    try:
        return act()
    except TooManyRequests as exc:
        return Response(body=exc.as_dict(), status_code=exc.status,
                        headers={"Retry-After": str(exc.retry_after)})
    except DomainError as exc:
        return Response(body=exc.as_dict(), status_code=exc.status)
    except ArchiveNotSafe as exc:  # configuration, not the caller: nothing was issued
        logger.error("archive refused", extra={"reason": str(exc)})
        return Response(body={"error": "ArchiveNotSafe", "detail": "the archive cannot keep "
                              "invoices locked for the legal period: no invoice is issued "
                              "until it can, and the operator is alerted"}, status_code=503,
                        headers={"Retry-After": "300"})

    except ArchiveTampered:
        logger.error("archive integrity check failed")
        return Response(body={"error": "ArchiveTampered", "detail": "the archived document "
                              "does not match the checksum the ledger holds; it is not "
                              "served, and the operator is alerted"}, status_code=502)
    except Exception as exc:  # noqa: BLE001 - answered 500, logged below by type only
        failure = type(exc).__name__
    if failure == "SchematronUnavailable":  # before any number is given: nothing issued
        logger.error("schematron unavailable")
        return Response(body={"error": failure, "detail": "the conformance check cannot run "
                              "right now: nothing was issued; retry with the same "
                              "Idempotency-Key"}, status_code=503, headers={"Retry-After": "30"})
    logger.error("request failed", extra={"reason": failure})
    return Response(body={"error": "internal error"}, status_code=500)
