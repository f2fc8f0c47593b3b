"""Seal and open a tenant's sensitive fields (IBAN, third parties' contact
data, TOTP secrets) inside the caller's unit of work (pass `uow.data_keys`).

Each tenant has versioned data keys, created on first use and stored wrapped
by the keys port with the tenant and version as context (a wrapped key copied
to another tenant does not unwrap). New values use the latest version; old
values keep opening with theirs. Unwrapped keys are cached per container:
re-wrapping under a new master key never changes them.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from uuid import UUID

from chalicelib.domain.encryption import (
    DecryptionRefused,
    FieldPlace,
    key_version,
    new_data_key,
    open_sealed,
    seal,
)
from chalicelib.ports import DataKeyStore, KeyWrapper, StoredDataKey


def wrap_context(tenant_id: UUID, version: int) -> bytes:
    return f"tenant:{tenant_id}|version:{version}".encode()


class FieldCipher:
    def __init__(self, keys: KeyWrapper, cache_size: int = 1024) -> None:
        self._wrapper = keys
        self._cache: OrderedDict[tuple[UUID, int], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def seal(self, keys: DataKeyStore, place: FieldPlace, plaintext: str) -> bytes:
        version, data_key = self._latest_key(keys, place.tenant_id)
        return seal(data_key, version, place, plaintext.encode("utf-8"))

    def open(self, keys: DataKeyStore, place: FieldPlace, sealed: bytes) -> str:
        version = key_version(sealed)
        return open_sealed(self._key(keys, place.tenant_id, version), place,
                           sealed).decode("utf-8")

    def new_data_key_version(self, keys: DataKeyStore, tenant_id: UUID) -> int:
        """Start sealing new values under a fresh data key (old ones still open)."""
        latest = keys.latest()
        version = (latest.version if latest else 0) + 1
        self._create(keys, tenant_id, version)
        return version

    def _latest_key(self, keys: DataKeyStore, tenant_id: UUID) -> tuple[int, bytes]:
        stored = keys.latest()
        if stored is None:
            # First use: create version 1. A concurrent first use may win the
            # insert; then its key (committed, visible now) is the one to use.
            created = self._create(keys, tenant_id, 1)
            if created is not None:
                return 1, created
            stored = keys.latest()
            if stored is None:
                raise DecryptionRefused("the tenant's data key vanished")
        return stored.version, self._unwrapped(tenant_id, stored)

    def _key(self, keys: DataKeyStore, tenant_id: UUID, version: int) -> bytes:
        with self._lock:
            cached = self._cache.get((tenant_id, version))
        if cached is not None:
            return cached
        stored = keys.get(version)
        if stored is None:
            raise DecryptionRefused(f"no data key version {version} for this tenant")
        return self._unwrapped(tenant_id, stored)

    def _create(self, keys: DataKeyStore, tenant_id: UUID, version: int) -> bytes | None:
        data_key = new_data_key()
        wrapped = self._wrapper.wrap(data_key, wrap_context(tenant_id, version))
        if not keys.add(StoredDataKey(version, wrapped)):
            return None
        self._remember(tenant_id, version, data_key)
        return data_key

    def _unwrapped(self, tenant_id: UUID, stored: StoredDataKey) -> bytes:
        with self._lock:
            cached = self._cache.get((tenant_id, stored.version))
        if cached is None:
            cached = self._wrapper.unwrap(stored.wrapped, wrap_context(tenant_id, stored.version))
            self._remember(tenant_id, stored.version, cached)
        return cached

    def _remember(self, tenant_id: UUID, version: int, data_key: bytes) -> None:
        with self._lock:
            self._cache[(tenant_id, version)] = data_key
            self._cache.move_to_end((tenant_id, version))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
