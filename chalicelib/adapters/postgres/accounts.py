"""Users, their sessions and second factors; the login and session lookups
made before any tenant is known (engine functions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres.sql import Transactions, data_refused, sqlstate
from chalicelib.domain.errors import Conflict, Unauthorized, Violation
from chalicelib.ports import Account, SessionFacts, TotpRecord

_ACCOUNT_COLUMNS = "id, tenant_id, role, password_hash, credential_version"


def _account(row: list[Any]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4])


class PostgresUsers:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, account: Account, email: str) -> None:
        try:
            self._conn.run(
                "INSERT INTO users (id, tenant_id, email, role, password_hash) "
                "VALUES (:id, :t, :email, :role, :hash)", id=str(account.user_id),
                t=str(account.tenant_id), email=email, role=account.role,
                hash=account.password_hash)
        except DatabaseError as exc:
            if sqlstate(exc) == "23505":
                raise Conflict([Violation("email", "is already registered")]) from None
            refused = data_refused(exc, "email")
            if refused:
                raise refused from None
            raise

    def get(self, user_id: UUID, *, lock: bool = False) -> Account | None:
        rows = self._conn.run(f"SELECT {_ACCOUNT_COLUMNS} FROM users WHERE tenant_id = :t "
                              f"AND id = :id{' FOR UPDATE' if lock else ''}",
                              t=self._tenant, id=str(user_id))
        return _account(rows[0]) if rows else None

    def rehash(self, user_id: UUID, checked_hash: str, new_hash: str) -> bool:
        rows = self._conn.run("UPDATE users SET password_hash = :new WHERE tenant_id = :t "
                              "AND id = :id AND password_hash = :old RETURNING 1",
                              new=new_hash, old=checked_hash, t=self._tenant, id=str(user_id))
        return bool(rows)

    def change_password(self, user_id: UUID, new_hash: str) -> int:
        [[version]] = self._conn.run(
            "UPDATE users SET password_hash = :h, credential_version = credential_version + 1, "
            "password_changed_at = now() WHERE tenant_id = :t AND id = :id "
            "RETURNING credential_version", h=new_hash, t=self._tenant, id=str(user_id))
        return int(version)

    def email(self, user_id: UUID) -> str | None:
        rows = self._conn.run("SELECT email FROM users WHERE tenant_id = :t AND id = :id",
                              t=self._tenant, id=str(user_id))
        return str(rows[0][0]) if rows else None


class PostgresSessions:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, token_hash: bytes, user_id: UUID, credential_version: int,
            lifetime: timedelta, idle: timedelta) -> None:
        try:
            self._conn.run(
                "INSERT INTO sessions (token_hash, tenant_id, user_id, credential_version, "
                "expires_at, idle_timeout) VALUES (:h, :t, :u, :v, "
                "now() + make_interval(secs => :life), make_interval(secs => :idle))",
                h=token_hash, t=self._tenant, u=str(user_id), v=credential_version,
                life=lifetime.total_seconds(), idle=idle.total_seconds())
        except DatabaseError as exc:
            if sqlstate(exc) == "EL004":
                raise Unauthorized([Violation("password", "changed meanwhile: log in again")]) \
                    from None
            raise

    def revoke(self, token_hash: bytes, user_id: UUID) -> None:
        self._conn.run("UPDATE sessions SET revoked_at = now() WHERE token_hash = :h "
                       "AND user_id = :u AND revoked_at IS NULL", h=token_hash, u=str(user_id))

    def revoke_others(self, user_id: UUID, keep_token_hash: bytes) -> None:
        self._conn.run("UPDATE sessions SET revoked_at = now() WHERE tenant_id = :t "
                       "AND user_id = :u AND token_hash <> :h AND revoked_at IS NULL",
                       t=self._tenant, u=str(user_id), h=keep_token_hash)


class PostgresSecondFactors:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def get(self, user_id: UUID, *, lock: bool = False) -> TotpRecord | None:
        rows = self._conn.run(
            "SELECT secret, pending_secret, last_step FROM user_totp "
            f"WHERE tenant_id = :t AND user_id = :u{' FOR UPDATE' if lock else ''}",
            t=self._tenant, u=str(user_id))
        if not rows:
            return None
        secret, pending, last_step = rows[0]
        return TotpRecord(bytes(secret) if secret is not None else None,
                          bytes(pending) if pending is not None else None, int(last_step))

    def set_pending(self, user_id: UUID, sealed: bytes) -> None:
        self._conn.run("INSERT INTO user_totp (user_id, tenant_id, pending_secret) "
                       "VALUES (:u, :t, :s) ON CONFLICT (user_id) "
                       "DO UPDATE SET pending_secret = EXCLUDED.pending_secret",
                       u=str(user_id), t=self._tenant, s=sealed)

    def confirm(self, session_hash: bytes, sealed: bytes, step: int) -> bool:
        [[done]] = self._conn.run("SELECT second_factor_confirm(:h, :s, :step)",
                                  h=session_hash, s=sealed, step=step)
        return bool(done)

    def pass_with_step(self, session_hash: bytes, step: int) -> bool:
        # Atomic: of two requests with the same code, the second finds the
        # step already recorded once the first commits.
        [[done]] = self._conn.run("SELECT second_factor_pass_step(:h, :step)",
                                  h=session_hash, step=step)
        return bool(done)

    def replace_recovery_codes(self, user_id: UUID, digests: list[bytes]) -> None:
        self._conn.run("DELETE FROM recovery_codes WHERE tenant_id = :t AND user_id = :u",
                       t=self._tenant, u=str(user_id))
        for digest in digests:
            self._conn.run("INSERT INTO recovery_codes (tenant_id, user_id, code_hash) "
                           "VALUES (:t, :u, :h)", t=self._tenant, u=str(user_id), h=digest)

    def pass_with_recovery_code(self, session_hash: bytes, digest: bytes) -> bool:
        [[done]] = self._conn.run("SELECT second_factor_pass_recovery(:h, :d)",
                                  h=session_hash, d=digest)
        return bool(done)

    def recovery_codes_left(self, user_id: UUID) -> int:
        [[left]] = self._conn.run("SELECT count(*) FROM recovery_codes WHERE tenant_id = :t "
                                  "AND user_id = :u AND used_at IS NULL",
                                  t=self._tenant, u=str(user_id))
        return int(left)


class PostgresSessionDirectory:
    """Session lookups through auth_session_touch(), outside any tenant."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def touch(self, token_hash: bytes) -> SessionFacts | None:
        with self._database.transaction(None) as conn:
            rows = conn.run("SELECT user_id, tenant_id, role, credential_version, mfa_passed, "
                            "has_totp FROM auth_session_touch(:h)", h=token_hash)
        return SessionFacts(*rows[0]) if rows else None


class PostgresLoginDirectory:
    """Login lookups through auth_login_lookup(), outside any tenant."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def find(self, email: str) -> Account | None:
        with self._database.transaction(None, read_only=True) as conn:
            rows = conn.run("SELECT user_id, tenant_id, role, password_hash, credential_version "
                            "FROM auth_login_lookup(:e)", e=email)
        return _account(rows[0]) if rows else None
