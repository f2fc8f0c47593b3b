"""Connections as the application role, and the tenant-scoped unit of work.

Every transaction sets `app.tenant_id` with set_config(..., is_local => true):
it vanishes at COMMIT/ROLLBACK, so a pooled connection never carries a tenant
into the next request. The policies in the schema do the isolating.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib.adapters.postgres.accounts import (
    PostgresSecondFactors,
    PostgresSessions,
    PostgresUsers,
)
from chalicelib.adapters.postgres.api_keys import PostgresApiKeys
from chalicelib.adapters.postgres.closings import PostgresClosings
from chalicelib.adapters.postgres.data_keys import PostgresDataKeys
from chalicelib.adapters.postgres.invoices import PostgresInvoices
from chalicelib.adapters.postgres.ledger import PostgresLedger
from chalicelib.adapters.postgres.pa_lifecycle import PostgresPaLifecycle
from chalicelib.adapters.postgres.quotes import PostgresQuotes
from chalicelib.adapters.postgres.sealed import CipherSource, SealedColumns
from chalicelib.adapters.postgres.signups import PostgresSignUpClaims
from chalicelib.adapters.postgres.sql import Isolation, sqlstate
from chalicelib.adapters.postgres.tenants import PostgresTenants
from chalicelib.config import Settings
from chalicelib.domain.errors import DatabaseUnavailable

# The server's word that this connection is over, or never began: class 08
# (connection exception), an administrator's or a crash's shutdown (57P01,
# 57P02), starting up or shutting down (57P03), no free connection (53300).
_GONE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection is unusable (network, server restart,
    refused), not that a statement failed: only then is the database unavailable.
    pg8000 raises most socket errors as InterfaceError, but a session the
    server ended mid-read as the bare ConnectionResetError."""
    if isinstance(exc, InterfaceError | OSError):
        return True
    state = sqlstate(exc) if isinstance(exc, DatabaseError) else None
    return state is not None and (state.startswith("08") or state in _GONE_STATES)


def tls_context(settings: Settings) -> ssl.SSLContext | bool:
    """How to talk TLS to PostgreSQL, as pg8000 takes it.

    db_tls off: False, plain TCP only (pg8000's default, None, would try TLS
    unverified and fall back to plain text in silence). On: verify-full, the
    certificate chain checked and its name matched against db_host; against
    the configured CA only (db_ca_file or db_ca_pem), else the system's CAs.
    """
    if not settings.db_tls:
        return False
    if settings.db_ca_file is None and settings.db_ca_pem is None:
        context = ssl.create_default_context()
    else:
        # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname, no CA loaded.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if settings.db_ca_file is not None:
                context.load_verify_locations(cafile=str(settings.db_ca_file))
            else:
                context.load_verify_locations(cadata=settings.db_ca_pem)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # Named by type only: the message may quote the PEM.
            raise ValueError(f"the database CA cannot be loaded ({type(exc).__name__})"
                             ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connector(settings: Settings, user: str, password: str
              ) -> Callable[[], pg8000.native.Connection]:
    """A function opening a connection as `user`, with the TLS of `settings`
    (its context built once, here)."""
    tls = tls_context(settings)

    def connect() -> pg8000.native.Connection:
        # TCP_NODELAY: pg8000 leaves Nagle's algorithm on, and a mid-sized
        # message (a staged PDF) then waits ~40 ms for the server's delayed ACK.
        sock = socket.create_connection((settings.db_host, settings.db_port), timeout=30)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return pg8000.native.Connection(
                user=user, password=password,
                host=settings.db_host, port=settings.db_port, database=settings.db_name,
                sock=sock, ssl_context=tls, timeout=30, application_name="einvoice",
            )
        except BaseException:
            sock.close()
            raise

    return connect


def app_connector(settings: Settings) -> Callable[[], pg8000.native.Connection]:
    """A function opening a connection as the application role."""
    return connector(settings, settings.db_app_user,
                     settings.db_app_password.get_secret_value())


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
            try:
                conn = self._connect()
            except Exception as exc:
                if connection_lost(exc):
                    raise DatabaseUnavailable(f"cannot connect ({type(exc).__name__})") from exc
                raise
            self._local.conn = conn
        return conn

    def _unavailable(self, exc: BaseException, when: str) -> DatabaseUnavailable:
        self._discard()
        return DatabaseUnavailable(f"connection lost {when} ({type(exc).__name__}, "
                                   f"SQLSTATE {sqlstate(exc)})")

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
        # The tenant goes as a bind parameter (extended protocol), never inside
        # the SQL text: pg_stat_activity.query of this session, which every
        # other session of the application role may read, shows only `$1`.
        begin = f"START TRANSACTION ISOLATION LEVEL {isolation}" + (
            " READ ONLY" if read_only else "")
        if tenant_id is not None and not isinstance(tenant_id, UUID):
            raise TypeError("tenant_id must be a UUID")
        conn = self._connection()
        try:
            conn.run(begin)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            # A connection that died between invocations (or a restarted
            # server's notice on it): one fresh try.
            self._discard()
            conn = self._connection()
            try:
                conn.run(begin)
            except Exception as again:
                if connection_lost(again):
                    raise self._unavailable(again, "at BEGIN") from again
                raise
        try:
            if tenant_id is not None:
                conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant_id))
            yield conn
        except BaseException as exc:
            try:
                conn.run("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection is unusable; drop it
                self._discard()
            if isinstance(exc, Exception) and connection_lost(exc):
                raise self._unavailable(exc, "in a transaction") from exc
            raise
        try:
            conn.run("COMMIT")
        except Exception as exc:
            if connection_lost(exc):  # committed or not: the key settles it on retry
                raise self._unavailable(exc, "at COMMIT") from exc
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
    def pa_lifecycle(self) -> PostgresPaLifecycle:
        return PostgresPaLifecycle(self._conn, self._tenant_id)

    @property
    def closings(self) -> PostgresClosings:

        return PostgresClosings(self._conn, self._tenant_id)

    def __exit__(self, *exc: Any) -> bool | None:
        return bool(self._cm.__exit__(*exc))
