"""Personal data at rest: an invoice's and a quote's document (IBAN, buyer's
name and address) and the staged PDF and XML are stored sealed, bound to
their row; the engine refuses them in clear; nothing is written without a
cipher. Real PostgreSQL and the moto S3 server."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.adapters.documents import FacturXDocuments
from chalicelib.adapters.postgres import Database, app_connector, sqlstate
from chalicelib.config import Settings
from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.usecases.archive_invoice import archived_document
from chalicelib.usecases.invoicing import InvoicePorts
from chalicelib.usecases.issue_invoice import issue_credit_note, issue_invoice
from chalicelib.usecases.quotes import QuotePorts, create_quote, get_quote
from tests.builders import IBAN, Crash, consumer, crash_at, recent
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock

BUYER_NAME = "Jeanne Martin"
BUYER_STREET = "8 impasse des Lilas"


def a_consumer_invoice() -> dict[str, Any]:
    raw = consumer(issue_date="2026-11-20", due_date="2026-12-20")
    raw["buyer"]["name"] = BUYER_NAME
    raw["buyer"]["address"]["line1"] = BUYER_STREET
    return raw


def rows(superuser: Connect, sql: str, **params: Any) -> list[Any]:
    conn = superuser()
    try:
        return list(conn.run(sql, **params))
    finally:
        conn.close()


def secrets_in(blob: bytes) -> list[str]:
    return [text for text in (IBAN, BUYER_NAME, BUYER_STREET) if text.encode() in blob]


def test_documents_are_stored_sealed_and_open_to_the_same_bytes(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    raw = a_consumer_invoice()
    with pytest.raises(Crash):  # issued and committed, not archived: the documents stay staged
        issue_invoice(tenant, "at-rest-1", raw, ports, crash_at("committed"))

    [(document, sealed)] = rows(superuser, "SELECT document, document_sealed FROM invoices "
                                "WHERE tenant_id = :t", t=str(tenant))
    assert document is None and bytes(sealed)[:1] == b"\x01"
    assert secrets_in(bytes(sealed)) == []
    staged = rows(superuser, "SELECT kind, content FROM invoice_documents WHERE tenant_id = :t",
                  t=str(tenant))
    assert sorted(kind for kind, _ in staged) == ["pdf", "xml"]
    for _, content in staged:
        assert bytes(content)[:1] == b"\x01" and secrets_in(bytes(content)) == []

    # The staged bytes open to exactly what the ledger entry hashed: the retry archives them.
    retried = issue_invoice(tenant, "at-rest-1", raw, ports)
    assert retried.archived and not retried.created
    _, xml = archived_document(tenant, retried.invoice.invoice_id, "xml", ports)
    assert hashlib.sha256(xml).digest() == retried.invoice.xml_sha256
    assert IBAN.encode() in xml and BUYER_NAME.encode() in xml  # the legal archive keeps them
    assert json.loads(retried.invoice.document)["buyer"]["name"] == BUYER_NAME

    # A credit note reads the credited invoice's document (opened) to check the parties.
    credit = issue_credit_note(tenant, retried.invoice.invoice_id, "at-rest-cn", {
        **{k: v for k, v in raw.items() if k != "type_code"},
        "issue_date": "2026-11-21", "due_date": "2026-12-21"}, ports)
    assert credit.created and credit.invoice.type_code == "381"


def test_the_engine_refuses_personal_data_in_clear(
        ports: InvoicePorts, tenant: uuid.UUID, as_app: Connect) -> None:
    issued = issue_invoice(tenant, "at-rest-2", recent(), ports)
    conn = in_tenant(as_app, tenant)
    try:
        with pytest.raises(DatabaseError) as refused:
            conn.run("INSERT INTO invoice_documents (tenant_id, invoice_id, kind, content) "
                     "VALUES (:t, :i, 'pdf', :c)", t=str(tenant),
                     i=str(issued.invoice.invoice_id), c=b"%PDF-1.7 " + IBAN.encode() * 3)
        assert sqlstate(refused.value) == "ES001"
    finally:
        conn.close()

    conn = in_tenant(as_app, tenant)
    try:
        [[number]] = conn.run("SELECT invoice_number_next('CLEAR')")
        with pytest.raises(DatabaseError) as refused:
            conn.run(
                "INSERT INTO invoices (tenant_id, id, series, number, invoice_number, type_code, "
                "issue_date, idempotency_key, request_sha256, document, totals, pdf_sha256, "
                "xml_sha256, ledger_seq) VALUES (:t, :id, 'CLEAR', :n, 'CLEAR-1', '380', "
                "'2026-11-20', 'clear', :h, :doc, '{}', :h, :h, :seq)",
                t=str(tenant), id=str(uuid.uuid4()), n=number, h=bytes(32),
                doc=json.dumps({"seller": {"iban": IBAN}}), seq=issued.invoice.ledger_seq)
        assert sqlstate(refused.value) == "ES001"
    finally:
        conn.close()


def test_a_sealed_document_moved_to_another_row_does_not_open(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    first = issue_invoice(tenant, "at-rest-3", recent(), ports).invoice
    second = issue_invoice(tenant, "at-rest-4", a_consumer_invoice(), ports).invoice
    conn = superuser()
    try:  # the attacker with every right, triggers off: the consumer's document on row 1
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE invoices SET document_sealed = (SELECT document_sealed FROM invoices "
                 "WHERE tenant_id = :t AND id = :b) WHERE tenant_id = :t AND id = :a",
                 t=str(tenant), a=str(first.invoice_id), b=str(second.invoice_id))
    finally:
        conn.close()
    with pytest.raises(DecryptionRefused), ports.unit_of_work(tenant) as uow:
        uow.invoices.get(first.invoice_id)
    with ports.unit_of_work(tenant) as uow:  # the row it was sealed for still opens
        found = uow.invoices.get(second.invoice_id)
    assert found is not None and json.loads(found.document)["buyer"]["name"] == BUYER_NAME


def test_without_a_cipher_nothing_is_written(
        app_settings: Settings, documents: FacturXDocuments, clock: FrozenClock,
        tenant: uuid.UUID, superuser: Connect) -> None:
    no_cipher = Database(app_connector(app_settings))
    try:
        archive = ObjectLockArchive(s3_client(app_settings), app_settings.archive_bucket)
        bare = InvoicePorts(no_cipher.unit_of_work, documents, archive, clock)
        with pytest.raises(RuntimeError, match="never stored in clear"):
            issue_invoice(tenant, "at-rest-5", recent(), bare)
    finally:
        no_cipher.close()
    t = str(tenant)
    assert rows(superuser, "SELECT count(*) FROM invoices WHERE tenant_id = :t", t=t) == [[0]]
    assert rows(superuser, "SELECT count(*) FROM invoice_series WHERE tenant_id = :t",
                t=t) == [[0]]
    assert rows(superuser, "SELECT count(*) FROM ledger_entries WHERE tenant_id = :t",
                t=t) == [[0]]


def test_a_quote_is_stored_sealed(
        database: Database, documents: FacturXDocuments, clock: FrozenClock,
        tenant: uuid.UUID, superuser: Connect) -> None:
    raw = {k: v for k, v in a_consumer_invoice().items() if k not in ("issue_date", "due_date")}
    made = create_quote(tenant, "quote-at-rest", {"valid_until": "2026-12-31", "invoice": raw},
                        QuotePorts(database.unit_of_work, documents, clock))
    [(document, sealed)] = rows(superuser, "SELECT document, document_sealed FROM quotes "
                                "WHERE tenant_id = :t", t=str(tenant))
    assert document is None and bytes(sealed)[:1] == b"\x01"
    assert secrets_in(bytes(sealed)) == []
    kept = get_quote(tenant, made.quote.quote_id, database.unit_of_work)
    assert json.loads(kept.document)["buyer"]["name"] == BUYER_NAME
