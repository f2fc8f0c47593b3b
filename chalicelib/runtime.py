"""Composition root: the real adapters, built lazily once per container.

The one module that constructs adapters: handlers, route modules and
schedules ask it for a port (or a use case's bundle of ports) and never name
an adapter themselves. Every import below sits inside the factory that needs
it, so a cold start pays only for what its trigger uses (no boto3, mail,
anchoring clients or document libraries until asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from chalicelib.config import Settings, settings
from chalicelib.ports import Clock, SystemClock

if TYPE_CHECKING:  # types only: each is imported for real where it is built
    from chalicelib.adapters.postgres import Database
    from chalicelib.documents.schematron import RuleFailure
    from chalicelib.domain.ledger import LedgerEntry
    from chalicelib.domain.passwords import Passwords
    from chalicelib.ports import (
        AccessLog,
        ApiKeyDirectory,
        ClosingSigner,
        InvoiceDocuments,
        InvoiceQueue,
        KeyWrapper,
        Lockouts,
        LoginDirectory,
        Mailer,
        PaClient,
        PaLifecycleUnitFactory,
        PendingSignUps,
        RateLimiter,
        Retention,
        SessionDirectory,
        StoredAnchor,
        WitnessArchive,
    )
    from chalicelib.usecases.anchor import AnchorPorts
    from chalicelib.usecases.append_ledger import AppendRequest
    from chalicelib.usecases.field_encryption import FieldCipher
    from chalicelib.usecases.invoicing import InvoicePorts, Issued
    from chalicelib.usecases.quotes import QuotePorts
    from chalicelib.usecases.seal_period import ClosingPorts
    from chalicelib.usecases.sessions import SessionPolicy
    from chalicelib.usecases.witness import WitnessPorts


class ObjectStore(Protocol):
    """What this module asks of the S3 client itself (the archive adapter
    asks the rest): whether the bucket answers."""

    def head_bucket(self, *, Bucket: str) -> object: ...


@lru_cache(maxsize=1)
def database() -> Database:
    from chalicelib.adapters.postgres import Database, app_connector

    return Database(app_connector(settings()), cipher=field_cipher)


@lru_cache(maxsize=1)
def clock() -> Clock:
    return SystemClock()


@lru_cache(maxsize=1)
def object_store() -> ObjectStore:
    from chalicelib.adapters.aws import s3_client  # boto3 only where it is used

    client: ObjectStore = s3_client(settings())
    return client


@lru_cache(maxsize=1)
def passwords() -> Passwords:
    from chalicelib.domain.passwords import Passwords

    s = settings()
    return Passwords(s.password_time_cost, s.password_memory_kib, s.password_parallelism)


# --- Keys port and closing signer (keys helper) ------------------------------


@lru_cache(maxsize=1)
def field_cipher() -> FieldCipher:
    from chalicelib.usecases.field_encryption import FieldCipher

    return FieldCipher(key_wrapper())


@lru_cache(maxsize=1)
def key_wrapper() -> KeyWrapper:
    return key_wrapper_for(settings())


def key_wrapper_for(s: Settings) -> KeyWrapper:
    """The keys port of EINVOICE_KEY_PROVIDER: the local key file (default), AWS
    KMS or Scaleway Key Manager. With a provider, a key file still set only
    unwraps what it wrapped (until rotate_keys re-wraps it under the provider)."""
    from chalicelib.adapters.keys import KeyRing, LocalKeyFile, OwnedKeys

    local = LocalKeyFile(s.master_key_file) if s.master_key_file is not None else None
    current: OwnedKeys
    if s.key_provider == "aws-kms" and s.kms_key_id:
        from chalicelib.adapters.kms import AwsKmsKeys, kms_client

        current = AwsKmsKeys(kms_client(s.kms_key_id), s.kms_key_id)
    elif s.key_provider == "scaleway-key-manager" and s.scw_key_id and s.scw_secret_key:
        from chalicelib.adapters.key_manager import ScalewayKeyManager

        current = ScalewayKeyManager(s.scw_key_id, s.scw_region, s.scw_secret_key,
                                     api_url=s.scw_api_url)
    elif s.key_provider == "local" and local is not None:
        return local
    else:
        raise RuntimeError(f"keys provider {s.key_provider} is not configured "
                           "(EINVOICE_MASTER_KEY_FILE, or EINVOICE_KMS_KEY_ID, or "
                           "EINVOICE_SCW_KEY_ID and EINVOICE_SCW_SECRET_KEY): sealed fields "
                           "cannot be used")
    return KeyRing(current, [local] if local is not None else [])


@lru_cache(maxsize=1)
def closing_signer() -> ClosingSigner:
    """From EINVOICE_CLOSING_KEY_PEM (a secret: Scaleway secret environment
    variable, or Secrets Manager on AWS) or EINVOICE_CLOSING_KEY_FILE."""
    from chalicelib.adapters.signing import LocalSigningKey

    s = settings()
    if s.closing_key_pem is not None:
        return LocalSigningKey.from_pem(s.closing_key_pem, "EINVOICE_CLOSING_KEY_PEM")
    if s.closing_key_file is None:
        raise RuntimeError("neither EINVOICE_CLOSING_KEY_PEM nor EINVOICE_CLOSING_KEY_FILE is "
                           "set: periods cannot be sealed")
    return LocalSigningKey(s.closing_key_file)


@lru_cache(maxsize=1)
def pinned_keys() -> Mapping[str, bytes]:
    """The public keys closings and witnesses are checked against, never the
    database's: the signer's own (when this function has one) and the retired
    ones of EINVOICE_CLOSING_PUBLIC_KEYS (rotation is configuration)."""
    from chalicelib.domain.closing import pinned_keys as by_id

    s = settings()
    raw = [bytes.fromhex(key) for key in s.closing_public_keys]
    if s.closing_key_pem is not None or s.closing_key_file is not None:
        raw.append(closing_signer().public_key)
    return MappingProxyType(by_id(raw))


# --- end of the keys helper's block --------------------------------------------


def closing_ports() -> ClosingPorts:
    from chalicelib.usecases.seal_period import ClosingPorts

    return ClosingPorts(database().unit_of_work, closing_signer(), clock())


def witness_ports() -> WitnessPorts:
    from chalicelib.usecases.witness import WitnessPorts

    return WitnessPorts(database().unit_of_work, closing_signer(), invoice_archive(),
                        pinned_keys())


def anchor_ports() -> AnchorPorts:
    """Anchoring from settings: one client per OpenTimestamps calendar, the TSA
    when set (its trust file read here: a bad file fails anchoring, not sealing)."""
    from chalicelib.adapters.anchoring import OpenTimestampsCalendar, Rfc3161Authority, TsaTrust
    from chalicelib.adapters.postgres import anchor_stores
    from chalicelib.usecases.anchor import AnchorPorts

    s = settings()
    calendars = [OpenTimestampsCalendar(url, trusted=tuple(s.ots_calendars))
                 for url in s.ots_calendars]
    tsa = None
    if s.tsa_url and s.tsa_certificate_file is not None:
        tsa = Rfc3161Authority(s.tsa_url, TsaTrust.from_file(s.tsa_certificate_file))
    return AnchorPorts(store=anchor_stores(database()), clock=clock(), calendars=calendars,
                       tsa=tsa)


def anchor_after_sealing(tenant_id: UUID, closing_id: UUID) -> None:
    """Best-effort, right after a closing is committed: never raises; the
    anchor_retries schedule picks up whatever did not happen here."""
    from chalicelib.logs import logger
    from chalicelib.usecases.anchor import anchor_closing

    try:
        ports = anchor_ports()
        if ports.targets:
            anchor_closing(tenant_id, closing_id, ports)
    except Exception as exc:  # noqa: BLE001 - anchoring never fails a sealing
        from chalicelib import metrics

        metrics.count(metrics.ANCHORING_FAILURES)
        logger.warning("anchoring after sealing failed; the schedule retries",
                       extra={"tenant_id": str(tenant_id), "reason": type(exc).__name__})


def closing_anchors(tenant_id: UUID, closing_id: UUID) -> list[StoredAnchor]:
    """A closing's anchors, read in a transaction of their own (call it outside
    any other transaction of this thread)."""
    from chalicelib.adapters.postgres.anchors import read_anchors

    return read_anchors(database(), tenant_id, closing_id)


def anchors_to_retry(endpoints: list[str], limit: int) -> list[tuple[UUID, UUID]]:
    """(tenant, anchor) of the anchors at `endpoints` not complete yet."""
    from chalicelib.adapters.postgres.anchors import anchors_to_retry

    return anchors_to_retry(database(), endpoints, limit=limit)


def closings_to_anchor(endpoints: list[str], since: datetime,
                       limit: int) -> list[tuple[UUID, UUID]]:
    """(tenant, closing) of closings sealed since `since` lacking an anchor."""
    from chalicelib.adapters.postgres.anchors import closings_to_anchor

    return closings_to_anchor(database(), endpoints, since, limit=limit)


def tenants_to_seal() -> list[UUID]:
    """Tenants with activity not yet under a year closing."""
    from chalicelib.adapters.postgres.closings import tenants_to_seal

    return tenants_to_seal(database())


def invoices_awaiting_archive(older_than: timedelta) -> list[tuple[UUID, UUID]]:
    """(tenant, invoice) of issued invoices still unarchived after `older_than`."""
    from chalicelib.adapters.postgres import invoices_awaiting_archive

    return invoices_awaiting_archive(database(), older_than)


def pa_lifecycle_units() -> PaLifecycleUnitFactory:
    """The poller's and the lifecycle route's transactions."""
    units: PaLifecycleUnitFactory = database().unit_of_work
    return units


def pa_tenants(limit: int = 10000) -> list[UUID]:
    """Tenants the poller asks the PA for (those that issued an invoice)."""
    from chalicelib.adapters.postgres.pa_lifecycle import tenants_to_poll

    return tenants_to_poll(database(), limit)


def retention() -> Retention:
    from chalicelib.adapters.postgres import PostgresRetention

    return PostgresRetention(database())


def access_log() -> AccessLog:
    from chalicelib.adapters.postgres import PostgresAccessLog

    return PostgresAccessLog(database())


def api_key_directory() -> ApiKeyDirectory:
    from chalicelib.adapters.postgres import PostgresApiKeyDirectory

    return PostgresApiKeyDirectory(database())


def session_directory() -> SessionDirectory:
    from chalicelib.adapters.postgres import PostgresSessionDirectory

    return PostgresSessionDirectory(database())


def login_directory() -> LoginDirectory:
    from chalicelib.adapters.postgres import PostgresLoginDirectory

    return PostgresLoginDirectory(database())


def pending_sign_ups() -> PendingSignUps:
    from chalicelib.adapters.postgres import PostgresPendingSignUps

    return PostgresPendingSignUps(database())


def lockouts() -> Lockouts:
    from chalicelib.adapters.postgres import PostgresLockouts

    return PostgresLockouts(database())


def rate_limiter() -> RateLimiter:
    from chalicelib.adapters.postgres import PostgresRateLimiter

    return PostgresRateLimiter(database())


def fault_code(exc: BaseException) -> str | None:
    """The database's SQLSTATE of a driver error (None for any other fault):
    the one detail of a fault safe to log, as it never quotes data."""
    from chalicelib.adapters.postgres import sqlstate

    return sqlstate(exc)


def session_policy() -> SessionPolicy:
    from chalicelib.usecases.sessions import SessionPolicy

    s = settings()
    return SessionPolicy(lifetime=timedelta(minutes=s.session_lifetime_minutes),
                         idle=timedelta(minutes=s.session_idle_minutes))


def health_probes() -> dict[str, Callable[[], object]]:
    bucket = settings().archive_bucket
    return {
        "database": lambda: database().ping(),
        "object_store": lambda: object_store().head_bucket(Bucket=bucket),
    }


def append_entry(request: AppendRequest) -> LedgerEntry:
    from chalicelib.usecases.append_ledger import append_ledger

    return append_ledger(request, database().unit_of_work, clock())


@lru_cache(maxsize=1)
def mailer() -> Mailer:
    """SMTP when configured, else the local outbox folder; refuses to guess."""
    from chalicelib.adapters.mail import OutboxMailer, SmtpMailer

    s = settings()
    if s.smtp_host:
        return SmtpMailer(s.smtp_host, s.smtp_port, s.mail_from, user=s.smtp_user,
                          password=s.smtp_password.get_secret_value()
                          if s.smtp_password else None, starttls=s.smtp_starttls)
    if s.mail_outbox_dir:
        return OutboxMailer(s.mail_outbox_dir, s.mail_from)
    from chalicelib.logs import logger

    logger.error("mail is not configured: set EINVOICE_SMTP_HOST or EINVOICE_MAIL_OUTBOX_DIR")
    raise RuntimeError("mail is not configured")


@lru_cache(maxsize=1)
def invoice_archive() -> WitnessArchive:
    """The Object Lock bucket, checked once at start-up (and before each put):
    a bucket that cannot keep invoices 11 years fails here, and is not cached."""
    from chalicelib.adapters.archive import ObjectLockArchive

    archive = ObjectLockArchive(object_store(), settings().archive_bucket)
    archive.check_ready()
    return archive


@lru_cache(maxsize=1)
def invoice_documents() -> InvoiceDocuments:
    from chalicelib.adapters.documents import FacturXDocuments

    return FacturXDocuments(conformance_check())


def conformance_check() -> Callable[[bytes], list[RuleFailure]]:
    """The schematron check issuing runs (EINVOICE_CONFORMANCE_CHECK): in a
    worker beside this process, or in the conformance-check function, the
    only package holding saxonche."""
    s = settings()
    where = s.conformance_check
    if where == "local":
        from chalicelib.documents.schematron import invoice_failures

        return invoice_failures
    from chalicelib.adapters.conformance import HttpConformanceCheck, LambdaConformanceCheck

    if where.startswith("aws-lambda:"):
        from chalicelib.adapters.aws import lambda_client

        return LambdaConformanceCheck(lambda_client(s.conformance_check_timeout_seconds),
                                      where.removeprefix("aws-lambda:"))
    token = s.conformance_check_token
    if token is None:  # the settings refuse a URL without one
        raise RuntimeError("EINVOICE_CONFORMANCE_CHECK_TOKEN is not set")
    return HttpConformanceCheck(where, token.get_secret_value(),
                                s.conformance_check_timeout_seconds)


def invoice_ports() -> InvoicePorts:
    from chalicelib.usecases.invoicing import InvoicePorts

    return InvoicePorts(database().unit_of_work, invoice_documents(), invoice_archive(),
                        clock())


class _NoDocuments:
    """Archiving renders nothing: the documents port it never calls, so the
    archive sweep loads no document library (its package has none)."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"archiving produces no document (documents.{name} was called)")


def archive_ports() -> InvoicePorts:
    """Archiving's ports (the archive sweep): issuing's, without documents."""
    from chalicelib.usecases.invoicing import InvoicePorts

    documents: InvoiceDocuments = _NoDocuments()  # type: ignore[assignment]
    return InvoicePorts(database().unit_of_work, documents, invoice_archive(), clock())


def quote_ports() -> QuotePorts:
    from chalicelib.usecases.quotes import QuotePorts

    return QuotePorts(database().unit_of_work, invoice_documents(), clock())


@lru_cache(maxsize=1)
def invoice_queue() -> InvoiceQueue:
    from chalicelib.adapters.aws import SqsQueue, sqs_client

    return SqsQueue(sqs_client(settings()), settings().invoice_queue)


def issue_from_queue(tenant_id: UUID, key: str, raw: object) -> Issued:
    from chalicelib.usecases.issue_invoice import issue_invoice

    return issue_invoice(tenant_id, key, raw, invoice_ports())


class PaNotConfigured(RuntimeError):
    """No PA settings: nothing to deposit to nor to poll."""


@lru_cache(maxsize=1)
def pa_client() -> PaClient:
    """The platform-level PA (settings pa_*); per-tenant PAs come later."""
    from chalicelib.adapters.pa import ClientCredentials, FlowServiceClient

    s = settings()
    if not s.pa_base_url or not s.pa_token_url or not s.pa_client_id \
            or s.pa_client_secret is None:
        raise PaNotConfigured("no PA is configured: set EINVOICE_PA_BASE_URL and its credentials")
    auth = ClientCredentials(s.pa_token_url, s.pa_client_id, s.pa_client_secret,
                             clock=clock())
    return FlowServiceClient(s.pa_base_url, auth, directory_url=s.pa_directory_url)
