"""The small ports use cases depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from chalicelib.domain.ledger import ChainHead, LedgerEntry


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class LedgerStore(Protocol):
    """One tenant's chain, inside the unit of work's transaction."""

    def append(self, kind: str, payload: str,
               idempotency_key: str | None) -> tuple[LedgerEntry, bool] | None:
        """Append the next entry under the chain-head lock (held until the
        transaction ends), or return the one already recorded under
        `idempotency_key`; the bool says whether it was created now.
        None: no such tenant."""

    def head(self) -> ChainHead | None: ...

    def entries(self, after_seq: int = 0) -> Iterator[LedgerEntry]:
        """Entries with seq > after_seq in seq order, streamed in pages."""


class TenantStore(Protocol):
    def add(self, tenant_id: UUID, name: str) -> None:
        """Create the tenant (its empty chain is opened by the engine)."""


class UnitOfWork(Protocol):
    """One transaction scoped to one tenant: commits on success, else rolls back."""

    @property
    def tenants(self) -> TenantStore: ...

    @property
    def ledger(self) -> LedgerStore: ...


UnitOfWorkFactory = Callable[[UUID], AbstractContextManager[UnitOfWork]]
