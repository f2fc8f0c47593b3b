"""Append ledger entry: the one way anything enters a tenant's hash chain."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chalicelib.domain.errors import Conflict, NotFound, Violation
from chalicelib.domain.ledger import (
    KIND_PATTERN,
    LedgerEntry,
    canonical_payload,
    next_entry,
    normalise_data,
    same_data,
)
from chalicelib.ports import Clock, UnitOfWorkFactory


class AppendRequest(BaseModel):
    """What a producer sends (an SQS message body, or an internal call)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: UUID
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN, max_length=64)]
    payload: dict[str, Any]
    # Same key, same content: the first entry is returned, nothing is added.
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = (
        Field(default=None))


def append_ledger(request: AppendRequest, unit_of_work: UnitOfWorkFactory,
                  clock: Clock) -> LedgerEntry:
    """Validate, then append under the tenant's chain-head lock.

    All validation happens before the transaction opens, so bad input writes
    nothing. The head lock serialises one tenant's appends; other tenants'
    heads are other rows, so they append in parallel.
    """
    data = normalise_data(request.payload)
    with unit_of_work(request.tenant_id) as uow:
        head = uow.ledger.lock_head()
        if head is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        if request.idempotency_key is not None:
            existing = uow.ledger.find_by_idempotency_key(request.idempotency_key)
            if existing is not None:
                if existing.kind == request.kind and same_data(existing, data):
                    return existing
                raise Conflict([Violation("idempotency_key", "already used for an entry with "
                                          "another kind or payload")])
        entry = next_entry(head, request.kind, canonical_payload(data, clock.now()))
        uow.ledger.add(entry, request.idempotency_key)
    return entry
