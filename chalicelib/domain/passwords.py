"""Passwords: argon2id (argon2-cffi), parameters from settings, rehashed on
the next successful login when the parameters change.

An unknown account is checked against a dummy hash with the same parameters,
so a failed login costs the same work whether or not the email exists.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from chalicelib.domain.errors import Violation
from chalicelib.domain.text import text_problem

MIN_LENGTH = 12
MAX_LENGTH = 256  # argon2 takes any length; a bound keeps requests cheap to refuse


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    needs_rehash: bool = False


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=parallelism, type=Type.ID)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    @staticmethod
    def policy_violations(password: str, field: str = "password") -> list[Violation]:
        problem = text_problem(password)
        if problem:
            return [Violation(field, problem)]
        if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
            return [Violation(field, f"must be {MIN_LENGTH} to {MAX_LENGTH} characters")]
        if not password.strip():
            return [Violation(field, "must not be only spaces")]
        return []

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def check(self, stored: str | None, password: str) -> PasswordCheck:
        """Verify `password`; with no stored hash, do the same work and fail.

        argon2 verifies with the stored hash's own (possibly older, cheaper)
        parameters: a failure against such a hash also pays for the dummy, so
        the time of a failed login does not tell dormant accounts apart.
        """
        if stored is None or text_problem(password):
            self._burn(password)
            return PasswordCheck(ok=False)
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            if self._needs_rehash(stored):
                self._burn(password)
            return PasswordCheck(ok=False)
        return PasswordCheck(ok=True, needs_rehash=self._needs_rehash(stored))

    def _needs_rehash(self, stored: str) -> bool:
        try:
            return bool(self._hasher.check_needs_rehash(stored))
        except InvalidHashError:
            return True

    def _burn(self, password: str) -> None:
        """One verification at the current parameters, always failing."""
        with contextlib.suppress(VerificationError, InvalidHashError):
            self._hasher.verify(self._dummy, password.encode("utf-8", "replace"))
