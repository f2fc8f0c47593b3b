"""In-memory stand-ins for the ports in chalicelib/ports.py: enough of each
to drive the use cases' branch logic in milliseconds, with no PostgreSQL, no
S3 and no schematron worker. What the engine itself enforces (constraints,
triggers, row locks) is left to the PostgreSQL tests."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.domain import merkle
from chalicelib.domain.closing import (
    MONEY_PATTERN,
    KindSum,
    RateSum,
    key_id_for,
)
from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    Conflict,
    DuplicateIdempotencyKey,
    NotFound,
    Violation,
)
from chalicelib.domain.kinds import CLOSING_SEALED, MONEY_KINDS
from chalicelib.domain.ledger import (
    GENESIS,
    ChainHead,
    LedgerEntry,
    next_entry,
    payload_format_problem,
)
from chalicelib.domain.passwords import Passwords
from chalicelib.ports import (
    Account,
    ApiKeyStore,
    ArchivedObject,
    Clock,
    DataKeyStore,
    IssuedInvoice,
    Mail,
    SecondFactorStore,
    SessionStore,
    StoredClosing,
    StoredQuote,
    TenantStore,
    WitnessVersion,
)

if TYPE_CHECKING:
    from chalicelib.domain.invoice import InvoiceDraft, Totals
    from chalicelib.usecases.invoicing import InvoicePorts
    from chalicelib.usecases.quotes import QuotePorts


class FrozenClock:
    """A clock that says what it is told (the Clock port)."""

    def __init__(self, moment: datetime = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


# ---------------------------------------------------------------- the database


@dataclass
class TenantRecords:
    """Everything one tenant's transactions read and write, as plain objects:
    each store keeps what the use case handed it and hands back the same."""

    name: str
    entries: list[LedgerEntry] = field(default_factory=list)
    entry_keys: dict[str, int] = field(default_factory=dict)  # idempotency key -> seq
    series: dict[str, int] = field(default_factory=dict)  # last number given per series
    invoices: dict[UUID, IssuedInvoice] = field(default_factory=dict)
    staged: dict[UUID, dict[str, bytes]] = field(default_factory=dict)
    quote_number: int = 0
    quotes: dict[UUID, StoredQuote] = field(default_factory=dict)
    closings: dict[UUID, StoredClosing] = field(default_factory=dict)
    witnesses: dict[tuple[str, int], tuple[str, str, bytes]] = field(default_factory=dict)
    users: dict[UUID, tuple[Account, str]] = field(default_factory=dict)


@dataclass
class PendingSignUp:
    email: str
    expires_at: datetime


class FakeDatabase:
    """An in-memory database behind the UnitOfWork port. A unit of work sees a
    copy of its tenant's records and of the shared ones, written back only if
    it ends without an exception: a failure anywhere rolls it all back, as a
    transaction does. Transactions run one at a time (no concurrency here)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or FrozenClock()
        self.tenants: dict[UUID, TenantRecords] = {}
        self.pending_signups: dict[bytes, PendingSignUp] = {}
        self.broken: set[UUID] = set()  # tenants whose every transaction fails
        self.transactions = 0  # units of work committed

    def add_tenant(self, name: str = "Atelier") -> UUID:
        tenant_id = uuid4()
        self.tenants[tenant_id] = TenantRecords(name)
        return tenant_id

    def emails(self) -> dict[str, Account]:
        return {email: account for records in self.tenants.values()
                for account, email in records.users.values()}

    @contextmanager
    def unit_of_work(self, tenant_id: UUID) -> Iterator[FakeUnitOfWork]:
        if tenant_id in self.broken:
            raise ConnectionError(f"tenant {tenant_id}: the database is unreachable")
        tenants = {t: copy.deepcopy(r) for t, r in self.tenants.items()}
        uow = FakeUnitOfWork(self, tenant_id, tenants, copy.deepcopy(self.pending_signups))
        yield uow
        self.tenants = uow.all_tenants
        self.pending_signups = uow.pending_signups
        self.transactions += 1

    def records(self, tenant_id: UUID) -> TenantRecords:
        """The committed records of a tenant (for assertions)."""
        return self.tenants[tenant_id]


class FakeUnitOfWork:
    """One transaction scoped to one tenant (the UnitOfWork port)."""

    def __init__(self, database: FakeDatabase, tenant_id: UUID,
                 tenants: dict[UUID, TenantRecords],
                 pending_signups: dict[bytes, PendingSignUp]) -> None:
        self.database = database
        self.tenant_id = tenant_id
        self.all_tenants = tenants
        self.pending_signups = pending_signups

    def mine(self) -> TenantRecords | None:
        return self.all_tenants.get(self.tenant_id)

    def require(self) -> TenantRecords:
        records = self.mine()
        if records is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        return records

    @property
    def tenants(self) -> TenantStore:
        return FakeTenantStore(self)

    @property
    def ledger(self) -> FakeLedgerStore:
        return FakeLedgerStore(self)

    @property
    def data_keys(self) -> DataKeyStore:
        raise NotImplementedError("no fake data keys: field encryption is tested on PostgreSQL")

    @property
    def users(self) -> FakeUserStore:
        return FakeUserStore(self)

    @property
    def sessions(self) -> SessionStore:
        raise NotImplementedError("no fake sessions: they are tested on PostgreSQL")

    @property
    def second_factor(self) -> SecondFactorStore:
        raise NotImplementedError("no fake second factor: it is tested on PostgreSQL")

    @property
    def api_keys(self) -> ApiKeyStore:
        raise NotImplementedError("no fake API keys: they are tested on PostgreSQL")

    @property
    def signups(self) -> FakeSignUpClaims:
        return FakeSignUpClaims(self)

    @property
    def invoices(self) -> FakeInvoiceStore:
        return FakeInvoiceStore(self)

    @property
    def quotes(self) -> FakeQuoteStore:
        return FakeQuoteStore(self)

    @property
    def closings(self) -> FakeClosingStore:
        return FakeClosingStore(self)


class FakeTenantStore:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def add(self, tenant_id: UUID, name: str) -> None:
        if tenant_id in self._uow.all_tenants:
            raise Conflict([Violation("tenant_id", "exists already")])
        self._uow.all_tenants[tenant_id] = TenantRecords(name)


def recorded_at(entry: LedgerEntry) -> datetime:
    """The entry's recording time, from its payload's "at" (as the engine reads it)."""
    at: str = json.loads(entry.payload)["at"]
    return datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class FakeLedgerStore:
    """The chain, hashed by the domain's own code (the engine's is checked on PostgreSQL)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def append(self, kind: str, payload: str,
               idempotency_key: str | None) -> tuple[LedgerEntry, bool] | None:
        records = self._uow.mine()
        if records is None:
            return None
        if idempotency_key is not None and idempotency_key in records.entry_keys:
            return records.entries[records.entry_keys[idempotency_key] - 1], False
        head = self.head()
        assert head is not None
        entry = next_entry(head, kind, payload)
        records.entries.append(entry)
        if idempotency_key is not None:
            records.entry_keys[idempotency_key] = entry.seq
        return entry, True

    def head(self) -> ChainHead | None:
        records = self._uow.mine()
        if records is None:
            return None
        if not records.entries:
            return GENESIS
        last = records.entries[-1]
        return ChainHead(last.seq, last.hash)

    def entry(self, seq: int) -> LedgerEntry | None:
        entries = self._uow.require().entries
        return entries[seq - 1] if 1 <= seq <= len(entries) else None

    def entries(self, after_seq: int = 0) -> Iterator[LedgerEntry]:
        return iter(self._uow.require().entries[max(after_seq, 0):])


class FakeUserStore:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def add(self, account: Account, email: str) -> None:
        taken = {e for records in self._uow.all_tenants.values()
                 for _, e in records.users.values()}
        if email in taken:
            raise Conflict([Violation("email", "is already registered")])
        self._uow.require().users[account.user_id] = (account, email)

    def get(self, user_id: UUID, *, lock: bool = False) -> Account | None:
        found = self._uow.require().users.get(user_id)
        return found[0] if found else None

    def rehash(self, user_id: UUID, checked_hash: str, new_hash: str) -> bool:
        users = self._uow.require().users
        account, email = users[user_id]
        if account.password_hash != checked_hash:
            return False
        users[user_id] = (replace(account, password_hash=new_hash), email)
        return True

    def change_password(self, user_id: UUID, new_hash: str) -> int:
        users = self._uow.require().users
        account, email = users[user_id]
        version = account.credential_version + 1
        users[user_id] = (replace(account, password_hash=new_hash,
                                  credential_version=version), email)
        return version

    def email(self, user_id: UUID) -> str | None:
        found = self._uow.require().users.get(user_id)
        return found[1] if found else None


class FakeLoginDirectory:
    """The lookup by email before any tenant is known (the LoginDirectory port)."""

    def __init__(self, database: FakeDatabase) -> None:
        self._database = database

    def find(self, email: str) -> Account | None:
        return self._database.emails().get(email)


class FakePendingSignUps:
    """Addresses waiting for confirmation, outside any tenant (the PendingSignUps port)."""

    def __init__(self, database: FakeDatabase) -> None:
        self._database = database

    def add(self, token_hash: bytes, email: str, lifetime: timedelta) -> None:
        self._database.pending_signups[token_hash] = PendingSignUp(
            email, self._database.clock.now() + lifetime)


class FakeSignUpClaims:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def take(self, token_hash: bytes) -> str | None:
        pending = self._uow.pending_signups.pop(token_hash, None)
        if pending is None or pending.expires_at <= self._uow.database.clock.now():
            return None
        return pending.email


class FakeInvoiceStore:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def next_number(self, series: str) -> int:
        records = self._uow.require()
        records.series[series] = records.series.get(series, 0) + 1
        return records.series[series]

    def add(self, invoice: IssuedInvoice) -> None:
        records = self._uow.require()
        if any(i.idempotency_key == invoice.idempotency_key for i in records.invoices.values()):
            raise DuplicateIdempotencyKey(invoice.idempotency_key)
        records.invoices[invoice.invoice_id] = invoice

    def by_idempotency_key(self, key: str) -> IssuedInvoice | None:
        return next((i for i in self._uow.require().invoices.values()
                     if i.idempotency_key == key), None)

    def get(self, invoice_id: UUID, *, for_update: bool = False) -> IssuedInvoice | None:
        return self._uow.require().invoices.get(invoice_id)

    def latest(self, limit: int) -> list[IssuedInvoice]:
        return list(reversed(self._uow.require().invoices.values()))[:limit]

    def add_document(self, invoice_id: UUID, kind: str, content: bytes) -> None:
        self._uow.require().staged.setdefault(invoice_id, {})[kind] = content

    def documents(self, invoice_id: UUID) -> dict[str, bytes]:
        return dict(self._uow.require().staged.get(invoice_id, {}))

    def record_archive(self, invoice_id: UUID, receipt: Any) -> bool:
        records = self._uow.require()
        invoice = records.invoices[invoice_id]
        if invoice.archive is not None:
            return False
        records.invoices[invoice_id] = replace(invoice, archive=receipt)
        records.staged.pop(invoice_id, None)
        return True


class FakeQuoteStore:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def next_number(self) -> int:
        records = self._uow.require()
        records.quote_number += 1
        return records.quote_number

    def add(self, quote: StoredQuote) -> StoredQuote:
        records = self._uow.require()
        if any(q.idempotency_key == quote.idempotency_key for q in records.quotes.values()):
            raise DuplicateIdempotencyKey(quote.idempotency_key)
        stored = replace(quote, created_at=self._uow.database.clock.now())
        records.quotes[quote.quote_id] = stored
        return stored

    def get(self, quote_id: UUID, *, for_update: bool = False) -> StoredQuote | None:
        return self._uow.require().quotes.get(quote_id)

    def by_idempotency_key(self, key: str) -> StoredQuote | None:
        return next((q for q in self._uow.require().quotes.values()
                     if q.idempotency_key == key), None)

    def record_conversion(self, quote_id: UUID, invoice_id: UUID, key: str,
                          request_sha256: bytes) -> bool:
        quotes = self._uow.require().quotes
        quote = quotes[quote_id]
        if quote.converted_invoice_id is not None:
            return False
        quotes[quote_id] = replace(quote, converted_invoice_id=invoice_id, conversion_key=key,
                                   conversion_sha256=request_sha256)
        return True


def _merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 root of the leaves (entry hashes), computed naively."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_merkle_root(leaves[:split]), _merkle_root(leaves[split:]))


_MONEY = re.compile(MONEY_PATTERN)


def _amount(value: object) -> Decimal:
    """What the engine sums: only strings that are plain decimals."""
    return Decimal(value) if isinstance(value, str) and _MONEY.match(value) else Decimal(0)


class FakeClosingStore:
    """Closings over the fake chain; sums, counts and the Merkle root are
    computed here the way the engine's SQL does (checked on PostgreSQL)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def _closings(self) -> list[StoredClosing]:
        return list(self._uow.require().closings.values())

    def _range(self, first_seq: int, last_seq: int) -> list[LedgerEntry]:
        return [e for e in self._uow.require().entries if first_seq <= e.seq <= last_seq]

    def lock(self) -> None:
        return None  # one transaction at a time here

    def get(self, period_kind: str, period_start: date) -> StoredClosing | None:
        return next((c for c in self._closings()
                     if (c.period_kind, c.period_start) == (period_kind, period_start)), None)

    def by_id(self, closing_id: UUID) -> StoredClosing | None:
        return self._uow.require().closings.get(closing_id)

    def latest(self, period_kind: str | None = None) -> StoredClosing | None:
        if period_kind is None:
            return max(self._closings(), key=lambda c: c.entry_seq, default=None)
        return max((c for c in self._closings() if c.period_kind == period_kind),
                   key=lambda c: c.period_start, default=None)

    def at_or_before(self, seq: int) -> StoredClosing | None:
        return max((c for c in self._closings() if c.last_seq <= seq),
                   key=lambda c: (c.last_seq, c.entry_seq), default=None)

    def covering(self, seq: int) -> StoredClosing | None:
        return min((c for c in self._closings() if c.last_seq >= seq),
                   key=lambda c: (c.last_seq, c.entry_seq), default=None)

    def recent(self, limit: int) -> list[StoredClosing]:
        return sorted(self._closings(), key=lambda c: c.entry_seq, reverse=True)[:limit]

    def last_seq_before(self, after_seq: int, moment: datetime) -> int:
        seqs = [e.seq for e in self._uow.require().entries
                if e.seq > after_seq and recorded_at(e) < moment]
        return max(seqs, default=after_seq)

    def first_activity(self, after_seq: int) -> datetime | None:
        return next((recorded_at(e) for e in self._uow.require().entries
                     if e.seq > after_seq and e.kind != CLOSING_SEALED), None)

    def first_malformed(self, after_seq: int) -> int | None:
        return next((e.seq for e in self._uow.require().entries
                     if e.seq > after_seq and payload_format_problem(e.payload)), None)

    def kind_counts(self, first_seq: int, last_seq: int) -> dict[str, int]:
        return dict(Counter(e.kind for e in self._range(first_seq, last_seq)))

    def money(self, first_seq: int, last_seq: int) -> tuple[list[KindSum], list[RateSum]]:
        kinds: dict[str, list[Decimal]] = {}
        counts: Counter[str] = Counter()
        rates: dict[tuple[str, str, str], list[Decimal]] = {}
        for entry in self._range(first_seq, last_seq):
            if entry.kind not in MONEY_KINDS:
                continue
            totals = json.loads(entry.payload)["data"].get("totals", {})
            counts[entry.kind] += 1
            sums = kinds.setdefault(entry.kind, [Decimal(0)] * 3)
            for i, name in enumerate(("tax_exclusive_amount", "tax_total",
                                      "tax_inclusive_amount")):
                sums[i] += _amount(totals.get(name))
            for group in totals.get("vat_breakdown", []):
                category, rate = group.get("category"), group.get("rate")
                if isinstance(category, str) and isinstance(rate, str):
                    line = rates.setdefault((entry.kind, category, rate), [Decimal(0)] * 2)
                    line[0] += _amount(group.get("taxable_amount"))
                    line[1] += _amount(group.get("tax_amount"))
        return ([KindSum(kind, counts[kind], *sums) for kind, sums in kinds.items()],
                [RateSum(kind, category, rate, *sums)
                 for (kind, category, rate), sums in rates.items()])

    def merkle_root(self, size: int) -> bytes:
        return _merkle_root([e.hash for e in self._uow.require().entries[:size]])

    def merkle_nodes(self, coords: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        hashes = [e.hash for e in self._uow.require().entries]
        found = {}
        for level, index in coords:
            leaves = hashes[index << level:(index + 1) << level]
            if len(leaves) == 1 << level:
                found[(level, index)] = _merkle_root(leaves)
        return found

    def add(self, closing: StoredClosing) -> None:
        closings = self._uow.require().closings
        if self.get(closing.period_kind, closing.period_start) is not None:
            raise Conflict([Violation("period", "sealed already")])
        closings[closing.closing_id] = replace(closing,
                                               sealed_at=self._uow.database.clock.now())

    def last_witnessed(self, kind: str) -> int | None:
        return max((seq for k, seq in self._uow.require().witnesses if k == kind), default=None)

    def witnessed(self, kind: str, seq: int) -> bool:
        return (kind, seq) in self._uow.require().witnesses

    def record_witness(self, kind: str, seq: int, key: str, version_id: str,
                       sha256: bytes) -> None:
        self._uow.require().witnesses[(kind, seq)] = (key, version_id, sha256)


# ---------------------------------------------------------------- the other ports


class FakeDocuments:
    """Factur-X production without the formats' libraries (the InvoiceDocuments
    port): small deterministic bytes per invoice, and the problems and
    unprintable texts a test asks for."""

    def __init__(self, problems: list[Violation] | None = None,
                 unprintable: list[Violation] | None = None) -> None:
        self.found_problems = problems or []
        self.found_unprintable = unprintable or []
        self.calls: list[str] = []

    def xml(self, draft: InvoiceDraft, invoice_number: str, totals: Totals) -> bytes:
        self.calls.append("xml")
        return f"<Invoice number={invoice_number!r} due={totals.amount_due}/>".encode()

    def pdf(self, draft: InvoiceDraft, invoice_number: str, totals: Totals,
            created: datetime) -> bytes:
        self.calls.append("pdf")
        return f"%PDF visual {invoice_number} {created.isoformat()}".encode()

    def factur_x(self, pdf: bytes, xml: bytes, draft: InvoiceDraft, invoice_number: str,
                 created: datetime) -> bytes:
        self.calls.append("factur_x")
        return pdf + b"\n%embedded\n" + xml

    def problems(self, xml: bytes) -> list[Violation]:
        self.calls.append("problems")
        return list(self.found_problems)

    def unprintable(self, draft: InvoiceDraft) -> list[Violation]:
        self.calls.append("unprintable")
        return list(self.found_unprintable)


class FakeArchive:
    """An Object Lock bucket in memory (the InvoiceArchive and WitnessArchive
    ports): versions per key, never overwritten; `unsafe` makes check_ready
    refuse, `failing_puts` makes that many next puts fail."""

    def __init__(self) -> None:
        self.objects: dict[str, list[tuple[str, bytes, datetime]]] = {}
        self.unsafe = False
        self.failing_puts = 0
        self.puts = 0

    def check_ready(self) -> None:
        if self.unsafe:
            raise ArchiveNotSafe("the bucket has no COMPLIANCE default retention")

    def put(self, key: str, content: bytes, retain_until: datetime,
            content_type: str, *, first_attempt: bool = False) -> ArchivedObject:
        self.puts += 1
        if self.failing_puts:
            self.failing_puts -= 1
            raise ConnectionError("the object store did not answer")
        versions = self.objects.setdefault(key, [])
        if not first_attempt and versions and versions[-1][1] == content:
            version_id, _, until = versions[-1]
        else:
            version_id, until = uuid4().hex, retain_until
            versions.append((version_id, content, until))
        return ArchivedObject(key, version_id, hashlib.sha256(content).digest(), "COMPLIANCE",
                              until)

    def get(self, key: str, version_id: str, sha256: bytes) -> bytes:
        content = next(c for v, c, _ in self.objects[key] if v == version_id)
        if hashlib.sha256(content).digest() != sha256:
            raise ArchiveTampered(f"{key}: not the bytes archived")
        return content

    def history(self, prefix: str) -> list[WitnessVersion]:
        return [WitnessVersion(key, version_id, content)
                for key, versions in sorted(self.objects.items()) if key.startswith(prefix)
                for version_id, content, _ in reversed(versions)]


class FakeSigner:
    """A real Ed25519 key made from a fixed seed (the ClosingSigner port)."""

    def __init__(self, seed: bytes = bytes(range(32))) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id_for(self._public)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class FakeMailer:
    """An outbox in memory (the Mailer port)."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    def send(self, mail: Mail) -> None:
        self.sent.append(mail)

    def to(self, email: str) -> list[Mail]:
        return [m for m in self.sent if m.to == email]


def cheap_passwords() -> Passwords:
    """The same argon2id code path with the smallest parameters it takes."""
    return Passwords(time_cost=1, memory_kib=8, parallelism=1)


@dataclass
class FakeInvoicing:
    """One tenant's issuing and quoting over the fakes: the ports the use cases
    take, and what they left behind."""

    database: FakeDatabase
    documents: FakeDocuments
    archive: FakeArchive
    clock: FrozenClock
    tenant: UUID

    @classmethod
    def start(cls) -> FakeInvoicing:
        clock = FrozenClock()  # 2026-11-23 09:30 UTC, 10:30 in Paris
        database = FakeDatabase(clock)
        return cls(database, FakeDocuments(), FakeArchive(), clock, database.add_tenant())

    @property
    def ports(self) -> InvoicePorts:
        from chalicelib.usecases.invoicing import InvoicePorts

        return InvoicePorts(self.database.unit_of_work, self.documents, self.archive,
                            self.clock)

    @property
    def quote_ports(self) -> QuotePorts:
        from chalicelib.usecases.quotes import QuotePorts

        return QuotePorts(self.database.unit_of_work, self.documents, self.clock)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.database.records(self.tenant).entries]

    def invoices(self) -> list[Any]:
        return list(self.database.records(self.tenant).invoices.values())

    def quotes(self) -> list[Any]:
        return list(self.database.records(self.tenant).quotes.values())
