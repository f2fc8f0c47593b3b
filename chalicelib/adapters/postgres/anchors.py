"""One tenant's anchors in PostgreSQL (0017_anchors.sql), and the two engine
functions the anchoring schedule lists its work with (ids only).

The engine checks that an anchor's digest is its closing's SHA-256, that a row
starts pending, that each update is one attempt moving forward only, that a
complete anchor and the identifying columns never change, and it stamps the
times; this adapter only asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import pg8000.native

from chalicelib.adapters.postgres.sql import Transactions
from chalicelib.ports import (
    AnchorStore,
    AnchorStoreFactory,
    ClosingDigest,
    StoredAnchor,
)

_COLUMNS = ("id, closing_id, method, endpoint, digest, status, proof, attempts, last_error, "
            "created_at, last_attempt_at, submitted_at, completed_at")


def _anchor(row: list[Any]) -> StoredAnchor:
    return StoredAnchor(UUID(str(row[0])), UUID(str(row[1])), row[2], row[3], bytes(row[4]),
                        row[5], bytes(row[6]) if row[6] is not None else None, int(row[7]),
                        row[8], row[9], row[10], row[11], row[12])


class PostgresAnchors:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def closing(self, closing_id: UUID) -> ClosingDigest | None:
        rows = self._conn.run("SELECT closing, closing_sha256 FROM closings "
                              "WHERE tenant_id = :t AND id = :id", t=self._tenant,
                              id=str(closing_id))
        return ClosingDigest(rows[0][0], bytes(rows[0][1])) if rows else None

    def ensure(self, anchor_id: UUID, closing_id: UUID, method: str, endpoint: str,
               digest: bytes) -> None:
        self._conn.run(
            "INSERT INTO anchors (tenant_id, id, closing_id, method, endpoint, digest) "
            "VALUES (:t, :id, :c, :m, :e, :d) "
            "ON CONFLICT (tenant_id, closing_id, method, endpoint) DO NOTHING",
            t=self._tenant, id=str(anchor_id), c=str(closing_id), m=method, e=endpoint,
            d=digest)

    def for_closing(self, closing_id: UUID) -> list[StoredAnchor]:
        rows = self._conn.run(f"SELECT {_COLUMNS} FROM anchors WHERE tenant_id = :t "
                              "AND closing_id = :c ORDER BY method, endpoint",
                              t=self._tenant, c=str(closing_id))
        return [_anchor(row) for row in rows]

    def get(self, anchor_id: UUID) -> StoredAnchor | None:
        rows = self._conn.run(f"SELECT {_COLUMNS} FROM anchors WHERE tenant_id = :t "
                              "AND id = :id", t=self._tenant, id=str(anchor_id))
        return _anchor(rows[0]) if rows else None

    def record(self, seen: StoredAnchor, status: str, proof: bytes | None,
               last_error: str | None) -> bool:
        rows = self._conn.run(
            "UPDATE anchors SET status = :s, proof = :p, attempts = attempts + 1, "
            "last_error = :err WHERE tenant_id = :t AND id = :id AND status = :was "
            "AND attempts = :n RETURNING id",
            s=status, p=proof, err=last_error, t=self._tenant, id=str(seen.anchor_id),
            was=seen.status, n=seen.attempts)
        return bool(rows)


@contextmanager
def anchor_store(database: Transactions, tenant_id: UUID) -> Iterator[PostgresAnchors]:
    """A tenant's anchors in a transaction of their own (Database.transaction)."""
    with database.transaction(tenant_id) as conn:
        yield PostgresAnchors(conn, tenant_id)


def read_anchors(database: Transactions, tenant_id: UUID, closing_id: UUID) -> list[StoredAnchor]:
    """A closing's anchors, in a read-only transaction of their own (call it
    outside any other transaction of this thread: Database has one connection
    per thread)."""
    with database.transaction(tenant_id, read_only=True) as conn:
        return PostgresAnchors(conn, tenant_id).for_closing(closing_id)


def anchor_stores(database: Transactions) -> AnchorStoreFactory:
    """The AnchorPorts.store factory over a Database."""

    def open_store(tenant_id: UUID) -> AbstractContextManager[AnchorStore]:
        return anchor_store(database, tenant_id)

    return open_store


def anchors_to_retry(database: Transactions, endpoints: list[str] | None = None,
                     limit: int = 500) -> list[tuple[UUID, UUID]]:
    """(tenant, anchor) of anchors not complete, least recently tried first
    (at `endpoints` only, when given)."""
    if endpoints is not None and not endpoints:
        return []
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id, anchor_id FROM anchors_to_retry(:n, :e)",
                        n=limit, e=endpoints)
    return [(UUID(str(t)), UUID(str(a))) for t, a in rows]


def closings_to_anchor(database: Transactions, endpoints: list[str], since: datetime,
                       limit: int = 500) -> list[tuple[UUID, UUID]]:
    """(tenant, closing) of closings sealed since `since` lacking an anchor at
    one of `endpoints`."""
    if not endpoints:
        return []
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id, closing_id FROM closings_to_anchor(:n, :e, :s)",
                        n=limit, e=endpoints, s=since)
    return [(UUID(str(t)), UUID(str(c))) for t, c in rows]
