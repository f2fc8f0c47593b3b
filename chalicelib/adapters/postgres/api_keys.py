"""A tenant's API keys, and the lookup by secret made before any tenant is known."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pg8000.native

from chalicelib.adapters.postgres.sql import Transactions
from chalicelib.ports import ApiKey

_API_KEY_COLUMNS = ("id, name, scopes, created_by, created_at, expires_at, last_used_at, "
                    "revoked_at")


def _api_key(row: list[Any]) -> ApiKey:
    return ApiKey(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], row[6], row[7])


class PostgresApiKeys:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, key: ApiKey, secret_hash: bytes) -> ApiKey:
        [row] = self._conn.run(
            "INSERT INTO api_keys (id, tenant_id, name, secret_hash, scopes, created_by, "
            "expires_at) VALUES (:id, :t, :name, :h, CAST(:scopes AS text[]), :by, :exp) "
            f"RETURNING {_API_KEY_COLUMNS}", id=str(key.key_id), t=self._tenant, name=key.name,
            h=secret_hash, scopes=list(key.scopes), by=str(key.created_by), exp=key.expires_at)
        return _api_key(row)

    def list(self) -> list[ApiKey]:
        rows = self._conn.run(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = :t "
                              "ORDER BY created_at, id", t=self._tenant)
        return [_api_key(row) for row in rows]

    def revoke(self, key_id: UUID) -> bool:
        rows = self._conn.run("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = :t "
                              "AND id = :id AND revoked_at IS NULL RETURNING 1",
                              t=self._tenant, id=str(key_id))
        return bool(rows)


class PostgresApiKeyDirectory:
    """API key lookups through auth_api_key(), outside any tenant."""

    def __init__(self, database: Transactions) -> None:
        self._database = database

    def find(self, secret_hash: bytes) -> tuple[UUID, UUID, tuple[str, ...]] | None:
        with self._database.transaction(None) as conn:
            rows = conn.run("SELECT key_id, tenant_id, scopes FROM auth_api_key(:h)",
                            h=secret_hash)
        return (rows[0][0], rows[0][1], tuple(rows[0][2])) if rows else None
