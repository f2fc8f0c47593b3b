"""Sign-up with a confirmed address, answering alike whether or not the
address already has an account (so sign-up is no oracle for who is a client).

`POST /signup` takes an address only: a free one gets a one-time link, a taken
one a notice that someone tried. The tenant name and the password come with
the token, from whoever holds the mailbox: someone who asks for a link to
another's address chooses nothing about the account it may create.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from chalicelib.domain.errors import InvalidInput, NotFound, Violation
from chalicelib.domain.passwords import Passwords
from chalicelib.ports import LoginDirectory, Mail, Mailer, PendingSignUps, UnitOfWorkFactory
from chalicelib.usecases.accounts import (
    Principal,
    create_owner,
    email_violations,
    normalise_email,
    tenant_name_violations,
)

TOKEN_BYTES = 32


@dataclass(frozen=True)
class SignUpMail:
    confirm_url: str  # the page that posts the token back; the token goes in its fragment
    lifetime: timedelta


def confirmation_token_hash(token: str) -> bytes:
    return hashlib.sha256(b"einvoice-signup-v1|" + token.encode("utf-8")).digest()


def checked_email(email: str) -> str:
    """The address as it is stored, limited and mailed, or a 422."""
    email = normalise_email(email)
    violations = email_violations(email)
    if violations:
        raise InvalidInput(violations)
    return email


def request_sign_up(email: str, *, directory: LoginDirectory, pending: PendingSignUps,
                    mailer: Mailer, mail: SignUpMail) -> None:
    """Mail the address: a link if it is free, a notice if it has an account."""
    email = checked_email(email)
    if directory.find(email) is not None:
        mailer.send(Mail(email, "Someone tried to create an account with your address", (
            "Someone, perhaps you, asked to create an einvoice account with this address, "
            "which already has one. Nothing was changed.\n\n"
            "If it was you, log in instead. If it was not, you can ignore this message.\n")))
        return
    token = secrets.token_urlsafe(TOKEN_BYTES)
    pending.add(confirmation_token_hash(token), email, mail.lifetime)
    hours = int(mail.lifetime.total_seconds() // 3600)
    mailer.send(Mail(email, "Confirm your einvoice account", (
        "To create your einvoice account, open this link within "
        f"{hours} hours and choose your company name and password there:\n\n"
        f"{mail.confirm_url}#token={token}\n\n"
        "If you did not ask for an account, ignore this message: nothing is created.\n")))


def confirm_sign_up(token: str, tenant_name: str, password: str,
                    unit_of_work: UnitOfWorkFactory, passwords: Passwords) -> Principal:
    """The tenant and its owner, from a link used once and in time, with the
    name and password its holder gives now."""
    violations = tenant_name_violations(tenant_name) + Passwords.policy_violations(password)
    if not (token.isascii() and 20 <= len(token) <= 100):
        violations.insert(0, Violation("token", "must be the token from the confirmation link"))
    if violations:
        raise InvalidInput(violations)
    password_hash = passwords.hash(password)
    tenant_id = uuid.uuid4()
    with unit_of_work(tenant_id) as uow:
        email = uow.signups.take(confirmation_token_hash(token))
        if email is None:
            raise NotFound([Violation("token", "unknown, already used or expired: "
                                      "sign up again")])
        # The address got an account since (another confirmed link): 409, and
        # the rollback keeps this sign-up, which expires on its own.
        return create_owner(uow, tenant_id, tenant_name, email, password_hash)
