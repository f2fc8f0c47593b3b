"""Tenants (their empty chain is opened by the engine)."""

from __future__ import annotations

from uuid import UUID

import pg8000.native


class PostgresTenants:
    def __init__(self, conn: pg8000.native.Connection) -> None:
        self._conn = conn

    def add(self, tenant_id: UUID, name: str) -> None:
        self._conn.run("INSERT INTO tenants (id, name) VALUES (:id, :name)",
                       id=str(tenant_id), name=name)
