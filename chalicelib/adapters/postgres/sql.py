"""What every store of the package shares: the engine's refusals read from
pg8000's errors, and the one thing the stores ask of a database (a transaction)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError

from chalicelib.domain.errors import DomainError, InvalidInput, Violation

Isolation = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error raised by pg8000, if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        code = exc.args[0].get("C")
        return str(code) if code else None
    return None


def data_refused(exc: DatabaseError, field: str) -> DomainError | None:
    """A data error the engine raised for the caller's input, as a 4xx with no
    server text (which may quote the data); None for a real fault."""
    state = sqlstate(exc) or ""
    if state.startswith("22") or state == "23514":
        return InvalidInput([Violation(field, f"refused by the database (SQLSTATE {state})")])
    return None


class Transactions(Protocol):
    """A database handing out transactions (`Database`): the stores that work
    outside any unit of work open their own short one."""

    def transaction(self, tenant_id: UUID | None, *, isolation: Isolation = "READ COMMITTED",
                    read_only: bool = False
                    ) -> AbstractContextManager[pg8000.native.Connection]: ...
