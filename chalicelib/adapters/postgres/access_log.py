"""The access log, and the retention purges of what the law lets go."""

from __future__ import annotations

from chalicelib.adapters.postgres.sql import Transactions
from chalicelib.ports import AccessRecord


class PostgresRetention:
    """The retention purges, each one engine function that deletes only what
    the law's period allows (the app role cannot delete those rows itself)."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def purge_access_log(self) -> int:
        return self._purge("purge_access_log")

    def purge_pending_signups(self) -> int:
        return self._purge("purge_pending_signups")

    def _purge(self, function: str) -> int:
        with self._database.transaction(None) as conn:
            [[count]] = conn.run(f"SELECT {function}()")
        return int(count)


class PostgresAccessLog:
    """One row per request, in its own transaction, in the caller's tenant
    (none for anonymous calls): RLS checks the row's tenant is that one."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def record(self, entry: AccessRecord) -> None:
        with self._database.transaction(entry.tenant_id) as conn:
            conn.run("INSERT INTO access_log (tenant_id, principal, method, route, status, "
                     "latency_ms, request_id, ip_prefix) VALUES (:t, :p, :m, :r, :s, :l, :q, :i)",
                     t=str(entry.tenant_id) if entry.tenant_id else None, p=entry.principal,
                     m=entry.method, r=entry.route, s=entry.status, l=entry.latency_ms,
                     q=entry.request_id, i=entry.ip_prefix)
