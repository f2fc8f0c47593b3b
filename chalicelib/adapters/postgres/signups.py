"""Sign-ups waiting for their address to be confirmed, and their claims."""

from __future__ import annotations

from datetime import timedelta

import pg8000.native

from chalicelib.adapters.postgres.sql import Transactions


class PostgresPendingSignUps:
    def __init__(self, database: Transactions) -> None:
        self._database = database

    def add(self, token_hash: bytes, email: str, lifetime: timedelta) -> None:
        with self._database.transaction(None) as conn:
            conn.run("SELECT signup_pend(:h, :e, make_interval(secs => :s))",
                     h=token_hash, e=email, s=lifetime.total_seconds())


class PostgresSignUpClaims:
    def __init__(self, conn: pg8000.native.Connection) -> None:
        self._conn = conn

    def take(self, token_hash: bytes) -> str | None:
        rows = self._conn.run("SELECT email FROM signup_take(:h)", h=token_hash)
        return str(rows[0][0]) if rows else None
