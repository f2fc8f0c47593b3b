"""Gapless, chronological numbering per tenant and series, allocated in the
transaction that appends the ledger entry; issued invoices never change.

These drive the invoice store directly with placeholder documents: the
numbering guarantees belong to the engine, whatever builds the documents.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime

import pytest

from chalicelib.adapters.postgres import Database
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.kinds import INVOICE_ISSUED
from chalicelib.ports import ArchivedObject, ArchiveReceipt, IssuedInvoice, UnitOfWork
from tests.builders import attack, backed_entry
from tests.conftest import Connect, in_tenant

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def receipt(version_id: str) -> ArchiveReceipt:
    """A receipt naming one object version (what record_archive keeps)."""
    return ArchiveReceipt((("pdf", ArchivedObject("k.pdf", version_id, bytes(32), "COMPLIANCE",
                                                  AT)),))


def issue_in(uow: UnitOfWork, series: str = "F", day: date = date(2026, 11, 23),
             key: str | None = None) -> IssuedInvoice:
    """Number, ledger entry and invoice row, in the caller's transaction."""
    invoice = backed_entry(uow, INVOICE_ISSUED, {"total": "120.00"}, AT, series=series,
                           issue_date=day, key=key or uuid.uuid4().hex)
    uow.invoices.add_document(invoice.invoice_id, "pdf", b"%PDF-1.7 placeholder")
    return invoice


def numbers(superuser: Connect, tenant: uuid.UUID, series: str = "F") -> list[int]:
    conn = superuser()
    try:
        return [r[0] for r in conn.run("SELECT number FROM invoices WHERE tenant_id = :t "
                                       "AND series = :s ORDER BY number", t=str(tenant),
                                       s=series)]
    finally:
        conn.close()


def test_sixteen_concurrent_issuers_get_1_to_800(database: Database, tenant: uuid.UUID,
                                                 superuser: Connect) -> None:
    failures: list[str] = []
    start = threading.Barrier(16)

    def issuer() -> None:
        start.wait()
        for _ in range(50):
            try:
                with database.unit_of_work(tenant) as uow:
                    issue_in(uow)
            except Exception as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=issuer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert numbers(superuser, tenant) == list(range(1, 801))


def test_a_failure_after_allocation_leaves_no_gap(database: Database, tenant: uuid.UUID,
                                                  superuser: Connect) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    with pytest.raises(RuntimeError), database.unit_of_work(tenant) as uow:
        issue_in(uow)
        raise RuntimeError("crash after the number and the ledger entry, before commit")
    with database.unit_of_work(tenant) as uow:
        assert issue_in(uow).number == 2
    assert numbers(superuser, tenant) == [1, 2]


def test_series_and_tenants_count_apart(database: Database, tenant: uuid.UUID) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    other = create_tenant("Other", database.unit_of_work)
    with database.unit_of_work(tenant) as uow:
        assert [issue_in(uow, s).number for s in ("F", "F", "AV", "F")] == [1, 2, 1, 3]
    with database.unit_of_work(other) as uow:
        assert issue_in(uow).number == 1


def test_the_engine_refuses_a_number_given_to_no_invoice(as_app: Connect,
                                                         tenant: uuid.UUID) -> None:
    conn = in_tenant(as_app, tenant)
    try:
        conn.run("SELECT invoice_number_next('F')")
        assert attack(conn, "SELECT 1") == "EI001"  # at COMMIT: a gap
    finally:
        conn.close()


def test_the_engine_refuses_numbers_out_of_order(database: Database, as_app: Connect,
                                                 tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        first = issue_in(uow)
    for forged in (first.number, first.number + 2, 7):
        conn = in_tenant(as_app, tenant)
        try:
            conn.run("SELECT invoice_number_next('F')")
            state = attack(conn, "INSERT INTO invoices SELECT tenant_id, gen_random_uuid(), "
                           "series, CAST(:n AS bigint), :label, type_code, NULL, issue_date, "
                           ":label, request_sha256, document, totals, pdf_sha256, "
                           "xml_sha256, ledger_seq FROM invoices WHERE id = :id",
                           n=forged, label=f"F-X{forged}", id=str(first.invoice_id))
            assert state in {"EI002", "23505"}, forged
        finally:
            conn.close()
    with database.unit_of_work(tenant) as uow:  # and the series is intact
        assert issue_in(uow).number == 2


def test_numbering_is_chronological(database: Database, tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow, day=date(2026, 11, 23))
    # The engine refuses (EI005); the store turns that one SQLSTATE into a 422.
    with pytest.raises(InvalidInput) as refused, database.unit_of_work(tenant) as uow:
        issue_in(uow, day=date(2026, 11, 22))
    assert [v.field for v in refused.value.violations] == ["issue_date"]
    assert "previous number" in refused.value.violations[0].rule


@pytest.mark.parametrize("sql", [
    "UPDATE invoices SET number = 9",
    "UPDATE invoices SET totals = '{\"total\": \"0.00\"}'",
    "UPDATE invoices SET issue_date = issue_date - 1",
    "UPDATE invoices SET archive = '{}'",
    "DELETE FROM invoices",
    "TRUNCATE invoices CASCADE",
    "UPDATE invoice_series SET last_number = 1",
    "DELETE FROM invoice_series",
    "UPDATE invoice_documents SET content = 'x'",
    "DELETE FROM invoice_documents",
])
def test_issued_invoices_never_change_for_the_app(database: Database, as_app: Connect,
                                                  tenant: uuid.UUID, sql: str) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    conn = in_tenant(as_app, tenant)
    try:
        if "archive" in sql:  # the one column the app may set: once, never again
            conn.run("UPDATE invoices SET archive = '{\"v\": 1}'")
            conn.run("COMMIT")
            conn.run("BEGIN")
            conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))
        assert attack(conn, sql) in {"42501", "EI003", "EI004", "EL001"}, sql
    finally:
        conn.close()


@pytest.mark.parametrize("sql", [
    "UPDATE invoices SET number = 9",
    "UPDATE invoices SET document = '{}'",
    "DELETE FROM invoices",
    "TRUNCATE invoices CASCADE",
    "DELETE FROM invoice_documents",
])
def test_issued_invoices_never_change_for_the_owner(database: Database, as_owner: Connect,
                                                    tenant: uuid.UUID, sql: str) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    conn = in_tenant(as_owner, tenant)
    try:
        assert attack(conn, sql) is not None, sql
    finally:
        conn.close()


def test_another_tenant_sees_no_invoice(database: Database, as_app: Connect,
                                        tenant: uuid.UUID) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    with database.unit_of_work(tenant) as uow:
        mine = issue_in(uow)
    other = create_tenant("Other", database.unit_of_work)
    with database.unit_of_work(other) as uow:
        assert uow.invoices.get(mine.invoice_id) is None
        assert uow.invoices.by_idempotency_key(mine.idempotency_key) is None
    conn = in_tenant(as_app, other)
    try:
        assert conn.run("SELECT count(*) FROM invoices") == [[0]]
        assert conn.run("SELECT count(*) FROM invoice_series") == [[0]]
    finally:
        conn.close()


def test_the_archive_receipt_is_written_once_and_frees_the_documents(
        database: Database, tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        invoice = issue_in(uow)
        uow.invoices.add_document(invoice.invoice_id, "xml", b"<x/>")
    with database.unit_of_work(tenant) as uow:
        assert uow.invoices.documents(invoice.invoice_id) == {
            "pdf": b"%PDF-1.7 placeholder", "xml": b"<x/>"}
        assert uow.invoices.record_archive(invoice.invoice_id, receipt("v1")) is True
    with database.unit_of_work(tenant) as uow:
        assert uow.invoices.record_archive(invoice.invoice_id, receipt("v2")) is False
        assert uow.invoices.documents(invoice.invoice_id) == {}
        stored = uow.invoices.get(invoice.invoice_id)
        assert stored is not None and stored.archive == receipt("v1")
