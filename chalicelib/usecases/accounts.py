"""Sign up, log in, change password: the credentials half of authentication.

These use cases decide who someone is, and from that alone, which tenant they act in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from chalicelib.domain.errors import Forbidden, InvalidInput, Violation, WrongPassword
from chalicelib.domain.passwords import Passwords
from chalicelib.domain.text import is_plain_email, text_problem
from chalicelib.ports import Account, LoginDirectory, UnitOfWork, UnitOfWorkFactory


@dataclass(frozen=True)
class Principal:
    """Who acts, for which tenant, with which role: never taken from a request body."""

    user_id: UUID
    tenant_id: UUID
    role: str
    credential_version: int = 1  # the password version this principal proved
    second_factor_passed: bool = False  # this session passed TOTP or a recovery code
    has_second_factor: bool = False  # the user has a confirmed TOTP
    # An API key acts as role "api_key" with these scopes (user_id is the key's id).
    scopes: frozenset[str] = frozenset()

    @property
    def needs_second_factor(self) -> bool:
        """Owners and admins always; anyone else once they enrolled one."""
        return (self.role in {"owner", "platform_admin"} or self.has_second_factor) \
            and not self.second_factor_passed


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_violations(email: str) -> list[Violation]:
    if text_problem(email) or len(email.encode("utf-8")) > 254 or not is_plain_email(email):
        return [Violation("email", "must be an email address such as name@example.fr")]
    return []


def tenant_name_violations(tenant_name: str) -> list[Violation]:
    name = tenant_name.strip()
    problem = text_problem(name)
    if problem or not 1 <= len(name) <= 200:
        return [Violation("tenant_name", problem or "must be 1 to 200 characters")]
    return []


def sign_up_violations(tenant_name: str, email: str, password: str) -> list[Violation]:
    """Every rule a sign-up breaks (email already normalised), in field order."""
    return (tenant_name_violations(tenant_name) + email_violations(email)
            + Passwords.policy_violations(password))


def create_owner(uow: UnitOfWork, tenant_id: UUID, tenant_name: str, email: str,
                 password_hash: str) -> Principal:
    """A new tenant and its owner, in the caller's transaction: both or neither."""
    account = Account(uuid.uuid4(), tenant_id, "owner", password_hash)
    uow.tenants.add(tenant_id, tenant_name.strip())
    uow.users.add(account, email)
    return Principal(account.user_id, tenant_id, "owner")


def sign_up(tenant_name: str, email: str, password: str, unit_of_work: UnitOfWorkFactory,
            passwords: Passwords) -> Principal:
    """A tenant and owner at once, the address unconfirmed: for operators and
    tests. People sign up over HTTP through usecases/signup.py, which confirms
    the address first and never says whether it already has an account."""
    email = normalise_email(email)
    violations = sign_up_violations(tenant_name, email, password)
    if violations:
        raise InvalidInput(violations)
    tenant_id = uuid.uuid4()
    with unit_of_work(tenant_id) as uow:
        return create_owner(uow, tenant_id, tenant_name, email, passwords.hash(password))


def log_in(email: str, password: str, directory: LoginDirectory,
           unit_of_work: UnitOfWorkFactory, passwords: Passwords) -> Principal:
    """The same answer, after the same work, for an unknown email, a malformed
    one and a wrong password."""
    email = normalise_email(email)
    account = None if email_violations(email) else directory.find(email)
    checked = passwords.check(account.password_hash if account else None, password)
    if account is None or not checked.ok:
        raise WrongPassword([Violation("email/password", "do not match an account")])
    if checked.needs_rehash:
        with unit_of_work(account.tenant_id) as uow:
            # Only if the password is still the one just checked: a change
            # committed meanwhile must not be undone.
            uow.users.rehash(account.user_id, account.password_hash, passwords.hash(password))
    return Principal(account.user_id, account.tenant_id, account.role,
                     account.credential_version)


def change_password(principal: Principal, current: str, new: str,
                    unit_of_work: UnitOfWorkFactory, passwords: Passwords) -> None:
    """The next credential version: every session opened before ends with it."""
    violations = Passwords.policy_violations(new, field="new_password")
    if violations:
        raise InvalidInput(violations)
    with unit_of_work(principal.tenant_id) as uow:
        account = uow.users.get(principal.user_id, lock=True)  # one change at a time
        if account is None or not passwords.check(account.password_hash, current).ok:
            raise Forbidden([Violation("current_password", "does not match")])
        uow.users.change_password(principal.user_id, passwords.hash(new))
