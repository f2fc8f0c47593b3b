"""One tenant's wrapped data keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pg8000.native

from chalicelib.ports import StoredDataKey, WrappedKey


class PostgresDataKeys:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self.tenant_id = tenant_id

    def _one(self, where: str, **params: Any) -> StoredDataKey | None:
        rows = self._conn.run(
            "SELECT version, master_key_id, wrapped FROM tenant_data_keys "
            f"WHERE tenant_id = :t {where}", t=self._tenant, **params)
        if not rows:
            return None
        return StoredDataKey(rows[0][0], WrappedKey(rows[0][1], bytes(rows[0][2])))

    def latest(self) -> StoredDataKey | None:
        return self._one("ORDER BY version DESC LIMIT 1")

    def get(self, version: int) -> StoredDataKey | None:
        return self._one("AND version = :v", v=version)

    def add(self, key: StoredDataKey) -> bool:
        [[added]] = self._conn.run("SELECT data_key_add(:v, :m, :w)", v=key.version,
                                   m=key.wrapped.master_key_id, w=key.wrapped.blob)
        return bool(added)
