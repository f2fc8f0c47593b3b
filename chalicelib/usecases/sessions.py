"""Sessions: who is calling, from an opaque token alone.

The token is 256 random bits, shown once (to be set as an HttpOnly, Secure,
SameSite=Strict cookie by the HTTP layer); the database keeps
only its SHA-256. A fresh token is issued at every login, so a token planted
before login (fixation) is never promoted. A session ends at its absolute
expiry, after an idle period, at logout, or when its user's password changes.
All times are the database's: the application can neither back-date nor
extend a session (tests move stored times instead of freezing a clock).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from chalicelib.domain.errors import Unauthorized, Violation
from chalicelib.ports import SessionDirectory, UnitOfWorkFactory
from chalicelib.usecases.accounts import Principal


@dataclass(frozen=True)
class SessionPolicy:
    lifetime: timedelta = timedelta(hours=12)
    idle: timedelta = timedelta(minutes=30)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def open_session(principal: Principal, unit_of_work: UnitOfWorkFactory,
                 policy: SessionPolicy) -> str:
    """A fresh token for the credential version the login just checked; the
    engine's clock stamps it and refuses it if the password changed since."""
    token = secrets.token_urlsafe(32)
    with unit_of_work(principal.tenant_id) as uow:
        uow.sessions.add(token_hash(token), principal.user_id, principal.credential_version,
                         policy.lifetime, policy.idle)
    return token


def authenticate(token: str | None, directory: SessionDirectory) -> Principal:
    """The session's principal, or one uniform 401 whatever the reason."""
    found = None
    if token and len(token) <= 128 and token.isascii():
        found = directory.touch(token_hash(token))
    if found is None:
        raise Unauthorized([Violation("session", "missing, expired or revoked: log in")])
    return Principal(found.user_id, found.tenant_id, found.role, found.credential_version,
                     second_factor_passed=found.second_factor_passed,
                     has_second_factor=found.has_second_factor)


def close_session(principal: Principal, token: str, unit_of_work: UnitOfWorkFactory) -> None:
    with unit_of_work(principal.tenant_id) as uow:
        uow.sessions.revoke(token_hash(token), principal.user_id)
