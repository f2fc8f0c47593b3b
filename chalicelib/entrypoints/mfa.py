"""The HTTP edge for the second factor: enrol a TOTP secret, confirm it, pass it.

Six digits are guessable: every attempt is rate-limited per user and address,
and failures lock out with back-off (per address, so a password thief
elsewhere cannot keep the owner out). All three are reachable before the
second factor is passed: they are how it is.
"""

from __future__ import annotations

from chalice.app import Request, Response

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.entrypoints.access import EVERYONE, Rule, protect
from chalicelib.entrypoints.bodies import CodeBody, SecondFactorBody, parse
from chalicelib.entrypoints.guard import backoff, client_ip, secured
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.lockout import Backoff, guarded
from chalicelib.usecases.rate_limits import enforce
from chalicelib.usecases.sessions import token_hash

TOTP_ENROL = protect("totp_enrol", Rule(EVERYONE, writes=True, before_mfa=True))
TOTP_CONFIRM = protect("totp_confirm", Rule(EVERYONE, writes=True, before_mfa=True))
SECOND_FACTOR = protect("second_factor", Rule(EVERYONE, writes=True, before_mfa=True))


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
        enrolment = guarded(runtime.lockouts(), _second_factor_lockouts(principal, request),
                            lambda: start_enrolment(
                                principal, proof, token_hash(token),
                                runtime.database().unit_of_work, runtime.field_cipher(),
                                runtime.clock()))
        return Response(body={"secret": enrolment.secret, "otpauth_uri": enrolment.uri},
                        status_code=201)

    return secured(request, TOTP_ENROL, act)


def totp_confirm_route(request: Request) -> Response:
    from chalicelib.usecases.second_factor import confirm_enrolment

    def act(principal: Principal, token: str) -> Response:
        body = parse(request, CodeBody)
        _second_factor_attempt(principal, request)
        codes = guarded(runtime.lockouts(), _second_factor_lockouts(principal, request),
                        lambda: confirm_enrolment(
                            principal, body.code, token_hash(token),
                            runtime.database().unit_of_work, runtime.field_cipher(),
                            runtime.clock()))
        return Response(body={"recovery_codes": codes}, status_code=200)

    return secured(request, TOTP_CONFIRM, act)


def second_factor_route(request: Request) -> Response:
    from chalicelib.usecases.second_factor import pass_second_factor

    def act(principal: Principal, token: str) -> Response:
        body = parse(request, SecondFactorBody)
        if (body.code is None) == (body.recovery_code is None):
            raise InvalidInput([Violation("code", "give exactly one of code, recovery_code")])
        _second_factor_attempt(principal, request)
        left = guarded(runtime.lockouts(), _second_factor_lockouts(principal, request),
                       lambda: pass_second_factor(
                           principal, body.code, body.recovery_code, token_hash(token),
                           runtime.database().unit_of_work, runtime.field_cipher(),
                           runtime.clock()))
        return Response(body={"recovery_codes_left": left}, status_code=200)

    return secured(request, SECOND_FACTOR, act)


def _second_factor_attempt(principal: Principal, request: Request) -> None:
    """Six digits are guessable: few attempts per user and address (per
    address, so a password thief elsewhere cannot keep the owner out)."""
    enforce(runtime.rate_limiter(), [("second-factor", f"{principal.user_id}|{client_ip(request)}",
                                      settings().second_factor_per_user_per_minute)])


def _second_factor_lockouts(principal: Principal,
                            request: Request) -> list[tuple[str, Backoff]]:
    """As for passwords: early and long per address, later and shorter per user."""
    return [(f"second-factor-address|{principal.user_id}|{client_ip(request)}", backoff()),
            (f"second-factor-account|{principal.user_id}", backoff(account_wide=True))]
