"""The personal-data columns, sealed per tenant, table, column and row."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.postgres.data_keys import PostgresDataKeys
from chalicelib.ports import StoredDataKey

if TYPE_CHECKING:
    from chalicelib.usecases.field_encryption import FieldCipher


CipherSource = Callable[[], "FieldCipher"]


class _KeysOfOneTransaction:
    """A tenant's data keys, each read at most once per transaction."""

    def __init__(self, keys: PostgresDataKeys) -> None:
        self._keys = keys
        self.tenant_id = keys.tenant_id
        self._latest: StoredDataKey | None = None
        self._versions: dict[int, StoredDataKey] = {}

    def latest(self) -> StoredDataKey | None:
        if self._latest is None:
            self._latest = self._keys.latest()
        return self._latest

    def get(self, version: int) -> StoredDataKey | None:
        if version not in self._versions:
            found = self._keys.get(version)
            if found is None:
                return None
            self._versions[version] = found
        return self._versions[version]

    def add(self, key: StoredDataKey) -> bool:
        self._latest = None
        return self._keys.add(key)


SEALED_FORMAT = 1  # first byte of a sealed value (chalicelib.domain.encryption)


class SealedColumns:
    """AES-256-GCM sealing of personal-data columns (IBAN, contact data: docs/encryption.md),
    each value bound to its tenant, table, column and row. The engine refuses
    new rows whose values are not sealed (0019_sealed_invoice_data.sql); rows
    from before that migration are read as they were stored."""

    def __init__(self, cipher: CipherSource | None, keys: PostgresDataKeys) -> None:
        self._cipher = cipher
        self._keys = _KeysOfOneTransaction(keys)

    def _source(self) -> FieldCipher:
        if self._cipher is None:
            raise RuntimeError("no field cipher configured (EINVOICE_MASTER_KEY_FILE): "
                               "personal data is never stored in clear")
        return self._cipher()

    def _place(self, table: str, column: str, row_id: str) -> Any:
        from chalicelib.domain.encryption import FieldPlace

        return FieldPlace(self._keys.tenant_id, table, column, row_id)

    def seal(self, table: str, column: str, row_id: str, value: bytes) -> bytes:
        return self._source().seal_bytes(self._keys, self._place(table, column, row_id), value)

    def open(self, table: str, column: str, row_id: str, stored: bytes) -> bytes:
        return self._source().open_bytes(self._keys, self._place(table, column, row_id),
                                         stored)

    def open_text(self, table: str, row_id: str, clear: str | None,
                  sealed: bytes | None) -> str:
        """A `document` column: sealed since 0019, in clear before."""
        if sealed is None:
            if clear is None:
                raise RuntimeError(f"{table} {row_id}: no document")
            return clear
        return self.open(table, "document", row_id, bytes(sealed)).decode("utf-8")
