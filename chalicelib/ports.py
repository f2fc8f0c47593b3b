"""The small ports use cases depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from chalicelib.domain.document_types import DocumentType
from chalicelib.domain.errors import Violation
from chalicelib.domain.ledger import ChainHead, LedgerEntry
from chalicelib.domain.pa_flows import (
    Acknowledgement,
    DirectoryLine,
    DocType,
    FlowInfo,
    FlowPage,
    SearchQuery,
)

if TYPE_CHECKING:  # the invoice model's libraries load only where invoices are made
    from chalicelib.domain.closing import KindSum, RateSum
    from chalicelib.domain.invoice import InvoiceDraft, Totals


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

    def entry(self, seq: int) -> LedgerEntry | None:
        """One entry by its seq (one row read, not a page)."""

    def entries(self, after_seq: int = 0) -> Iterator[LedgerEntry]:
        """Entries with seq > after_seq in seq order, streamed in pages."""


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under a master key the keys port holds."""

    master_key_id: str
    blob: bytes


class KeyWrapper(Protocol):
    """The keys port (local key file, AWS KMS, Scaleway Key Manager): wraps and
    unwraps data keys under its master key; `context` must match to unwrap.

    An adapter unwraps only what names one of its own master keys, raises
    DecryptionRefused when the wrapped key does not open (wrong context,
    altered, another key's), and KeysUnavailable when its provider cannot
    answer: an outage is never read as tampering, and never answered by
    another key."""

    @property
    def current_key_id(self) -> str: ...

    def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        """A fresh 256-bit data key and its wrapping under the current master key."""

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...


@dataclass(frozen=True)
class StoredDataKey:
    version: int
    wrapped: WrappedKey


class DataKeyStore(Protocol):
    """One tenant's data keys, inside the unit of work's transaction."""

    @property
    def tenant_id(self) -> UUID: ...

    def latest(self) -> StoredDataKey | None: ...

    def get(self, version: int) -> StoredDataKey | None: ...

    def add(self, key: StoredDataKey) -> bool:
        """Record the next version; False if that version exists already."""


@dataclass(frozen=True)
class Account:
    """A user as login and authorization see it (never the password itself)."""

    user_id: UUID
    tenant_id: UUID
    role: str
    password_hash: str
    credential_version: int = 1


class LoginDirectory(Protocol):
    """The one lookup made before any tenant is known: by exact, normalised email."""

    def find(self, email: str) -> Account | None: ...


class UserStore(Protocol):
    """One tenant's users, inside the unit of work's transaction."""

    def add(self, account: Account, email: str) -> None:
        """Create the user; Conflict if the email is already registered."""

    def get(self, user_id: UUID, *, lock: bool = False) -> Account | None:
        """The user; `lock` holds its row until the transaction ends."""

    def rehash(self, user_id: UUID, checked_hash: str, new_hash: str) -> bool:
        """Replace the hash only if it is still `checked_hash` (same password)."""

    def change_password(self, user_id: UUID, new_hash: str) -> int:
        """New password, next credential version (returned): older sessions end."""

    def email(self, user_id: UUID) -> str | None: ...


class SessionStore(Protocol):
    """One tenant's sessions, inside the unit of work's transaction."""

    def add(self, token_hash: bytes, user_id: UUID, credential_version: int,
            lifetime: timedelta, idle: timedelta) -> None:
        """Open a session from now (the engine's clock); Unauthorized if the
        user's credentials changed since `credential_version` was checked."""

    def revoke(self, token_hash: bytes, user_id: UUID) -> None:
        """Revoke one session of this user (no-op if not theirs or already revoked)."""

    def revoke_others(self, user_id: UUID, keep_token_hash: bytes) -> None:
        """End every session of the user but this one."""


@dataclass(frozen=True)
class TotpRecord:
    secret: bytes | None  # sealed, confirmed
    pending_secret: bytes | None  # sealed, waiting for its first code
    last_step: int


class SecondFactorStore(Protocol):
    """One tenant's TOTP secrets and recovery codes, inside the unit of work."""

    def get(self, user_id: UUID, *, lock: bool = False) -> TotpRecord | None: ...

    def set_pending(self, user_id: UUID, sealed: bytes) -> None: ...

    def confirm(self, session_hash: bytes, sealed: bytes, step: int) -> bool:
        """The pending secret (re-sealed for its new column) becomes the one,
        and the session passes; False if nothing was pending or the step is used."""

    def pass_with_step(self, session_hash: bytes, step: int) -> bool:
        """Spend `step` for the session's user and pass the session; False if
        it, or a later one, was used already."""

    def replace_recovery_codes(self, user_id: UUID, digests: list[bytes]) -> None: ...

    def pass_with_recovery_code(self, session_hash: bytes, digest: bytes) -> bool:
        """Spend the code and pass the session; False if unknown or spent."""

    def recovery_codes_left(self, user_id: UUID) -> int: ...


@dataclass(frozen=True)
class SessionFacts:
    user_id: UUID
    tenant_id: UUID
    role: str
    credential_version: int
    second_factor_passed: bool
    has_second_factor: bool


class SessionDirectory(Protocol):
    """The lookup made before any tenant is known: by token hash."""

    def touch(self, token_hash: bytes) -> SessionFacts | None:
        """The live session, its last-seen time moved to the engine's now."""


class RateLimiter(Protocol):
    """Counters shared by every instance: (allowed, seconds to wait if not)."""

    def hit(self, key: str, window: timedelta, limit: int) -> tuple[bool, int]: ...


@dataclass(frozen=True)
class ApiKey:
    """A key as its tenant's owners see it (never the secret)."""

    key_id: UUID
    name: str
    scopes: tuple[str, ...]
    created_by: UUID
    created_at: datetime | None
    expires_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyStore(Protocol):
    """One tenant's API keys, inside the unit of work's transaction."""

    def add(self, key: ApiKey, secret_hash: bytes) -> ApiKey:
        """Create it (the engine stamps created_at); returns it as stored."""

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id: UUID) -> bool:
        """False if the tenant has no such live key."""


class ApiKeyDirectory(Protocol):
    """The lookup made before any tenant is known: by secret hash."""

    def find(self, secret_hash: bytes) -> tuple[UUID, UUID, tuple[str, ...]] | None:
        """(key id, tenant id, scopes) of the live key, its last use stamped."""


@dataclass(frozen=True)
class AccessRecord:
    tenant_id: UUID | None
    principal: str | None  # "user:<id>" or "api_key:<id>"
    method: str
    route: str  # the route template, never a concrete path with ids
    status: int
    latency_ms: int
    request_id: str
    ip_prefix: str


class AccessLog(Protocol):
    def record(self, entry: AccessRecord) -> None: ...


class Retention(Protocol):
    def purge_access_log(self) -> int:
        """Delete access-log rows older than a year; how many went."""

    def purge_pending_signups(self) -> int:
        """Delete sign-ups whose confirmation expired; how many went."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, mail: Mail) -> None: ...


class PendingSignUps(Protocol):
    """Addresses waiting to be confirmed (outside any tenant)."""

    def add(self, token_hash: bytes, email: str, lifetime: timedelta) -> None: ...


class SignUpClaims(Protocol):
    def take(self, token_hash: bytes) -> str | None:
        """The address this token confirms, consumed with the transaction;
        None if unknown, already used or expired."""


class Lockouts(Protocol):
    """Failure counters with exponential back-off, shared by every instance."""

    def wait(self, key: str) -> int:
        """Seconds before `key` may try again; 0 if it may now."""

    def fail(self, key: str, free: int, base: timedelta, cap: timedelta) -> int:
        """Count a failure; the seconds it is now locked for (0: not locked)."""

    def clear(self, key: str) -> None: ...


class TenantStore(Protocol):
    def add(self, tenant_id: UUID, name: str) -> None:
        """Create the tenant (its empty chain is opened by the engine)."""


@dataclass(frozen=True)
class IssuedInvoice:
    """An invoice as the database keeps it (never edited after insert)."""

    invoice_id: UUID
    series: str
    number: int
    invoice_number: str
    type_code: DocumentType
    credited_invoice_id: UUID | None  # a credit note's invoice (BG-3), from our own records
    issue_date: date
    idempotency_key: str
    request_sha256: bytes
    document: str  # canonical JSON of the validated invoice
    totals: str  # canonical JSON of the computed totals
    pdf_sha256: bytes
    xml_sha256: bytes
    ledger_seq: int
    archive: ArchiveReceipt | None = None  # once archived


class InvoiceStore(Protocol):
    """One tenant's invoices, inside the unit of work's transaction."""

    def next_number(self, series: str) -> int:
        """The series' next number, locked until the transaction ends; the
        transaction must insert that invoice or fail (engine-checked)."""

    def add(self, invoice: IssuedInvoice) -> None: ...

    def by_idempotency_key(self, key: str) -> IssuedInvoice | None: ...

    def get(self, invoice_id: UUID, *, for_update: bool = False) -> IssuedInvoice | None:
        """for_update: the row stays locked until the transaction ends."""

    def latest(self, limit: int) -> list[IssuedInvoice]:
        """The newest first."""

    def add_document(self, invoice_id: UUID, kind: str, content: bytes) -> None: ...

    def documents(self, invoice_id: UUID) -> dict[str, bytes]: ...

    def record_archive(self, invoice_id: UUID, receipt: ArchiveReceipt) -> bool:
        """Write the archive receipt once and drop the staged documents;
        False if it was already written."""


@dataclass(frozen=True)
class ArchivedObject:
    """What the archive answered for one put, read back from the server."""

    key: str
    version_id: str
    sha256: bytes  # 32 bytes, as the server computed and we checked
    mode: str  # the object's lock mode, read back: always COMPLIANCE
    retain_until: datetime  # read back, never earlier than asked


@dataclass(frozen=True)
class ArchiveReceipt:
    """Where the archive keeps one invoice's documents, written once: each
    document's kind (pdf, xml) and the object the archive answered for it."""

    objects: tuple[tuple[str, ArchivedObject], ...]  # (kind, object), in put order

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        """The receipt as JSON values, keys in canonical (RFC 8785) order: the
        API shows it, the ledger's `invoice.archived` entry and the invoice
        row hold it (as its canonical JSON text)."""
        return {"objects": [{"key": o.key, "kind": kind, "mode": o.mode,
                             "retain_until": o.retain_until.isoformat(),
                             "sha256": o.sha256.hex(), "version_id": o.version_id}
                            for kind, o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, list[dict[str, str]]]) -> ArchiveReceipt:
        """The receipt `as_dict` gave (read back from its JSON text)."""
        return cls(tuple(
            (o["kind"], ArchivedObject(key=o["key"], version_id=o["version_id"],
                                       sha256=bytes.fromhex(o["sha256"]), mode=o["mode"],
                                       retain_until=datetime.fromisoformat(o["retain_until"])))
            for o in data["objects"]))


class InvoiceArchive(Protocol):
    """The Object Lock bucket: write once, keep for the legal period."""

    def check_ready(self) -> None:
        """Raise ArchiveNotSafe unless the bucket has versioning, Object Lock
        and a COMPLIANCE default retention of at least the legal period."""

    def put(self, key: str, content: bytes, retain_until: datetime,
            content_type: str, *, first_attempt: bool = False) -> ArchivedObject:
        """Store the bytes under COMPLIANCE lock until retain_until (or reuse
        the key's current version when it already holds exactly these bytes,
        a retry); never shortens a retention. Raises ArchiveNotSafe.
        `first_attempt`: the caller knows no earlier attempt can have put this
        key (the invoice was committed by this very call), so no lookup first."""

    def get(self, key: str, version_id: str, sha256: bytes) -> bytes:
        """The version's bytes, after checking them against sha256;
        raises ArchiveTampered on a mismatch, NotArchived when the archive
        does not hold that version."""


@dataclass(frozen=True)
class WitnessVersion:
    """One version under the witness prefix as the bucket lists it, the ones a
    delete marker hides included: its bytes, or None for a delete marker."""

    key: str
    version_id: str
    content: bytes | None


class WitnessArchive(InvoiceArchive, Protocol):
    """The Object Lock bucket as the chain's witness."""

    def history(self, prefix: str) -> list[WitnessVersion]:
        """Every version and delete marker of every key under prefix (never
        only the current ones), each key's newest first."""


class InvoiceDocuments(Protocol):
    """Factur-X production (formats' libraries behind one port): one call per
    step so a crash can be injected between any two."""

    def xml(self, draft: InvoiceDraft, invoice_number: str, totals: Totals) -> bytes:
        """The CII XML, EN16931 profile."""

    def pdf(self, draft: InvoiceDraft, invoice_number: str, totals: Totals,
            created: datetime) -> bytes:
        """The visual PDF, ready for PDF/A-3 (embedded fonts, OutputIntent)."""

    def factur_x(self, pdf: bytes, xml: bytes, draft: InvoiceDraft, invoice_number: str,
                 created: datetime) -> bytes:
        """The XML embedded into the PDF: the Factur-X PDF/A-3."""

    def problems(self, xml: bytes) -> list[Violation]:
        """XSD, EN 16931 and French CTC (BR-FR) schematron failures (fatal ones), each
        as a violation."""

    def unprintable(self, draft: InvoiceDraft) -> list[Violation]:
        """Texts the visual PDF cannot show faithfully (before any number is given)."""


class InvoiceQueue(Protocol):
    """Where bulk issuing waits its turn (SQS, or an HTTP-triggered queue)."""

    def send(self, messages: list[str]) -> None:
        """Queue every message, or raise: never some silently."""


@dataclass(frozen=True)
class StoredQuote:
    """A quote (devis) as the database keeps it: its draft never changes; the
    invoice it became is recorded once, with the key of the request that did it."""

    quote_id: UUID
    number: int  # the tenant's own quote counter, never an invoice series
    reference: str  # D-000001
    idempotency_key: str
    request_sha256: bytes
    document: str  # canonical JSON of the validated draft, without issue and due dates
    totals: str  # canonical JSON of the computed totals
    valid_until: date
    created_at: datetime | None = None  # the engine's clock, once stored
    converted_invoice_id: UUID | None = None
    conversion_key: str | None = None  # the Idempotency-Key of the converting request
    conversion_sha256: bytes | None = None  # and the fingerprint of what it asked


class QuoteStore(Protocol):
    """One tenant's quotes, inside the unit of work's transaction."""

    def next_number(self) -> int:
        """The tenant's next quote number, locked until the transaction ends;
        the transaction must insert that quote or fail (engine-checked)."""

    def add(self, quote: StoredQuote) -> StoredQuote:
        """Insert it; returns it as stored (the engine stamps created_at).
        DuplicateIdempotencyKey if another request took the key first."""

    def get(self, quote_id: UUID, *, for_update: bool = False) -> StoredQuote | None:
        """for_update: the row stays locked until the transaction ends."""

    def by_idempotency_key(self, key: str) -> StoredQuote | None: ...

    def record_conversion(self, quote_id: UUID, invoice_id: UUID, key: str,
                          request_sha256: bytes) -> bool:
        """Record the invoice the quote became, once; False if one is recorded already."""


class ClosingSigner(Protocol):
    """The service's Ed25519 closing key (keys port): signs; never hands out the secret."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class StoredClosing:
    closing_id: UUID
    period_kind: str
    period_start: date
    first_seq: int
    last_seq: int
    text: str  # the signed closing (RFC 8785 JSON)
    signature: bytes
    key_id: str
    entry_seq: int  # its closing.sealed ledger entry
    sealed_at: datetime | None = None


class ClosingStore(Protocol):
    """One tenant's closings and Merkle tree, inside the unit of work's transaction."""

    def lock(self) -> None:
        """Serialize the tenant's sealers until the transaction ends."""

    def get(self, period_kind: str, period_start: date) -> StoredClosing | None: ...

    def by_id(self, closing_id: UUID) -> StoredClosing | None: ...

    def latest(self, period_kind: str | None = None) -> StoredClosing | None:
        """The latest closing of that kind (by period), or of any kind (by entry)."""

    def at_or_before(self, seq: int) -> StoredClosing | None:
        """The closing whose last_seq is the greatest not beyond seq."""

    def covering(self, seq: int) -> StoredClosing | None:
        """The first closing that covers entry seq (the smallest last_seq >= seq)."""

    def recent(self, limit: int) -> list[StoredClosing]: ...

    def last_seq_before(self, after_seq: int, moment: datetime) -> int:
        """The greatest seq > after_seq of an entry recorded before `moment`, or after_seq."""

    def first_activity(self, after_seq: int) -> datetime | None:
        """When the first entry after after_seq that is not a closing was recorded."""

    def first_malformed(self, after_seq: int) -> int | None:
        """The first entry after after_seq whose payload is no {at, data, v}
        envelope (only a superuser could have put it there), or None."""

    def kind_counts(self, first_seq: int, last_seq: int) -> dict[str, int]: ...

    def money(self, first_seq: int, last_seq: int) -> tuple[list[KindSum], list[RateSum]]:
        """(KindSum list, RateSum list) of the money entries first_seq..last_seq."""

    def merkle_root(self, size: int) -> bytes:
        """Grow the engine's Merkle tree to `size` leaves and return its root."""

    def merkle_nodes(self, coords: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def add(self, closing: StoredClosing) -> None:
        """Insert (the engine checks it against its entry and the chain)."""

    def last_witnessed(self, kind: str) -> int | None:
        """The highest seq witnessed in the bucket for this kind, as recorded."""

    def witnessed(self, kind: str, seq: int) -> bool: ...

    def record_witness(self, kind: str, seq: int, key: str, version_id: str,
                       sha256: bytes) -> None: ...


class UnitOfWork(Protocol):
    """One transaction scoped to one tenant: commits on success, else rolls back."""

    @property
    def tenants(self) -> TenantStore: ...

    @property
    def ledger(self) -> LedgerStore: ...

    @property
    def data_keys(self) -> DataKeyStore: ...

    @property
    def users(self) -> UserStore: ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def second_factor(self) -> SecondFactorStore: ...

    @property
    def api_keys(self) -> ApiKeyStore: ...

    @property
    def signups(self) -> SignUpClaims: ...

    @property
    def invoices(self) -> InvoiceStore: ...

    @property
    def quotes(self) -> QuoteStore: ...

    @property
    def closings(self) -> ClosingStore: ...


UnitOfWorkFactory = Callable[[UUID], AbstractContextManager[UnitOfWork]]


# Anchoring: the outside witnesses of a closing (OpenTimestamps calendars, an
# RFC 3161 time-stamping authority) and where their anchors are kept.


class AnchorUnavailable(Exception):
    """An endpoint gave no usable answer. `reason` is short and ours (a status
    code, an exception type, what check failed), never the server's own text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StoredAnchor:
    anchor_id: UUID
    closing_id: UUID
    method: str
    endpoint: str
    digest: bytes
    status: str
    proof: bytes | None
    attempts: int
    last_error: str | None
    created_at: datetime | None = None
    last_attempt_at: datetime | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class ClosingDigest:
    text: str
    sha256: bytes


@dataclass(frozen=True)
class OtsUpgrade:
    proof: bytes
    complete: bool  # holds a Bitcoin block header attestation


@dataclass(frozen=True)
class TsaToken:
    token: bytes  # DER TimeStampToken, verified
    gen_time: datetime


class AnchorStore(Protocol):
    """One tenant's anchors, inside one transaction."""

    def closing(self, closing_id: UUID) -> ClosingDigest | None: ...

    def ensure(self, anchor_id: UUID, closing_id: UUID, method: str, endpoint: str,
               digest: bytes) -> None: ...

    def for_closing(self, closing_id: UUID) -> list[StoredAnchor]: ...

    def get(self, anchor_id: UUID) -> StoredAnchor | None: ...

    def record(self, seen: StoredAnchor, status: str, proof: bytes | None,
               last_error: str | None) -> bool:
        """One attempt, only if the anchor is still as `seen` (else False)."""
        ...


class CalendarClient(Protocol):
    """An OpenTimestamps calendar (adapters/anchoring.py)."""

    @property
    def url(self) -> str: ...

    def submit(self, digest: bytes) -> bytes:
        """The proof for `digest` (raises AnchorUnavailable)."""
        ...

    def upgrade(self, proof: bytes) -> OtsUpgrade:
        """The proof with what the calendars now know (raises AnchorUnavailable)."""
        ...


class TimestampAuthority(Protocol):
    """An RFC 3161 TSA whose answers are verified (adapters/anchoring.py)."""

    @property
    def url(self) -> str: ...

    def timestamp(self, message: bytes) -> TsaToken:
        """A verified token over SHA-256(message) (raises AnchorUnavailable)."""
        ...


AnchorStoreFactory = Callable[[UUID], AbstractContextManager[AnchorStore]]


# --- Plateforme Agréée (issue 16): the Flow Service API and the Annuaire -------------------

class PaUnavailable(Exception):
    """The PA gave no usable answer (down, timeout, 5xx, 429, an answer we
    cannot read): try again later. `reason` is short and ours (a status code,
    an exception type), never the PA's own text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaRefused(Exception):
    """The PA answered and said no (4xx other than 401/404/429, or credentials
    it will not take): retrying the same request will not help. `reason` as
    PaUnavailable's; `status` is the HTTP status."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PaNotFound(PaRefused):
    """No such flow or directory line (HTTP 404)."""


class PaClient(Protocol):
    """One PA's Flow Service and Directory (adapters/pa.py). Every method
    raises PaUnavailable or PaRefused, nothing else from the network."""

    def deposit(self, flow: FlowInfo, content: bytes) -> Acknowledgement:
        """POST /v1/flows. A repeated tracking_id answers an acknowledgement
        whose `already_existing` is true (not an error: the flow is there)."""
        ...

    def search(self, query: SearchQuery) -> FlowPage:
        """POST /v1/flows/search, oldest update first, at most 100."""
        ...

    def fetch(self, flow_id: str, doc_type: DocType = "Original") -> bytes:
        """GET /v1/flows/{flow_id}?docType=..., bounded in size."""
        ...

    def siren(self, siren: str) -> tuple[DirectoryLine, ...]: ...

    def siret(self, siret: str) -> tuple[DirectoryLine, ...]: ...

    def directory_line(self, addressing_id: str) -> DirectoryLine:
        """The line for one addressing identifier (PaNotFound if none)."""
        ...

    def healthcheck(self) -> bool:
        """True when the PA says it is up; never raises."""
        ...


@dataclass(frozen=True)
class ReceivedStatus:
    """One status flow the poller took (per referenced invoice; position 0 for
    a flow refused whole), and its verdict at arrival (0025_pa_lifecycle.sql)."""

    flow_id: str
    position: int
    flow_updated_at: datetime
    message_sha256: bytes | None
    message_id: str | None
    invoice_id: UUID | None
    code: int | None
    verdict: str  # applied, late, duplicate, anomaly, refused, unmatched
    rule: str
    ledger_seq: int | None = None


class PaLifecycleStore(Protocol):
    """One tenant's poll cursor and received status messages."""

    def cursor(self, *, for_update: bool = False) -> tuple[datetime | None, tuple[str, ...]]:
        """(updatedAfter, the flow ids taken at exactly that instant)."""
        ...

    def save_cursor(self, updated_after: datetime, seen: tuple[str, ...]) -> None: ...

    def flow_seen(self, flow_id: str) -> bool: ...

    def record(self, message: ReceivedStatus) -> bool:
        """False when this (flow, position) is recorded already."""
        ...

    def invoice_by_id(self, invoice_id: UUID) -> tuple[UUID, str] | None: ...

    def invoice_by_number(self, number: str) -> tuple[UUID, str] | None: ...

    def statuses(self, invoice_id: UUID) -> list[dict[str, object]]:
        """The data of the invoice's `status.changed` entries, oldest first."""
        ...

    def messages(self, invoice_id: UUID) -> list[ReceivedStatus]: ...


class PaLifecycleUnit(Protocol):
    """The transaction the poller and the lifecycle route work in."""

    @property
    def ledger(self) -> LedgerStore: ...

    @property
    def pa_lifecycle(self) -> PaLifecycleStore: ...


PaLifecycleUnitFactory = Callable[[UUID], AbstractContextManager[PaLifecycleUnit]]
