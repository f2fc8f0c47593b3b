"""argon2id passwords: policy, verification, rehash on new parameters, and the
same work for an unknown account as for a wrong password."""

from __future__ import annotations

import pytest

from chalicelib.domain.passwords import Passwords

CHEAP = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


def test_hash_is_argon2id_and_verifies() -> None:
    passwords = Passwords(**CHEAP)
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert passwords.check(stored, "correct horse battery").ok
    assert not passwords.check(stored, "correct horse batterY").ok
    assert not passwords.check("not a hash", "correct horse battery").ok


def test_rehash_is_asked_when_parameters_change() -> None:
    old = Passwords(**CHEAP).hash("correct horse battery")
    stronger = Passwords(time_cost=2, memory_kib=2048, parallelism=1)
    checked = stronger.check(old, "correct horse battery")
    assert checked.ok and checked.needs_rehash
    assert not stronger.check(stronger.hash("correct horse battery"),
                              "correct horse battery").needs_rehash


def test_unknown_account_costs_one_full_verification() -> None:
    passwords = Passwords(**CHEAP)
    calls: list[str] = []
    real = passwords._hasher

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return bool(real.verify(stored, password))

    passwords._hasher = Counting()  # type: ignore[assignment]
    assert not passwords.check(None, "correct horse battery").ok
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")  # the dummy hash


@pytest.mark.parametrize("password,ok", [
    ("short", False), (" " * 20, False), ("x" * 257, False),
    ("twelve chars", True), ("é" * 12, True),
])
def test_policy(password: str, ok: bool) -> None:
    assert (Passwords.policy_violations(password) == []) is ok


def test_a_failure_against_an_outdated_hash_costs_a_current_verification() -> None:
    """Dormant accounts (hashes from cheaper parameters) must not answer faster."""
    old = Passwords(**CHEAP).hash("correct horse battery")
    current = Passwords(time_cost=2, memory_kib=2048, parallelism=1)
    calls: list[str] = []
    real = current._hasher

    class Counting:
        def verify(self, stored: str, password: object) -> bool:
            calls.append(stored)
            return bool(real.verify(stored, password))  # type: ignore[arg-type]

        def check_needs_rehash(self, stored: str) -> bool:
            return bool(real.check_needs_rehash(stored))

    current._hasher = Counting()  # type: ignore[assignment]
    assert not current.check(old, "wrong password here").ok
    assert calls == [old, current._dummy]
