"""Sign-up with a confirmed address, answering alike whether or not the
address already has an account (so sign-up is no oracle for who is a client).

A free address gets a one-time link; a taken one gets a notice saying someone
tried. Both paths hash the password (argon2id's cost dominates) and send one
mail. The tenant and its owner exist only once the link comes back.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from chalicelib.domain.errors import InvalidInput, NotFound, Violation
from chalicelib.domain.passwords import Passwords
from chalicelib.ports import (
    LoginDirectory,
    Mail,
    Mailer,
    PendingSignUp,
    PendingSignUps,
    UnitOfWorkFactory,
)
from chalicelib.usecases.accounts import (
    Principal,
    create_owner,
    normalise_email,
    sign_up_violations,
)

TOKEN_BYTES = 32


@dataclass(frozen=True)
class SignUpMail:
    confirm_url: str  # the page that posts the token back; the token goes in its fragment
    lifetime: timedelta


def confirmation_token_hash(token: str) -> bytes:
    return hashlib.sha256(b"einvoice-signup-v1|" + token.encode("utf-8")).digest()


def request_sign_up(tenant_name: str, email: str, password: str, *, directory: LoginDirectory,
                    pending: PendingSignUps, mailer: Mailer, passwords: Passwords,
                    mail: SignUpMail) -> None:
    """Validate, then mail the address: a link if it is free, a notice if not."""
    email = normalise_email(email)
    violations = sign_up_violations(tenant_name, email, password)
    if violations:
        raise InvalidInput(violations)
    password_hash = passwords.hash(password)
    if directory.find(email) is not None:
        mailer.send(Mail(email, "Someone tried to create an account with your address", (
            "Someone, perhaps you, asked to create an einvoice account with this address, "
            "which already has one. Nothing was changed.\n\n"
            "If it was you, log in instead. If it was not, you can ignore this message.\n")))
        return
    token = secrets.token_urlsafe(TOKEN_BYTES)
    pending.add(confirmation_token_hash(token),
                PendingSignUp(email, tenant_name.strip(), password_hash), mail.lifetime)
    hours = int(mail.lifetime.total_seconds() // 3600)
    mailer.send(Mail(email, "Confirm your einvoice account", (
        "To create your einvoice account, open this link within "
        f"{hours} hours:\n\n{mail.confirm_url}#token={token}\n\n"
        "If you did not ask for an account, ignore this message: nothing is created.\n")))


def confirm_sign_up(token: str, unit_of_work: UnitOfWorkFactory) -> Principal:
    """The tenant and its owner, from a link used once and in time."""
    if not (token.isascii() and 20 <= len(token) <= 100):
        raise InvalidInput([Violation("token", "must be the token from the confirmation link")])
    tenant_id = uuid.uuid4()
    with unit_of_work(tenant_id) as uow:
        found = uow.signups.take(confirmation_token_hash(token))
        if found is None:
            raise NotFound([Violation("token", "unknown, already used or expired: "
                                      "sign up again")])
        # The address got an account since (another confirmed link): 409, and
        # the rollback keeps this sign-up, which expires on its own.
        return create_owner(uow, tenant_id, found.tenant_name, found.email,
                            found.password_hash)
