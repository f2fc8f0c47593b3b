"""PostgreSQL adapter (pg8000): connections as the application role, the
tenant-scoped unit of work, and the ledger store.

Every transaction sets `app.tenant_id` with set_config(..., is_local => true):
it vanishes at COMMIT/ROLLBACK, so a pooled connection never carries a tenant
into the next request. The policies in the schema do the isolating.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib.config import Settings
from chalicelib.domain.errors import (
    Conflict,
    DomainError,
    DuplicateIdempotencyKey,
    InvalidInput,
    Unauthorized,
    Violation,
)
from chalicelib.domain.ledger import ChainHead, LedgerEntry
from chalicelib.ports import (
    AccessRecord,
    Account,
    ApiKey,
    IssuedInvoice,
    SessionFacts,
    StoredDataKey,
    StoredQuote,
    TotpRecord,
    WrappedKey,
)

if TYPE_CHECKING:
    from chalicelib.adapters.postgres_closings import PostgresClosings
    from chalicelib.usecases.field_encryption import FieldCipher

CipherSource = Callable[[], "FieldCipher"]

Isolation = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
PAGE_SIZE = 5000  # rows per page at most...
PAGE_BYTES = 4 * 1024 * 1024  # ...and about this many payload bytes (plus one payload)


def app_connector(settings: Settings) -> Callable[[], pg8000.native.Connection]:
    """A function opening a connection as the application role."""

    def connect() -> pg8000.native.Connection:
        # TCP_NODELAY: pg8000 leaves Nagle's algorithm on, and a mid-sized
        # message (a staged PDF) then waits ~40 ms for the server's delayed ACK.
        sock = socket.create_connection((settings.db_host, settings.db_port), timeout=30)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return pg8000.native.Connection(
                user=settings.db_app_user,
                password=settings.db_app_password.get_secret_value(),
                host=settings.db_host, port=settings.db_port, database=settings.db_name,
                sock=sock,
                ssl_context=ssl.create_default_context() if settings.db_tls else None,
                timeout=30, application_name="einvoice",
            )
        except BaseException:
            sock.close()
            raise

    return connect


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error raised by pg8000, if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        code = exc.args[0].get("C")
        return str(code) if code else None
    return None


class Database:
    """Hands out transactions on one connection per thread (a function's
    container reuses it across invocations; a broken one is replaced)."""

    def __init__(self, connect: Callable[[], pg8000.native.Connection],
                 cipher: CipherSource | None = None) -> None:
        """`cipher`: where the field cipher comes from (called when first needed),
        for the columns holding personal data (invoice and quote documents,
        staged PDF/XML). Without one, those tables can be neither written nor read."""
        self._connect = connect
        self._local = threading.local()
        self.cipher = cipher

    def _connection(self) -> pg8000.native.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()

    def close(self) -> None:
        self._discard()

    @contextmanager
    def transaction(self, tenant_id: UUID | None, *, isolation: Isolation = "READ COMMITTED",
                    read_only: bool = False) -> Iterator[pg8000.native.Connection]:
        # One round trip opens the transaction and sets its tenant. The tenant
        # is a UUID object, whose text form is hex and dashes only: safe inline.
        begin = f"START TRANSACTION ISOLATION LEVEL {isolation}" + (
            " READ ONLY" if read_only else "")
        if tenant_id is not None:
            if not isinstance(tenant_id, UUID):
                raise TypeError("tenant_id must be a UUID")
            begin += f"; SELECT set_config('app.tenant_id', '{tenant_id}', true)"
        conn = self._connection()
        try:
            conn.run(begin)
        except (InterfaceError, OSError):
            # A connection that died between invocations: one fresh try.
            self._discard()
            conn = self._connection()
            conn.run(begin)
        try:
            yield conn
        except BaseException:
            try:
                conn.run("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection is unusable; drop it
                self._discard()
            raise
        try:
            conn.run("COMMIT")
        except (InterfaceError, OSError):
            self._discard()
            raise

    def ping(self) -> None:
        with self.transaction(None, read_only=True) as conn:
            conn.run("SELECT 1")

    def unit_of_work(self, tenant_id: UUID) -> TenantUnitOfWork:
        return TenantUnitOfWork(self, tenant_id)

    def snapshot(self, tenant_id: UUID) -> TenantUnitOfWork:
        """A read-only unit of work over one consistent snapshot (long reads)."""
        return TenantUnitOfWork(self, tenant_id, "REPEATABLE READ", read_only=True)


class TenantUnitOfWork:
    """The transaction of one request or job for one tenant."""

    tenants: PostgresTenants
    ledger: PostgresLedger
    data_keys: PostgresDataKeys
    users: PostgresUsers
    sessions: PostgresSessions
    second_factor: PostgresSecondFactors
    api_keys: PostgresApiKeys
    signups: PostgresSignUpClaims
    invoices: PostgresInvoices
    quotes: PostgresQuotes

    def __init__(self, database: Database, tenant_id: UUID,
                 isolation: Isolation = "READ COMMITTED", read_only: bool = False) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._isolation = isolation
        self._read_only = read_only
        self._cm: Any = None

    def __enter__(self) -> TenantUnitOfWork:
        self._cm = self._database.transaction(self._tenant_id, isolation=self._isolation,
                                             read_only=self._read_only)
        conn = self._cm.__enter__()
        self.tenants = PostgresTenants(conn)
        self.ledger = PostgresLedger(conn, self._tenant_id)
        self.data_keys = PostgresDataKeys(conn, self._tenant_id)
        self.users = PostgresUsers(conn, self._tenant_id)
        self.sessions = PostgresSessions(conn, self._tenant_id)
        self.second_factor = PostgresSecondFactors(conn, self._tenant_id)
        self.api_keys = PostgresApiKeys(conn, self._tenant_id)
        self.signups = PostgresSignUpClaims(conn)
        sealed = SealedColumns(self._database.cipher, self.data_keys)
        self.invoices = PostgresInvoices(conn, self._tenant_id, sealed)
        self.quotes = PostgresQuotes(conn, self._tenant_id, sealed)
        self._conn = conn
        return self

    @property
    def closings(self) -> PostgresClosings:
        from chalicelib.adapters.postgres_closings import PostgresClosings

        return PostgresClosings(self._conn, self._tenant_id)

    def __exit__(self, *exc: Any) -> bool | None:
        return bool(self._cm.__exit__(*exc))


class PostgresTenants:
    def __init__(self, conn: pg8000.native.Connection) -> None:
        self._conn = conn

    def add(self, tenant_id: UUID, name: str) -> None:
        self._conn.run("INSERT INTO tenants (id, name) VALUES (:id, :name)",
                       id=str(tenant_id), name=name)


def _data_refused(exc: DatabaseError, field: str) -> DomainError | None:
    """A data error the engine raised for the caller's input, as a 4xx with no
    server text (which may quote the data); None for a real fault."""
    state = sqlstate(exc) or ""
    if state.startswith("22") or state == "23514":
        return InvalidInput([Violation(field, f"refused by the database (SQLSTATE {state})")])
    return None


_ACCOUNT_COLUMNS = "id, tenant_id, role, password_hash, credential_version"


def _account(row: list[Any]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4])


class PostgresUsers:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, account: Account, email: str) -> None:
        try:
            self._conn.run(
                "INSERT INTO users (id, tenant_id, email, role, password_hash) "
                "VALUES (:id, :t, :email, :role, :hash)", id=str(account.user_id),
                t=str(account.tenant_id), email=email, role=account.role,
                hash=account.password_hash)
        except DatabaseError as exc:
            if sqlstate(exc) == "23505":
                raise Conflict([Violation("email", "is already registered")]) from None
            refused = _data_refused(exc, "email")
            if refused:
                raise refused from None
            raise

    def get(self, user_id: UUID, *, lock: bool = False) -> Account | None:
        rows = self._conn.run(f"SELECT {_ACCOUNT_COLUMNS} FROM users WHERE tenant_id = :t "
                              f"AND id = :id{' FOR UPDATE' if lock else ''}",
                              t=self._tenant, id=str(user_id))
        return _account(rows[0]) if rows else None

    def rehash(self, user_id: UUID, checked_hash: str, new_hash: str) -> bool:
        rows = self._conn.run("UPDATE users SET password_hash = :new WHERE tenant_id = :t "
                              "AND id = :id AND password_hash = :old RETURNING 1",
                              new=new_hash, old=checked_hash, t=self._tenant, id=str(user_id))
        return bool(rows)

    def change_password(self, user_id: UUID, new_hash: str) -> int:
        [[version]] = self._conn.run(
            "UPDATE users SET password_hash = :h, credential_version = credential_version + 1, "
            "password_changed_at = now() WHERE tenant_id = :t AND id = :id "
            "RETURNING credential_version", h=new_hash, t=self._tenant, id=str(user_id))
        return int(version)

    def email(self, user_id: UUID) -> str | None:
        rows = self._conn.run("SELECT email FROM users WHERE tenant_id = :t AND id = :id",
                              t=self._tenant, id=str(user_id))
        return str(rows[0][0]) if rows else None


class PostgresSessions:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, token_hash: bytes, user_id: UUID, credential_version: int,
            lifetime: timedelta, idle: timedelta) -> None:
        try:
            self._conn.run(
                "INSERT INTO sessions (token_hash, tenant_id, user_id, credential_version, "
                "expires_at, idle_timeout) VALUES (:h, :t, :u, :v, "
                "now() + make_interval(secs => :life), make_interval(secs => :idle))",
                h=token_hash, t=self._tenant, u=str(user_id), v=credential_version,
                life=lifetime.total_seconds(), idle=idle.total_seconds())
        except DatabaseError as exc:
            if sqlstate(exc) == "EL004":
                raise Unauthorized([Violation("password", "changed meanwhile: log in again")]) \
                    from None
            raise

    def revoke(self, token_hash: bytes, user_id: UUID) -> None:
        self._conn.run("UPDATE sessions SET revoked_at = now() WHERE token_hash = :h "
                       "AND user_id = :u AND revoked_at IS NULL", h=token_hash, u=str(user_id))

    def revoke_others(self, user_id: UUID, keep_token_hash: bytes) -> None:
        self._conn.run("UPDATE sessions SET revoked_at = now() WHERE tenant_id = :t "
                       "AND user_id = :u AND token_hash <> :h AND revoked_at IS NULL",
                       t=self._tenant, u=str(user_id), h=keep_token_hash)


class PostgresSecondFactors:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def get(self, user_id: UUID, *, lock: bool = False) -> TotpRecord | None:
        rows = self._conn.run(
            "SELECT secret, pending_secret, last_step FROM user_totp "
            f"WHERE tenant_id = :t AND user_id = :u{' FOR UPDATE' if lock else ''}",
            t=self._tenant, u=str(user_id))
        if not rows:
            return None
        secret, pending, last_step = rows[0]
        return TotpRecord(bytes(secret) if secret is not None else None,
                          bytes(pending) if pending is not None else None, int(last_step))

    def set_pending(self, user_id: UUID, sealed: bytes) -> None:
        self._conn.run("INSERT INTO user_totp (user_id, tenant_id, pending_secret) "
                       "VALUES (:u, :t, :s) ON CONFLICT (user_id) "
                       "DO UPDATE SET pending_secret = EXCLUDED.pending_secret",
                       u=str(user_id), t=self._tenant, s=sealed)

    def confirm(self, session_hash: bytes, sealed: bytes, step: int) -> bool:
        [[done]] = self._conn.run("SELECT second_factor_confirm(:h, :s, :step)",
                                  h=session_hash, s=sealed, step=step)
        return bool(done)

    def pass_with_step(self, session_hash: bytes, step: int) -> bool:
        # Atomic: of two requests with the same code, the second finds the
        # step already recorded once the first commits.
        [[done]] = self._conn.run("SELECT second_factor_pass_step(:h, :step)",
                                  h=session_hash, step=step)
        return bool(done)

    def replace_recovery_codes(self, user_id: UUID, digests: list[bytes]) -> None:
        self._conn.run("DELETE FROM recovery_codes WHERE tenant_id = :t AND user_id = :u",
                       t=self._tenant, u=str(user_id))
        for digest in digests:
            self._conn.run("INSERT INTO recovery_codes (tenant_id, user_id, code_hash) "
                           "VALUES (:t, :u, :h)", t=self._tenant, u=str(user_id), h=digest)

    def pass_with_recovery_code(self, session_hash: bytes, digest: bytes) -> bool:
        [[done]] = self._conn.run("SELECT second_factor_pass_recovery(:h, :d)",
                                  h=session_hash, d=digest)
        return bool(done)

    def recovery_codes_left(self, user_id: UUID) -> int:
        [[left]] = self._conn.run("SELECT count(*) FROM recovery_codes WHERE tenant_id = :t "
                                  "AND user_id = :u AND used_at IS NULL",
                                  t=self._tenant, u=str(user_id))
        return int(left)


class PostgresSessionDirectory:
    """Session lookups through auth_session_touch(), outside any tenant."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def touch(self, token_hash: bytes) -> SessionFacts | None:
        with self._database.transaction(None) as conn:
            rows = conn.run("SELECT user_id, tenant_id, role, credential_version, mfa_passed, "
                            "has_totp FROM auth_session_touch(:h)", h=token_hash)
        return SessionFacts(*rows[0]) if rows else None


class PostgresRateLimiter:
    """Counts in rate_limit_hits through rate_limit_hit(), its own short
    transaction (a refused request must still be counted)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def hit(self, key: str, window: timedelta, limit: int) -> tuple[bool, int]:
        bucket = _bucket(key)
        with self._database.transaction(None) as conn:
            [[allowed, retry_after]] = conn.run(
                "SELECT allowed, retry_after FROM rate_limit_hit(:b, "
                "make_interval(secs => :w), :n)", b=bucket, w=window.total_seconds(), n=limit)
        return bool(allowed), int(retry_after)


_API_KEY_COLUMNS = ("id, name, scopes, created_by, created_at, expires_at, last_used_at, "
                    "revoked_at")


def _api_key(row: list[Any]) -> ApiKey:
    return ApiKey(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], row[6], row[7])


class PostgresApiKeys:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def add(self, key: ApiKey, secret_hash: bytes) -> ApiKey:
        [row] = self._conn.run(
            "INSERT INTO api_keys (id, tenant_id, name, secret_hash, scopes, created_by, "
            "expires_at) VALUES (:id, :t, :name, :h, CAST(:scopes AS text[]), :by, :exp) "
            f"RETURNING {_API_KEY_COLUMNS}", id=str(key.key_id), t=self._tenant, name=key.name,
            h=secret_hash, scopes=list(key.scopes), by=str(key.created_by), exp=key.expires_at)
        return _api_key(row)

    def list(self) -> list[ApiKey]:
        rows = self._conn.run(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = :t "
                              "ORDER BY created_at, id", t=self._tenant)
        return [_api_key(row) for row in rows]

    def revoke(self, key_id: UUID) -> bool:
        rows = self._conn.run("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = :t "
                              "AND id = :id AND revoked_at IS NULL RETURNING 1",
                              t=self._tenant, id=str(key_id))
        return bool(rows)


class PostgresApiKeyDirectory:
    """API key lookups through auth_api_key(), outside any tenant."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def find(self, secret_hash: bytes) -> tuple[UUID, UUID, tuple[str, ...]] | None:
        with self._database.transaction(None) as conn:
            rows = conn.run("SELECT key_id, tenant_id, scopes FROM auth_api_key(:h)",
                            h=secret_hash)
        return (rows[0][0], rows[0][1], tuple(rows[0][2])) if rows else None


def invoices_awaiting_archive(database: Database, older_than: timedelta,
                              limit: int = 1000) -> list[tuple[UUID, UUID]]:
    """(tenant, invoice) of issued invoices still unarchived after `older_than`."""
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id, invoice_id FROM invoices_awaiting_archive("
                        "make_interval(secs => :s), :n)", s=older_than.total_seconds(), n=limit)
    return [(UUID(str(t)), UUID(str(i))) for t, i in rows]


class PostgresRetention:
    """The retention purges, each one engine function that deletes only what
    the law's period allows (the app role cannot delete those rows itself)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def purge_access_log(self) -> int:
        return self._purge("purge_access_log")

    def purge_pending_signups(self) -> int:
        return self._purge("purge_pending_signups")

    def _purge(self, function: str) -> int:
        with self._database.transaction(None) as conn:
            [[count]] = conn.run(f"SELECT {function}()")
        return int(count)


class PostgresPendingSignUps:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, token_hash: bytes, email: str, lifetime: timedelta) -> None:
        with self._database.transaction(None) as conn:
            conn.run("SELECT signup_pend(:h, :e, make_interval(secs => :s))",
                     h=token_hash, e=email, s=lifetime.total_seconds())


class _KeysOfOneTransaction:
    """A tenant's data keys, each read at most once per transaction."""

    def __init__(self, keys: PostgresDataKeys) -> None:
        self._keys = keys
        self.tenant_id = keys.tenant_id
        self._latest: StoredDataKey | None = None
        self._versions: dict[int, StoredDataKey] = {}

    def latest(self) -> StoredDataKey | None:
        if self._latest is None:
            self._latest = self._keys.latest()
        return self._latest

    def get(self, version: int) -> StoredDataKey | None:
        if version not in self._versions:
            found = self._keys.get(version)
            if found is None:
                return None
            self._versions[version] = found
        return self._versions[version]

    def add(self, key: StoredDataKey) -> bool:
        self._latest = None
        return self._keys.add(key)


SEALED_FORMAT = 1  # first byte of a sealed value (chalicelib.domain.encryption)


class SealedColumns:
    """AES-256-GCM sealing of personal-data columns (DESIGN: IBAN, contact data),
    each value bound to its tenant, table, column and row. The engine refuses
    new rows whose values are not sealed (0019_sealed_invoice_data.sql); rows
    from before that migration are read as they were stored."""

    def __init__(self, cipher: CipherSource | None, keys: PostgresDataKeys) -> None:
        self._cipher = cipher
        self._keys = _KeysOfOneTransaction(keys)

    def _source(self) -> FieldCipher:
        if self._cipher is None:
            raise RuntimeError("no field cipher configured (EINVOICE_MASTER_KEY_FILE): "
                               "personal data is never stored in clear")
        return self._cipher()

    def _place(self, table: str, column: str, row_id: str) -> Any:
        from chalicelib.domain.encryption import FieldPlace

        return FieldPlace(self._keys.tenant_id, table, column, row_id)

    def seal(self, table: str, column: str, row_id: str, value: bytes) -> bytes:
        return self._source().seal_bytes(self._keys, self._place(table, column, row_id), value)

    def open(self, table: str, column: str, row_id: str, stored: bytes) -> bytes:
        return self._source().open_bytes(self._keys, self._place(table, column, row_id),
                                         stored)

    def open_text(self, table: str, row_id: str, clear: str | None,
                  sealed: bytes | None) -> str:
        """A `document` column: sealed since 0019, in clear before."""
        if sealed is None:
            if clear is None:
                raise RuntimeError(f"{table} {row_id}: no document")
            return clear
        return self.open(table, "document", row_id, bytes(sealed)).decode("utf-8")


_INVOICE_COLUMNS = ("id, series, number, invoice_number, type_code, preceding_id, issue_date, "
                    "idempotency_key, request_sha256, document, totals, pdf_sha256, "
                    "xml_sha256, ledger_seq, archive")
_INVOICE_READ = _INVOICE_COLUMNS + ", document_sealed"


class PostgresInvoices:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID,
                 sealed: SealedColumns) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self._sealed = sealed

    def _invoice(self, row: list[Any]) -> IssuedInvoice:
        document = self._sealed.open_text("invoices", str(row[0]), row[9], row[15])
        return IssuedInvoice(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                             bytes(row[8]), document, row[10], bytes(row[11]),
                             bytes(row[12]), row[13], row[14])

    def next_number(self, series: str) -> int:
        [[number]] = self._conn.run("SELECT invoice_number_next(:s)", s=series)
        return int(number)

    def add(self, invoice: IssuedInvoice) -> None:
        try:
            self._insert(invoice)
        except DatabaseError as exc:
            if sqlstate(exc) == "23505" and exc.args[0].get("n") == \
                    "invoices_tenant_id_idempotency_key_key":
                raise DuplicateIdempotencyKey() from None
            if sqlstate(exc) == "EI005":
                raise InvalidInput([Violation("issue_date", "must not be before the issue date "
                                              "of the previous number in the series "
                                              "(chronological numbering, CGI ann. II art. 242 "
                                              "nonies A)")]) from None
            raise

    def _insert(self, invoice: IssuedInvoice) -> None:
        invoice_id = str(invoice.invoice_id)
        sealed = self._sealed.seal("invoices", "document", invoice_id,
                                   invoice.document.encode("utf-8"))
        self._conn.run(
            f"INSERT INTO invoices (tenant_id, {_INVOICE_READ}) VALUES (:t, :id, :series, "
            ":number, :invoice_number, :type_code, :preceding_id, :issue_date, :key, "
            ":request_sha256, NULL, :totals, :pdf, :xml, :seq, NULL, :sealed)",
            t=self._tenant, id=invoice_id, series=invoice.series,
            number=invoice.number, invoice_number=invoice.invoice_number,
            type_code=invoice.type_code,
            preceding_id=str(invoice.preceding_id) if invoice.preceding_id else None,
            issue_date=invoice.issue_date, key=invoice.idempotency_key,
            request_sha256=invoice.request_sha256, sealed=sealed,
            totals=invoice.totals, pdf=invoice.pdf_sha256, xml=invoice.xml_sha256,
            seq=invoice.ledger_seq)

    def _one(self, where: str, **params: Any) -> IssuedInvoice | None:
        rows = self._conn.run(f"SELECT {_INVOICE_READ} FROM invoices "
                              f"WHERE tenant_id = :t AND {where}", t=self._tenant, **params)
        if not rows:
            return None
        return self._invoice(rows[0])

    def by_idempotency_key(self, key: str) -> IssuedInvoice | None:
        return self._one("idempotency_key = :k", k=key)

    def get(self, invoice_id: UUID, *, for_update: bool = False) -> IssuedInvoice | None:
        # NO KEY UPDATE: archivers of one invoice wait for each other, while a credit
        # note or a quote referencing it (a foreign key's KEY SHARE) never waits.
        return self._one("id = :id" + (" FOR NO KEY UPDATE" if for_update else ""),
                         id=str(invoice_id))

    def latest(self, limit: int) -> list[IssuedInvoice]:
        rows = self._conn.run(f"SELECT {_INVOICE_READ} FROM invoices WHERE tenant_id = :t "
                              "ORDER BY issued_at DESC, number DESC LIMIT :n",
                              t=self._tenant, n=limit)
        return [self._invoice(row) for row in rows]

    def add_document(self, invoice_id: UUID, kind: str, content: bytes) -> None:
        sealed = self._sealed.seal("invoice_documents", "content", f"{invoice_id}/{kind}",
                                   content)
        self._conn.run("INSERT INTO invoice_documents (tenant_id, invoice_id, kind, content) "
                       "VALUES (:t, :id, :kind, :content)", t=self._tenant,
                       id=str(invoice_id), kind=kind, content=sealed)

    def documents(self, invoice_id: UUID) -> dict[str, bytes]:
        """The staged documents, opened (a PDF or XML staged in clear before 0019
        starts with '%' or '<', never with the sealed format's first byte)."""
        rows = self._conn.run("SELECT kind, content FROM invoice_documents WHERE tenant_id = :t "
                              "AND invoice_id = :id", t=self._tenant, id=str(invoice_id))
        opened: dict[str, bytes] = {}
        for kind, content in rows:
            stored = bytes(content)
            opened[kind] = (self._sealed.open("invoice_documents", "content",
                                              f"{invoice_id}/{kind}", stored)
                            if stored[:1] == bytes([SEALED_FORMAT]) else stored)
        return opened

    def record_archive(self, invoice_id: UUID, receipt: str) -> bool:
        done = self._conn.run("UPDATE invoices SET archive = :r WHERE tenant_id = :t AND id = :id "
                              "AND archive IS NULL RETURNING 1", r=receipt, t=self._tenant,
                              id=str(invoice_id))
        if done:
            self._conn.run("DELETE FROM invoice_documents WHERE tenant_id = :t "
                           "AND invoice_id = :id", t=self._tenant, id=str(invoice_id))
        return bool(done)


_QUOTE_COLUMNS = ("id, number, reference, idempotency_key, request_sha256, document, totals, "
                  "valid_until, created_at, converted_invoice_id, conversion_key, "
                  "conversion_sha256, document_sealed")


class PostgresQuotes:
    """Quotes: their own per-tenant counter (quote_number_next), never an
    invoice series; the engine freezes each quote but its conversion, set once."""

    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID,
                 sealed: SealedColumns) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self._sealed = sealed

    def _quote(self, row: list[Any]) -> StoredQuote:
        document = self._sealed.open_text("quotes", str(row[0]), row[5], row[12])
        return StoredQuote(row[0], row[1], row[2], row[3], bytes(row[4]), document, row[6],
                           row[7], row[8], row[9], row[10],
                           bytes(row[11]) if row[11] is not None else None)

    def next_number(self) -> int:
        [[number]] = self._conn.run("SELECT quote_number_next()")
        return int(number)

    def add(self, quote: StoredQuote) -> StoredQuote:
        try:
            [row] = self._conn.run(
                "INSERT INTO quotes (tenant_id, id, number, reference, idempotency_key, "
                "request_sha256, document_sealed, totals, valid_until) VALUES (:t, :id, "
                f":number, :reference, :key, :sha, :sealed, :totals, :valid_until) "
                f"RETURNING {_QUOTE_COLUMNS}", t=self._tenant, id=str(quote.quote_id),
                number=quote.number, reference=quote.reference, key=quote.idempotency_key,
                sha=quote.request_sha256, totals=quote.totals, valid_until=quote.valid_until,
                sealed=self._sealed.seal("quotes", "document", str(quote.quote_id),
                                         quote.document.encode("utf-8")))
        except DatabaseError as exc:
            if sqlstate(exc) == "23505" and exc.args[0].get("n") == \
                    "quotes_tenant_id_idempotency_key_key":
                raise DuplicateIdempotencyKey() from None
            raise
        return self._quote(row)

    def _one(self, where: str, **params: Any) -> StoredQuote | None:
        rows = self._conn.run(f"SELECT {_QUOTE_COLUMNS} FROM quotes "
                              f"WHERE tenant_id = :t AND {where}", t=self._tenant, **params)
        return self._quote(rows[0]) if rows else None

    def get(self, quote_id: UUID, *, for_update: bool = False) -> StoredQuote | None:
        return self._one("id = :id" + (" FOR NO KEY UPDATE" if for_update else ""),
                         id=str(quote_id))

    def by_idempotency_key(self, key: str) -> StoredQuote | None:
        return self._one("idempotency_key = :k", k=key)

    def record_conversion(self, quote_id: UUID, invoice_id: UUID, key: str,
                          request_sha256: bytes) -> bool:
        done = self._conn.run(
            "UPDATE quotes SET converted_invoice_id = :i, conversion_key = :k, "
            "conversion_sha256 = :s WHERE tenant_id = :t AND id = :id "
            "AND converted_invoice_id IS NULL RETURNING 1", i=str(invoice_id), k=key,
            s=request_sha256, t=self._tenant, id=str(quote_id))
        return bool(done)


class PostgresSignUpClaims:
    def __init__(self, conn: pg8000.native.Connection) -> None:
        self._conn = conn

    def take(self, token_hash: bytes) -> str | None:
        rows = self._conn.run("SELECT email FROM signup_take(:h)", h=token_hash)
        return str(rows[0][0]) if rows else None


class PostgresAccessLog:
    """One row per request, in its own transaction, in the caller's tenant
    (none for anonymous calls): RLS checks the row's tenant is that one."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def record(self, entry: AccessRecord) -> None:
        with self._database.transaction(entry.tenant_id) as conn:
            conn.run("INSERT INTO access_log (tenant_id, principal, method, route, status, "
                     "latency_ms, request_id, ip_prefix) VALUES (:t, :p, :m, :r, :s, :l, :q, :i)",
                     t=str(entry.tenant_id) if entry.tenant_id else None, p=entry.principal,
                     m=entry.method, r=entry.route, s=entry.status, l=entry.latency_ms,
                     q=entry.request_id, i=entry.ip_prefix)


def _bucket(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class PostgresLockouts:
    """lockout_wait/fail/clear(), each in its own short transaction (a failure
    must be counted even though the request that made it is refused)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def _one(self, sql: str, **params: Any) -> Any:
        with self._database.transaction(None) as conn:
            return conn.run(sql, **params)[0][0]

    def wait(self, key: str) -> int:
        return int(self._one("SELECT lockout_wait(:b)", b=_bucket(key)))

    def fail(self, key: str, free: int, base: timedelta, cap: timedelta) -> int:
        return int(self._one("SELECT lockout_fail(:b, :f, make_interval(secs => :base), "
                             "make_interval(secs => :cap))", b=_bucket(key), f=free,
                             base=base.total_seconds(), cap=cap.total_seconds()))

    def clear(self, key: str) -> None:
        self._one("SELECT lockout_clear(:b)", b=_bucket(key))


class PostgresLoginDirectory:
    """Login lookups through auth_login_lookup(), outside any tenant."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def find(self, email: str) -> Account | None:
        with self._database.transaction(None, read_only=True) as conn:
            rows = conn.run("SELECT user_id, tenant_id, role, password_hash, credential_version "
                            "FROM auth_login_lookup(:e)", e=email)
        return _account(rows[0]) if rows else None


class PostgresDataKeys:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)
        self.tenant_id = tenant_id

    def _one(self, where: str, **params: Any) -> StoredDataKey | None:
        rows = self._conn.run(
            "SELECT version, master_key_id, wrapped FROM tenant_data_keys "
            f"WHERE tenant_id = :t {where}", t=self._tenant, **params)
        if not rows:
            return None
        return StoredDataKey(rows[0][0], WrappedKey(rows[0][1], bytes(rows[0][2])))

    def latest(self) -> StoredDataKey | None:
        return self._one("ORDER BY version DESC LIMIT 1")

    def get(self, version: int) -> StoredDataKey | None:
        return self._one("AND version = :v", v=version)

    def add(self, key: StoredDataKey) -> bool:
        [[added]] = self._conn.run("SELECT data_key_add(:v, :m, :w)", v=key.version,
                                   m=key.wrapped.master_key_id, w=key.wrapped.blob)
        return bool(added)


_ENTRY_COLUMNS = "seq, kind, payload, prev_hash, hash"


def _entry(row: list[Any]) -> LedgerEntry:
    return LedgerEntry(seq=row[0], kind=row[1], payload=row[2], prev_hash=bytes(row[3]),
                       hash=bytes(row[4]))


class PostgresLedger:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def append(self, kind: str, payload: str,
               idempotency_key: str | None) -> tuple[LedgerEntry, bool] | None:
        try:
            rows = self._conn.run("SELECT seq, kind, payload, prev_hash, hash, created "
                                  "FROM ledger_append(:kind, :payload, :key)",
                                  kind=kind, payload=payload, key=idempotency_key)
        except DatabaseError as exc:
            refused = _data_refused(exc, "payload")
            if refused:
                raise refused from None
            raise
        return (_entry(rows[0]), bool(rows[0][5])) if rows else None

    def head(self) -> ChainHead | None:
        rows = self._conn.run("SELECT seq, hash FROM ledger_heads WHERE tenant_id = :t",
                              t=self._tenant)
        return ChainHead(rows[0][0], bytes(rows[0][1])) if rows else None

    def entry(self, seq: int) -> LedgerEntry | None:
        rows = self._conn.run(f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries "
                              "WHERE tenant_id = :t AND seq = :s", t=self._tenant, s=seq)
        return _entry(rows[0]) if rows else None

    def entries(self, after_seq: int = 0) -> Iterator[LedgerEntry]:
        # Keyset pages cut at PAGE_SIZE rows or PAGE_BYTES of payload, whichever
        # comes first (a page always holds at least one row): memory stays
        # bounded whatever the chain's length or its payloads' sizes.
        last = after_seq
        while True:
            rows = self._conn.run(
                f"SELECT {_ENTRY_COLUMNS} FROM ("
                f"  SELECT {_ENTRY_COLUMNS}, sum(octet_length(payload)) OVER (ORDER BY seq)"
                "     - octet_length(payload) AS before"
                "   FROM ledger_entries WHERE tenant_id = :t AND seq > :after"
                "   ORDER BY seq LIMIT :n) AS page "
                "WHERE before < :budget ORDER BY seq",
                t=self._tenant, after=last, n=PAGE_SIZE, budget=PAGE_BYTES)
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            last = rows[-1][0]
