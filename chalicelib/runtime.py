"""Composition root: the real adapters, built lazily once per container.

Handlers import this and nothing heavier than their use case needs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chalicelib.adapters.postgres import Database, app_connector
from chalicelib.config import settings
from chalicelib.ports import Clock, SystemClock


@lru_cache(maxsize=1)
def database() -> Database:
    return Database(app_connector(settings()), cipher=field_cipher)


@lru_cache(maxsize=1)
def clock() -> Clock:
    return SystemClock()


@lru_cache(maxsize=1)
def object_store() -> Any:
    from chalicelib.adapters.aws import s3_client  # boto3 only where it is used

    return s3_client(settings())


@lru_cache(maxsize=1)
def passwords() -> Any:
    from chalicelib.domain.passwords import Passwords

    s = settings()
    return Passwords(s.password_time_cost, s.password_memory_kib, s.password_parallelism)


@lru_cache(maxsize=1)
def field_cipher() -> Any:
    from chalicelib.adapters.keys import LocalKeyFile
    from chalicelib.usecases.field_encryption import FieldCipher

    path = settings().master_key_file
    if path is None:
        raise RuntimeError("EINVOICE_MASTER_KEY_FILE is not set: sealed fields cannot be used")
    return FieldCipher(LocalKeyFile(path))


@lru_cache(maxsize=1)
def closing_signer() -> Any:
    from chalicelib.adapters.signing import LocalSigningKey

    path = settings().closing_key_file
    if path is None:
        raise RuntimeError("EINVOICE_CLOSING_KEY_FILE is not set: periods cannot be sealed")
    return LocalSigningKey(path)


def closing_ports() -> Any:
    from chalicelib.usecases.seal_period import ClosingPorts

    return ClosingPorts(database().unit_of_work, closing_signer(), clock())


def witness_ports() -> Any:
    from chalicelib.usecases.witness import WitnessPorts

    return WitnessPorts(database().unit_of_work, closing_signer(), invoice_archive())


def anchor_ports() -> Any:
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


def anchor_after_sealing(tenant_id: Any, closing_id: Any) -> None:
    """Best-effort, right after a closing is committed: never raises; the
    anchor_retries schedule picks up whatever did not happen here."""
    from chalicelib.logs import logger
    from chalicelib.usecases.anchor import anchor_closing

    try:
        ports = anchor_ports()
        if ports.targets:
            anchor_closing(tenant_id, closing_id, ports)
    except Exception as exc:  # noqa: BLE001 - anchoring never fails a sealing
        logger.warning("anchoring after sealing failed; the schedule retries",
                       extra={"tenant_id": str(tenant_id), "reason": type(exc).__name__})


def session_policy() -> Any:
    from datetime import timedelta

    from chalicelib.usecases.sessions import SessionPolicy

    s = settings()
    return SessionPolicy(lifetime=timedelta(minutes=s.session_lifetime_minutes),
                         idle=timedelta(minutes=s.session_idle_minutes))


def health_probes() -> dict[str, Any]:
    bucket = settings().archive_bucket
    return {
        "database": lambda: database().ping(),
        "object_store": lambda: object_store().head_bucket(Bucket=bucket),
    }


def append_entry(request: Any) -> Any:
    from chalicelib.usecases.append_ledger import append_ledger

    return append_ledger(request, database().unit_of_work, clock())


@lru_cache(maxsize=1)
def mailer() -> Any:
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
def invoice_archive() -> Any:
    """The Object Lock bucket, checked once at start-up (and before each put):
    a bucket that cannot keep invoices 11 years fails here, and is not cached."""
    from chalicelib.adapters.archive import ObjectLockArchive

    archive = ObjectLockArchive(object_store(), settings().archive_bucket)
    archive.check_ready()
    return archive


@lru_cache(maxsize=1)
def invoice_documents() -> Any:
    from chalicelib.adapters.documents import FacturXDocuments

    return FacturXDocuments()


def invoice_ports() -> Any:
    from chalicelib.usecases.issue_invoice import InvoicePorts

    return InvoicePorts(database().unit_of_work, invoice_documents(), invoice_archive(),
                        clock())


@lru_cache(maxsize=1)
def invoice_queue() -> Any:
    from chalicelib.adapters.aws import SqsQueue, sqs_client

    return SqsQueue(sqs_client(settings()), settings().invoice_queue)


def issue_from_queue(tenant_id: Any, key: str, raw: object) -> Any:
    from chalicelib.usecases.issue_invoice import issue_invoice

    return issue_invoice(tenant_id, key, raw, invoice_ports())
