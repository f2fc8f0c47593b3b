"""Errors a use case raises; the edge maps each one to a clear HTTP status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Violation:
    """One broken rule: the path of the field (dotted) and the rule in words."""

    field: str
    rule: str


# An answer lists this many violations at most, and says how many there are
# in all: a body of 10,000 broken fields is refused in a short answer.
MAX_LISTED_VIOLATIONS = 50


class DomainError(Exception):
    """Base of the errors the caller can act on (4xx), as opposed to faults (5xx)."""

    status = 400

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.rule}"
                                   for v in violations[:MAX_LISTED_VIOLATIONS]))

    def as_dict(self) -> dict[str, object]:
        """The error's name, the first MAX_LISTED_VIOLATIONS violations and
        `violation_count`, how many there are in all."""
        return {
            "error": type(self).__name__,
            "violations": [{"field": v.field, "rule": v.rule}
                           for v in self.violations[:MAX_LISTED_VIOLATIONS]],
            "violation_count": len(self.violations),
        }


class InvalidInput(DomainError):
    status = 422


class BadRequest(DomainError):
    """A request no route reads, whatever its body (a credential in the URL)."""

    status = 400


class PayloadTooLarge(DomainError):
    """A body longer than its route's bound, refused before it is read."""

    status = 413


class UnsupportedMediaType(DomainError):
    """A Content-Type no route reads (Chalice refuses it before the route runs)."""

    status = 415


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class WrongPassword(Unauthorized):
    """A failed password: counts towards the lock-out."""


class WrongSecondFactor(Forbidden):
    """A failed TOTP or recovery code: counts towards the lock-out."""


class TooManyRequests(DomainError):
    status = 429

    def __init__(self, violations: list[Violation], retry_after: int) -> None:
        super().__init__(violations)
        self.retry_after = retry_after


class ArchiveNotSafe(Exception):
    """The archive cannot keep an invoice for the legal period (a fault of
    configuration, never of the caller): nothing is archived, the reason says why."""


class ArchiveTampered(Exception):
    """An archived object's bytes do not match the checksum the ledger holds."""


class NotArchived(LookupError):
    """The archive holds no such key or version (or the version named is a
    delete marker, or an id the server does not accept)."""


class DuplicateIdempotencyKey(Exception):
    """Another request with the same idempotency key committed first (a
    concurrent retry): the caller answers with what that one created."""


class ServiceUnavailable(RuntimeError):
    """Something the service needs cannot answer right now (a fault of ours,
    never of the caller): the edge answers 503 with Retry-After, saying what
    cannot run and that nothing was done, and alerts the operator."""

    status = 503
    retry_after = 30  # seconds
    detail = "a service this request needs cannot answer right now: retry later"
    alert = "service unavailable"  # the line logged for the operator
    context: Mapping[str, str] = MappingProxyType({})  # ids logged with it, never data


class ArchiveMissing(ServiceUnavailable):
    """The archive no longer holds the object version an invoice's receipt
    names (gone, a delete marker, a version id it does not know): the
    document is not served from anywhere else, and the operator is alerted.
    `context` names the invoice and the document, never their contents."""

    retry_after = 300
    detail = ("the archived document cannot be read from the archive: it is not served from "
              "anywhere else, and the operator is alerted; retry later")
    alert = "archive version missing"

    def __init__(self, message: str, context: Mapping[str, str]) -> None:
        super().__init__(message)
        self.context = MappingProxyType(dict(context))


class ConformanceCheckUnavailable(ServiceUnavailable):
    """The invoice conformance check (schematron) cannot run: it fails before
    any number is given, so nothing was issued and a retry is safe."""

    detail = ("the conformance check cannot run right now: nothing was issued; retry with "
              "the same Idempotency-Key")
    alert = "schematron unavailable"


class KeysUnavailable(ServiceUnavailable):
    """The keys port's provider (AWS KMS, Scaleway Key Manager) gave no usable
    answer: unreachable, timed out, refused our credentials, or the key is
    disabled or gone. A fault of ours, never read as tampering, and never
    answered by another key: the transaction that needed it rolls back, so
    nothing sealed was written. `str()` is short and ours (operation, status,
    the provider's error code), never the provider's text or a secret."""

    detail = ("encrypted data cannot be sealed or opened right now: nothing was done; "
              "retry later")
    alert = "keys provider unavailable"


class SecretUnavailable(ServiceUnavailable):
    """A secret setting named by its `<SETTING>_SECRET_ARN` could not be read
    from AWS Secrets Manager at start-up (the message names the setting, never
    the value)."""

    detail = "the service is not configured to answer right now: retry later"
    alert = "secret unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached, or dropped the connection (a restart, a
    failover): the transaction did not commit, or (a drop during COMMIT) its
    outcome is unknown, which the same Idempotency-Key settles on retry."""

    retry_after = 5
    detail = ("the database cannot answer right now: retry with the same Idempotency-Key "
              "(a request that was done is answered with what it did, never done twice)")
    alert = "database unavailable"


class ArchiveUnavailable(ServiceUnavailable):
    """The archive bucket did not answer in time or answered a server error
    (an outage, not a configuration that cannot keep invoices locked: that
    is ArchiveNotSafe). Checked before any number is given: nothing was issued."""

    retry_after = 15
    detail = ("the archive cannot answer right now: nothing was issued; retry with the same "
              "Idempotency-Key")
    alert = "archive unavailable"


class QueueUnavailable(ServiceUnavailable):
    """The queue service did not answer in time or answered a server error.
    Some messages of a batch may be queued already: each is issued under its
    own idempotency key, so sending the batch again makes no second invoice."""

    retry_after = 10
    detail = ("the queue cannot answer right now: send the same batch again (each invoice is "
              "issued once under its idempotency key)")
    alert = "queue unavailable"
