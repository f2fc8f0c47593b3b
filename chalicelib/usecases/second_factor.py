"""Enrol, confirm and pass the second factor (TOTP, or a recovery code).

The TOTP secret is sealed with the tenant's data key, bound to its user's row:
a copy in another row does not open. Replacing a second factor takes a session
that passed the current one *and* a fresh code (or recovery code) from it in
the request, so neither a stolen password nor a stolen session alone can swap
it; confirming the replacement ends the user's other sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.encryption import DecryptionRefused, FieldPlace
from chalicelib.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    Violation,
    WrongSecondFactor,
)
from chalicelib.domain.second_factor import (
    accepted_step,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
    recovery_code_hash,
)
from chalicelib.ports import Clock, UnitOfWork, UnitOfWorkFactory
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.field_encryption import FieldCipher


@dataclass(frozen=True)
class SecondFactorProof:
    code: str | None = None
    recovery_code: str | None = None


@dataclass(frozen=True)
class Enrolment:
    secret: str  # shown once, for the authenticator app
    uri: str  # otpauth:// for a QR code


def start_enrolment(principal: Principal, proof: SecondFactorProof, session_hash: bytes,
                    unit_of_work: UnitOfWorkFactory, cipher: FieldCipher,
                    clock: Clock) -> Enrolment:
    _may_replace(principal)
    secret = new_totp_secret()
    with unit_of_work(principal.tenant_id) as uow:
        if principal.has_second_factor:
            if proof.code is None and proof.recovery_code is None:
                raise InvalidInput([Violation("code", "replacing a second factor needs a "
                                              "current code (or a recovery code)")])
            _spend(uow, principal, proof, session_hash, cipher, clock)
        account_name = uow.users.email(principal.user_id) or str(principal.user_id)
        uow.second_factor.set_pending(principal.user_id, cipher.seal(
            uow.data_keys, _place(principal, "pending_secret"), secret))
    return Enrolment(secret, provisioning_uri(secret, account_name))


def confirm_enrolment(principal: Principal, code: str, session_hash: bytes,
                      unit_of_work: UnitOfWorkFactory, cipher: FieldCipher,
                      clock: Clock) -> list[str]:
    """The first good code makes the pending secret the user's second factor,
    passes it for this session, and returns fresh recovery codes (once)."""
    _may_replace(principal)
    with unit_of_work(principal.tenant_id) as uow:
        record = uow.second_factor.get(principal.user_id, lock=True)
        if record is None or record.pending_secret is None:
            raise Conflict([Violation("totp", "no enrolment is waiting: POST /mfa/totp first")])
        secret = _open(cipher, uow, principal, "pending_secret", record.pending_secret)
        step = accepted_step(secret, code, clock.now())
        if step is None or step <= record.last_step:
            raise WrongSecondFactor([Violation("code",
                                               "is not the current code of the new authenticator")])
        if not uow.second_factor.confirm(session_hash, cipher.seal(
                uow.data_keys, _place(principal, "secret"), secret), step):
            raise WrongSecondFactor([Violation("code", "was used already")])
        codes = new_recovery_codes()
        uow.second_factor.replace_recovery_codes(
            principal.user_id, [recovery_code_hash(principal.user_id, c) for c in codes])
        if record.secret is not None:  # a replacement: nobody else keeps the old one's pass
            uow.sessions.revoke_others(principal.user_id, session_hash)
    return codes


def pass_second_factor(principal: Principal, code: str | None, recovery_code: str | None,
                       session_hash: bytes, unit_of_work: UnitOfWorkFactory,
                       cipher: FieldCipher, clock: Clock) -> int:
    """Mark this session as having passed; returns the recovery codes left.
    A TOTP code is good once: a replay, even within its 30 seconds, is refused."""
    with unit_of_work(principal.tenant_id) as uow:
        _spend(uow, principal, SecondFactorProof(code, recovery_code), session_hash, cipher,
               clock)
        return uow.second_factor.recovery_codes_left(principal.user_id)


def _spend(uow: UnitOfWork, principal: Principal, proof: SecondFactorProof,
           session_hash: bytes, cipher: FieldCipher, clock: Clock) -> None:
    """Check the code (or recovery code) and spend it, passing the session."""
    store = uow.second_factor
    record = store.get(principal.user_id)
    if record is None or record.secret is None:
        raise Conflict([Violation("totp", "no second factor is enrolled: POST /mfa/totp")])
    if proof.recovery_code is not None:
        passed = store.pass_with_recovery_code(
            session_hash, recovery_code_hash(principal.user_id, proof.recovery_code))
        field = "recovery_code"
    else:
        secret = _open(cipher, uow, principal, "secret", record.secret)
        step = accepted_step(secret, proof.code or "", clock.now())
        passed = step is not None and store.pass_with_step(session_hash, step)
        field = "code"
    if not passed:
        raise WrongSecondFactor([Violation(field, "is wrong, expired or already used")])


def _may_replace(principal: Principal) -> None:
    if principal.has_second_factor and not principal.second_factor_passed:
        raise Forbidden([Violation("totp", "pass your current second factor before replacing it")])


def _place(principal: Principal, column: str) -> FieldPlace:
    return FieldPlace(principal.tenant_id, "user_totp", column, str(principal.user_id))


def _open(cipher: FieldCipher, uow: UnitOfWork, principal: Principal, column: str,
          sealed: bytes) -> str:
    try:
        return cipher.open(uow.data_keys, _place(principal, column), sealed)
    except DecryptionRefused:
        remedy = "enrol again" if column == "pending_secret" else "use a recovery code"
        raise Forbidden([Violation("totp", f"the stored secret failed its integrity check: "
                                   f"{remedy}")]) from None
