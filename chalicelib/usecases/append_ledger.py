"""Append ledger entry: the generic way an entry of a producer's own kind
enters a tenant's hash chain (the append-ledger queue).

The service's kinds (chalicelib/domain/kinds.py SERVICE_NAMESPACES: invoices,
credit notes, quotes, closings, payments) are refused here with a 422 naming
`kind`: their use cases write them, with the records that back them, and the
engine refuses a fiscal entry no issued invoice backs (migration 0021)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from chalicelib.domain.errors import Conflict, NotFound, Violation
from chalicelib.domain.kinds import generic_kind_problem
from chalicelib.domain.ledger import (
    KIND_PATTERN,
    LedgerEntry,
    canonical_payload,
    entry_hash,
    normalise_data,
    same_data,
)
from chalicelib.ports import Clock, UnitOfWorkFactory

IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"  # visible ASCII, as the schema checks


class AppendRequest(BaseModel):
    """What a producer sends (an SQS message body, or an internal call)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: UUID
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN, max_length=64)]
    payload: dict[str, Any]
    # Same key, same content: the first entry is returned, nothing is added.
    idempotency_key: Annotated[str, StringConstraints(pattern=IDEMPOTENCY_KEY_PATTERN)] | None = (
        Field(default=None))

    @field_validator("kind")
    @classmethod
    def _not_a_service_kind(cls, kind: str) -> str:
        problem = generic_kind_problem(kind)
        if problem:  # (the kind has matched KIND_PATTERN: safe to name)
            raise PydanticCustomError("service_kind", problem)
        return kind


class ChainIntegrityError(RuntimeError):
    """The engine returned an entry whose hash this code does not recompute."""


def append_ledger(request: AppendRequest, unit_of_work: UnitOfWorkFactory,
                  clock: Clock) -> LedgerEntry:
    """Validate, then append under the tenant's chain-head lock.

    All validation happens before the transaction opens, so bad input writes
    nothing. The engine locks the tenant's head row, so one tenant's appends
    serialise while other tenants append in parallel; it picks seq and
    prev_hash and computes the hash, which is recomputed here independently
    before the transaction may commit.
    """
    data = normalise_data(request.payload)
    payload = canonical_payload(data, clock.now())
    with unit_of_work(request.tenant_id) as uow:
        appended = uow.ledger.append(request.kind, payload, request.idempotency_key)
        if appended is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        entry, created = appended
        if not created:
            if entry.kind == request.kind and same_data(entry, data):
                return entry
            raise Conflict([Violation("idempotency_key", "already used for an entry with "
                                      "another kind or payload")])
        if entry.hash != entry_hash(entry.prev_hash, entry.seq, entry.kind, entry.payload):
            raise ChainIntegrityError(f"entry {entry.seq}: engine and code disagree on its hash")
    return entry
