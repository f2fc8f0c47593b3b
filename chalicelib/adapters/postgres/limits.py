"""Rate limits and lockouts: counters shared by every instance, each hit or
failure counted in a short transaction of its own."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from chalicelib.adapters.postgres.sql import Transactions


def _bucket(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class PostgresRateLimiter:
    """Counts in rate_limit_hits through rate_limit_hit(), its own short
    transaction (a refused request must still be counted)."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def hit(self, key: str, window: timedelta, limit: int) -> tuple[bool, int]:
        bucket = _bucket(key)
        with self._database.transaction(None) as conn:
            [[allowed, retry_after]] = conn.run(
                "SELECT allowed, retry_after FROM rate_limit_hit(:b, "
                "make_interval(secs => :w), :n)", b=bucket, w=window.total_seconds(), n=limit)
        return bool(allowed), int(retry_after)


class PostgresLockouts:
    """lockout_wait/fail/clear(), each in its own short transaction (a failure
    must be counted even though the request that made it is refused)."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def _one(self, sql: str, **params: Any) -> Any:
        with self._database.transaction(None) as conn:
            return conn.run(sql, **params)[0][0]

    def wait(self, key: str) -> int:
        return int(self._one("SELECT lockout_wait(:b)", b=_bucket(key)))

    def fail(self, key: str, free: int, base: timedelta, cap: timedelta) -> int:
        return int(self._one("SELECT lockout_fail(:b, :f, make_interval(secs => :base), "
                             "make_interval(secs => :cap))", b=_bucket(key), f=free,
                             base=base.total_seconds(), cap=cap.total_seconds()))

    def clear(self, key: str) -> None:
        self._one("SELECT lockout_clear(:b)", b=_bucket(key))
