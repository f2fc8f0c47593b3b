"""Idempotency keys: one request, one record, however often it is retried.

A caller sends an `Idempotency-Key` with each request that makes something
(an invoice, a quote). The record keeps the key and the fingerprint of what was
asked: a retry with the same key and the same request gets the record made
the first time; the same key with another request is refused (409). Two
requests racing with one key are settled by the engine's unique key: the one
whose insert is refused (DuplicateIdempotencyKey) answers with the record the
other committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import rfc8785

from chalicelib.domain.errors import Conflict, DuplicateIdempotencyKey, InvalidInput, Violation

if TYPE_CHECKING:
    from chalicelib.domain.invoice import InvoiceDraft

IDEMPOTENCY_KEY_RULE = "1 to 200 visible ASCII characters"

# The keys the service makes for itself, one namespace each: the invoice a
# quote becomes (quote:<quote id>) and a ledger message sent without a key
# (sqs:<message id>). A caller's key in one of them would take the place of
# ours: the quote could then never be converted, and its 409 would be false.
QUOTE_KEYS = "quote:"
QUEUE_KEYS = "sqs:"
INTERNAL_NAMESPACES = (QUOTE_KEYS, QUEUE_KEYS)


def key_problem(key: str) -> str | None:
    """What is wrong with a caller's key (None: nothing), as a rule in words."""
    if not (1 <= len(key) <= 200 and all("!" <= c <= "~" for c in key)):
        return f"must be {IDEMPOTENCY_KEY_RULE}"
    if key.startswith(INTERNAL_NAMESPACES):
        return (f"must not start with {' or '.join(INTERNAL_NAMESPACES)}: the service keeps "
                "these namespaces for keys of its own")
    return None


def checked_key(key: str | None) -> str:
    """The caller's key, or 422: it is required, printable ASCII, and in
    none of the service's own namespaces."""
    if key is None or key == "":
        raise InvalidInput([Violation("Idempotency-Key", "header required: a key of your "
                                      "choice per invoice, reused when you retry")])
    problem = key_problem(key)
    if problem is not None:
        raise InvalidInput([Violation("Idempotency-Key", problem)])
    return key


def request_fingerprint(purpose: str, draft: InvoiceDraft) -> bytes:
    """SHA-256 of what was asked, once validated: the same key must come with
    the same invoice. Hashing the validated draft, not the raw text, makes
    "50.5" and "50.50", key order or spacing the same request."""
    body = rfc8785.dumps({"purpose": purpose,
                          "draft": _same_numbers(draft.model_dump(mode="python"))})
    return hashlib.sha256(body).digest()


def _same_numbers(value: Any) -> Any:
    """Decimals by value ("50.5" and "50.50" alike), dates as ISO text."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_same_numbers(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)  # enums


class Fingerprinted(Protocol):
    """A record that keeps the fingerprint of the request that made it."""

    @property
    def request_sha256(self) -> bytes: ...


Record = TypeVar("Record", bound=Fingerprinted)
Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class KeyedRequest(Generic[Record]):
    """One request under its key: what it asked, and where an earlier
    request's record is found (`known`, in a transaction of its own)."""

    fingerprint: bytes
    known: Callable[[], Record | None]
    made: str  # what the key makes ("invoice", "quote"), named in the 409

    def same_request(self, found: Record) -> Record:
        """The record an earlier request with this key made, if it asked the same."""
        if found.request_sha256 != self.fingerprint:
            raise Conflict([Violation("Idempotency-Key", "already used for another request: "
                                      f"use a new key for a new {self.made}")])
        return found

    def earlier(self) -> Record | None:
        """None if no request used the key yet; else its record, or 409."""
        found = self.known()
        return None if found is None else self.same_request(found)

    def made_once(self, make: Callable[[], Outcome],
                  retried: Callable[[Record], Outcome]) -> Outcome:
        """`make()`; when a concurrent request with the key committed first (the
        engine refused this one's insert), `retried` of the record it made."""
        try:
            return make()
        except DuplicateIdempotencyKey:
            found = self.known()
            if found is None:
                raise
            return retried(self.same_request(found))
