"""Sign-up and the credentials use cases on fakes: a free address gets a
link, a taken one a notice; a link works once and in time; log in and
password change. Over HTTP on the real stack: tests/integration/test_signup.py
and tests/integration/test_accounts.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, WrongPassword
from chalicelib.domain.passwords import Passwords
from chalicelib.usecases.accounts import change_password, log_in, sign_up
from chalicelib.usecases.signup import SignUpMail, confirm_sign_up, request_sign_up
from tests.fakes import (
    FakeDatabase,
    FakeLoginDirectory,
    FakeMailer,
    FakePendingSignUps,
    FrozenClock,
    cheap_passwords,
)

PASSWORD = "correct horse battery"
LINK = SignUpMail("https://app.example.test/signup", timedelta(hours=24))
PASSWORDS = cheap_passwords()  # made once: argon2 is cheap, not free


@dataclass
class SigningUp:
    database: FakeDatabase
    mailer: FakeMailer
    clock: FrozenClock
    passwords: Passwords

    def request(self, email: str) -> None:
        request_sign_up(email, directory=FakeLoginDirectory(self.database),
                        pending=FakePendingSignUps(self.database), mailer=self.mailer,
                        mail=LINK)

    def token(self, email: str) -> str:
        [mail] = self.mailer.to(email)[-1:]
        found = re.search(r"#token=([A-Za-z0-9_-]+)", mail.body)
        assert found is not None, mail.body
        return found.group(1)

    def confirm(self, token: str, password: str = PASSWORD, name: str = "Atelier") -> Any:
        return confirm_sign_up(token, name, password, self.database.unit_of_work,
                               self.passwords)


@pytest.fixture
def signing_up() -> SigningUp:
    clock = FrozenClock()
    return SigningUp(FakeDatabase(clock), FakeMailer(), clock, PASSWORDS)


def fields(error: pytest.ExceptionInfo[Any]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_a_free_address_gets_a_link_that_makes_the_tenant_and_its_owner(
        signing_up: SigningUp) -> None:
    signing_up.request("  Owner@Example.TEST ")
    [mail] = signing_up.mailer.sent
    assert mail.to == "owner@example.test" and mail.subject == "Confirm your einvoice account"
    assert "within 24 hours" in mail.body

    owner = signing_up.confirm(signing_up.token("owner@example.test"), name="  Atelier  ")
    assert owner.role == "owner"
    records = signing_up.database.records(owner.tenant_id)
    assert records.name == "Atelier"
    assert [email for _, email in records.users.values()] == ["owner@example.test"]
    assert signing_up.database.pending_signups == {}


def test_a_taken_address_gets_a_notice_not_a_link(signing_up: SigningUp) -> None:
    sign_up("Atelier", "owner@example.test", PASSWORD, signing_up.database.unit_of_work,
            signing_up.passwords)
    signing_up.request("owner@example.test")
    [mail] = signing_up.mailer.sent
    assert mail.subject == "Someone tried to create an account with your address"
    assert "#token=" not in mail.body
    assert signing_up.database.pending_signups == {}


def test_a_malformed_address_is_refused_and_nothing_is_mailed(signing_up: SigningUp) -> None:
    with pytest.raises(InvalidInput) as refused:
        signing_up.request("not an address")
    assert fields(refused) == ["email"]
    assert signing_up.mailer.sent == [] and signing_up.database.pending_signups == {}


def test_a_link_works_once(signing_up: SigningUp) -> None:
    signing_up.request("owner@example.test")
    token = signing_up.token("owner@example.test")
    signing_up.confirm(token)
    with pytest.raises(NotFound) as again:
        signing_up.confirm(token)
    assert fields(again) == ["token"]
    assert len(signing_up.database.tenants) == 1


def test_an_unknown_or_expired_link_is_refused(signing_up: SigningUp) -> None:
    with pytest.raises(NotFound):
        signing_up.confirm("x" * 43)
    signing_up.request("owner@example.test")
    token = signing_up.token("owner@example.test")
    signing_up.clock.moment += timedelta(hours=24)
    with pytest.raises(NotFound):
        signing_up.confirm(token)
    assert signing_up.database.tenants == {}


def test_a_malformed_token_name_or_password_is_refused_first(signing_up: SigningUp) -> None:
    signing_up.request("owner@example.test")
    token = signing_up.token("owner@example.test")
    with pytest.raises(InvalidInput) as refused:
        signing_up.confirm("short", password="short", name=" ")
    assert fields(refused) == ["token", "tenant_name", "password"]
    # Refused before the link was used: it still works.
    assert signing_up.confirm(token).role == "owner"


def test_an_address_taken_since_the_link_was_mailed_keeps_the_link(
        signing_up: SigningUp) -> None:
    signing_up.request("owner@example.test")
    first = signing_up.token("owner@example.test")
    signing_up.request("owner@example.test")
    second = signing_up.token("owner@example.test")
    signing_up.confirm(first)
    with pytest.raises(Conflict):
        signing_up.confirm(second)
    # Rolled back with the transaction: the claim is still there, to expire on its own.
    assert len(signing_up.database.pending_signups) == 1
    assert len(signing_up.database.tenants) == 1


def test_log_in_answers_alike_for_every_wrong_pair(signing_up: SigningUp) -> None:
    owner = sign_up("Atelier", "Owner@example.test", PASSWORD,
                    signing_up.database.unit_of_work, signing_up.passwords)
    directory = FakeLoginDirectory(signing_up.database)
    found = log_in(" owner@EXAMPLE.test", PASSWORD, directory,
                   signing_up.database.unit_of_work, signing_up.passwords)
    assert (found.user_id, found.tenant_id, found.role) == (owner.user_id, owner.tenant_id,
                                                            "owner")
    for email, password in (("owner@example.test", "wrong password here"),
                            ("nobody@example.test", PASSWORD), ("not an email", PASSWORD)):
        with pytest.raises(WrongPassword) as refused:
            log_in(email, password, directory, signing_up.database.unit_of_work,
                   signing_up.passwords)
        assert fields(refused) == ["email/password"]


def test_a_sign_up_without_confirmation_checks_every_field(signing_up: SigningUp) -> None:
    with pytest.raises(InvalidInput) as refused:
        sign_up("", "nope", "short", signing_up.database.unit_of_work, signing_up.passwords)
    assert fields(refused) == ["tenant_name", "email", "password"]
    assert signing_up.database.tenants == {}


def test_a_password_change_needs_the_current_one_and_ends_older_sessions(
        signing_up: SigningUp) -> None:
    owner = sign_up("Atelier", "owner@example.test", PASSWORD,
                    signing_up.database.unit_of_work, signing_up.passwords)
    uow = signing_up.database.unit_of_work
    with pytest.raises(Forbidden):
        change_password(owner, "not the password", "another long password", uow,
                        signing_up.passwords)
    with pytest.raises(InvalidInput) as weak:
        change_password(owner, PASSWORD, "short", uow, signing_up.passwords)
    assert fields(weak) == ["new_password"]
    change_password(owner, PASSWORD, "another long password", uow, signing_up.passwords)
    [(account, _)] = signing_up.database.records(owner.tenant_id).users.values()
    assert account.credential_version == 2
    assert signing_up.passwords.check(account.password_hash, "another long password").ok
