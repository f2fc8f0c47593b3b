"""Create tenant: a business whose data no other tenant can see."""

from __future__ import annotations

import uuid
from uuid import UUID

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.ports import UnitOfWorkFactory


def create_tenant(name: str, unit_of_work: UnitOfWorkFactory) -> UUID:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput([Violation("name", "must be 1 to 200 characters")])
    tenant_id = uuid.uuid4()
    with unit_of_work(tenant_id) as uow:
        uow.tenants.add(tenant_id, name)
    return tenant_id
