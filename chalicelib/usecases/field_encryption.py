"""Seal and open a tenant's sensitive fields (IBAN, third parties' contact
data, TOTP secrets) inside the caller's unit of work (pass `uow.data_keys`).

Each tenant has versioned data keys, created on first use and stored wrapped
by the keys port with the tenant and version as context (a wrapped key copied
to another tenant does not unwrap). New values use the latest version; old
values keep opening with theirs.

Every seal and open reads the key row from the database (one indexed query);
only the unwrapping (a KMS call in production) is cached, keyed by the wrapped
blob itself (and its master key id), so a key from a rolled-back transaction
or another tenant can never be served from the cache. A provider that cannot
answer raises KeysUnavailable: the caller's transaction rolls back, nothing
sealed is written.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from threading import Lock
from uuid import UUID

from chalicelib.domain.encryption import (
    DecryptionRefused,
    FieldPlace,
    key_version,
    open_sealed,
    seal,
)
from chalicelib.ports import DataKeyStore, KeyWrapper, StoredDataKey


def wrap_context(tenant_id: UUID, version: int) -> bytes:
    return f"tenant:{tenant_id}|version:{version}".encode()


class FieldCipher:
    def __init__(self, keys: KeyWrapper, cache_size: int = 1024) -> None:
        self._wrapper = keys
        self._cache: OrderedDict[tuple[UUID, int, bytes], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def seal(self, keys: DataKeyStore, place: FieldPlace, plaintext: str) -> bytes:
        return self.seal_bytes(keys, place, plaintext.encode("utf-8"))

    def open(self, keys: DataKeyStore, place: FieldPlace, sealed: bytes) -> str:
        return self.open_bytes(keys, place, sealed).decode("utf-8")

    def seal_bytes(self, keys: DataKeyStore, place: FieldPlace, plaintext: bytes) -> bytes:
        _same_tenant(keys, place)
        stored = keys.latest()
        if stored is None:
            stored = self._first_key(keys)
        return seal(self._unwrapped(keys.tenant_id, stored), stored.version, place, plaintext)

    def open_bytes(self, keys: DataKeyStore, place: FieldPlace, sealed: bytes) -> bytes:
        _same_tenant(keys, place)
        version = key_version(sealed)
        stored = keys.get(version)
        if stored is None:
            raise DecryptionRefused(f"no data key version {version} for this tenant")
        return open_sealed(self._unwrapped(keys.tenant_id, stored), place, sealed)

    def new_data_key_version(self, keys: DataKeyStore) -> int:
        """Seal new values under a fresh data key from now on (old ones still open)."""
        latest = keys.latest()
        version = (latest.version if latest else 0) + 1
        if not self._add_new(keys, version):
            raise DecryptionRefused(f"data key version {version} was added concurrently")
        return version

    def _first_key(self, keys: DataKeyStore) -> StoredDataKey:
        # A concurrent first use may win the insert: its key (committed and
        # visible once our insert has waited for it) is then the one to use.
        self._add_new(keys, 1)
        stored = keys.latest()
        if stored is None:
            raise DecryptionRefused("the tenant's first data key could not be created")
        return stored

    def _add_new(self, keys: DataKeyStore, version: int) -> bool:
        """A fresh data key from the keys port, stored wrapped. Its clear value
        goes into the cache under its own wrapping, which only a row holding
        exactly that wrapping finds (no unwrap call for a key just made; a
        rolled-back row is never read back, so its entry is never served)."""
        data_key, wrapped = self._wrapper.generate_data_key(
            wrap_context(keys.tenant_id, version))
        stored = StoredDataKey(version, wrapped)
        if not keys.add(stored):
            return False
        self._remember(self._cache_key(keys.tenant_id, stored), data_key)
        return True

    def _unwrapped(self, tenant_id: UUID, stored: StoredDataKey) -> bytes:
        cache_key = self._cache_key(tenant_id, stored)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return cached
        data_key = self._wrapper.unwrap(stored.wrapped, wrap_context(tenant_id, stored.version))
        self._remember(cache_key, data_key)
        return data_key

    @staticmethod
    def _cache_key(tenant_id: UUID, stored: StoredDataKey) -> tuple[UUID, int, bytes]:
        return (tenant_id, stored.version,
                hashlib.sha256(stored.wrapped.master_key_id.encode() + b"\0"
                               + stored.wrapped.blob).digest())

    def _remember(self, cache_key: tuple[UUID, int, bytes], data_key: bytes) -> None:
        with self._lock:
            self._cache[cache_key] = data_key
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _same_tenant(keys: DataKeyStore, place: FieldPlace) -> None:
    if place.tenant_id != keys.tenant_id:
        raise DecryptionRefused("a field of another tenant cannot be sealed or opened here")
