"""The HTTP edge for accounts: sign-up, its confirmation, log in and out,
the password, and who one is (`/me`).

Sign-up and login are public and rate-limited per address (login per account
and address too, then locked out with back-off); the rest need a session.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.entrypoints.access import EVERYONE, Rule, protect, public
from chalicelib.entrypoints.answers import answer
from chalicelib.entrypoints.bodies import (
    ChangePasswordBody,
    ConfirmBody,
    LogInBody,
    SignUpBody,
    parse,
)
from chalicelib.entrypoints.guard import (
    backoff,
    cleared_cookies,
    client_ip,
    csrf_token,
    note_caller,
    secured,
    session_cookies,
)
from chalicelib.usecases.accounts import Principal, change_password, log_in, normalise_email
from chalicelib.usecases.lockout import guarded
from chalicelib.usecases.rate_limits import DAY, enforce
from chalicelib.usecases.sessions import close_session, open_session

public("signup")
public("signup_confirm")
public("login")
ME = protect("me", Rule(EVERYONE))
LOG_OUT = protect("logout", Rule(EVERYONE, writes=True, before_mfa=True, rate_limited=False))
PASSWORD = protect("password", Rule(EVERYONE, writes=True))


def sign_up_route(request: Request) -> Response:
    """202 whether or not the address has an account: the mailbox learns which."""
    from chalicelib.usecases.signup import SignUpMail, checked_email, request_sign_up

    def act() -> Response:
        limits = settings()
        limiter = runtime.rate_limiter()
        enforce(limiter, [("signup-ip", client_ip(request), limits.signup_per_ip_per_minute)])
        email = checked_email(parse(request, SignUpBody).email)  # only a valid address counts
        try:
            enforce(limiter, [("signup-email", email, limits.signup_per_email_per_minute)])
        finally:
            enforce(limiter, [("signup-email-day", email, limits.signup_per_email_per_day)],
                    window=DAY)
        request_sign_up(email, directory=runtime.login_directory(),
                        pending=runtime.pending_sign_ups(), mailer=runtime.mailer(),
                        mail=SignUpMail(limits.signup_confirm_url,
                                        timedelta(hours=limits.signup_confirm_hours)))
        return Response(body={"status": "confirmation sent", "detail": (
            "If this address can be used, a link to confirm it was mailed to it. "
            f"It works once, within {limits.signup_confirm_hours} hours.")}, status_code=202)

    return answer(act)


def sign_up_confirm_route(request: Request) -> Response:
    """The link's token with the company name and password: the tenant, its
    owner and a session."""
    from chalicelib.usecases.signup import confirm_sign_up

    def act() -> Response:
        enforce(runtime.rate_limiter(), [("signup-ip", client_ip(request),
                                          settings().signup_per_ip_per_minute)])
        body = parse(request, ConfirmBody)
        principal = confirm_sign_up(body.token, body.tenant_name, body.password,
                                    runtime.database().unit_of_work, runtime.passwords())
        return _logged_in(principal, 201)

    return answer(act)


def log_in_route(request: Request) -> Response:
    def act() -> Response:
        limits = settings()
        ip = client_ip(request)
        limiter = runtime.rate_limiter()
        # Counted before the body is read: a flood of huge or broken bodies is
        # limited like any other attempt.
        enforce(limiter, [("login-ip", ip, limits.login_per_ip_per_minute)])
        body = parse(request, LogInBody)
        email = normalise_email(body.email)
        # Per account *and address*: nobody can lock an owner out from elsewhere.
        enforce(limiter, [("login-account", f"{email}|{ip}",
                           limits.login_per_account_per_minute)])
        database = runtime.database()
        principal = guarded(runtime.lockouts(), [
            (f"login-address|{email}|{ip}", backoff()),
            (f"login-account|{email}", backoff(account_wide=True))],
            lambda: log_in(body.email, body.password, runtime.login_directory(),
                           database.unit_of_work, runtime.passwords()))
        return _logged_in(principal, 200)

    return answer(act)


def me_route(request: Request) -> Response:
    return secured(request, ME, lambda principal, token: Response(
        body=_principal_body(principal, token), status_code=200))


def log_out_route(request: Request) -> Response:
    def act(principal: Principal, token: str) -> Response:
        close_session(principal, token, runtime.database().unit_of_work)
        return Response(body="", status_code=204, headers={"Set-Cookie": cleared_cookies()})

    return secured(request, LOG_OUT, act)


def change_password_route(request: Request) -> Response:
    def act(principal: Principal, _token: str) -> Response:
        body = parse(request, ChangePasswordBody)
        change_password(principal, body.current_password, body.new_password,
                        runtime.database().unit_of_work, runtime.passwords())
        # Every session ended, this one included: log in again.
        return Response(body="", status_code=204, headers={"Set-Cookie": cleared_cookies()})

    return secured(request, PASSWORD, act)


def _logged_in(principal: Principal, status: int) -> Response:
    note_caller(principal)
    token = open_session(principal, runtime.database().unit_of_work, runtime.session_policy())
    return Response(body=_principal_body(principal, token), status_code=status,
                    headers={"Set-Cookie": session_cookies(token, runtime.session_policy())})


def _principal_body(principal: Principal, token: str) -> dict[str, Any]:
    """With the CSRF token: a frontend on a sibling origin cannot read the
    API host's `__Host-` cookie, and CORS lets only that origin read this."""
    return {"user_id": str(principal.user_id), "tenant_id": str(principal.tenant_id),
            "role": principal.role, "csrf_token": csrf_token(token)}
