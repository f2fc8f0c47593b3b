"""The deposit outbox (docs/pa.md): issuing writes one pending row per invoice in
the invoice's own transaction; what identifies the deposit (invoice, tracking id,
SHA-256) and a recorded deposit never change; rows stay in their tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.adapters.postgres import Database
from chalicelib.domain.kinds import INVOICE_ISSUED
from chalicelib.ports import IssuedInvoice, UnitOfWork
from chalicelib.usecases.create_tenant import create_tenant
from tests.builders import attack, backed_entry
from tests.conftest import Connect, in_tenant


def issue_in(uow: UnitOfWork) -> IssuedInvoice:
    """Number, ledger entry and invoice row (with its outbox row), in the caller's
    transaction: the outbox's guarantees belong to the engine, whatever builds it."""
    return backed_entry(uow, INVOICE_ISSUED, {"total": "120.00"},
                        datetime(2026, 11, 23, 9, 30, tzinfo=UTC), series="F",
                        issue_date=date(2026, 11, 23), key=uuid.uuid4().hex)


def outbox(superuser: Connect, tenant: uuid.UUID) -> list[list[Any]]:
    conn = superuser()
    try:
        rows: list[list[Any]] = conn.run(
            "SELECT invoice_id, tracking_id, sha256, state, attempts, flow_id "
            "FROM pa_deposits WHERE tenant_id = :t", t=str(tenant))
        return rows
    finally:
        conn.close()


def test_issuing_writes_one_pending_deposit_row(database: Database, superuser: Connect,
                                                tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        invoice = issue_in(uow)
    [[invoice_id, tracking_id, sha256, state, attempts, flow_id]] = outbox(superuser, tenant)
    assert (str(invoice_id), tracking_id) == (str(invoice.invoice_id), str(invoice.invoice_id))
    assert bytes(sha256) == invoice.pdf_sha256  # the archived Factur-X's bytes
    assert (state, attempts, flow_id) == ("pending", 0, None)


def test_a_rolled_back_issue_leaves_no_deposit_row(database: Database, superuser: Connect,
                                                   tenant: uuid.UUID) -> None:
    class Crash(Exception):
        pass

    with pytest.raises(Crash), database.unit_of_work(tenant) as uow:
        issue_in(uow)
        raise Crash
    assert outbox(superuser, tenant) == []


def test_the_engine_refuses_a_deposit_row_without_its_invoice(as_app: Connect,
                                                              tenant: uuid.UUID) -> None:
    conn = in_tenant(as_app, tenant)
    try:
        ghost = str(uuid.uuid4())
        assert attack(conn, "INSERT INTO pa_deposits (tenant_id, invoice_id, tracking_id, "
                      "sha256) VALUES (:t, :i, :k, :s)", t=str(tenant), i=ghost, k=ghost,
                      s=bytes(32)) == "23503"
    finally:
        conn.close()


@pytest.mark.parametrize("sql", [
    "UPDATE pa_deposits SET sha256 = '\\x" + "00" * 32 + "'",
    "UPDATE pa_deposits SET tracking_id = 'other'",
    "UPDATE pa_deposits SET invoice_id = gen_random_uuid()",
    "UPDATE pa_deposits SET created_at = now() - interval '1 day'",
    "DELETE FROM pa_deposits",
    "TRUNCATE pa_deposits",
])
def test_what_identifies_a_deposit_never_changes_for_the_app(
        database: Database, as_app: Connect, tenant: uuid.UUID, sql: str) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    conn = in_tenant(as_app, tenant)
    try:
        assert attack(conn, sql) in {"42501", "EI007", "EL001"}, sql
    finally:
        conn.close()


@pytest.mark.parametrize("sql", [
    "UPDATE pa_deposits SET flow_id = 'another'",
    "UPDATE pa_deposits SET state = 'pending'",
])
def test_a_recorded_deposit_never_changes(database: Database, as_app: Connect,
                                          tenant: uuid.UUID, sql: str) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    conn = in_tenant(as_app, tenant)
    try:
        conn.run("UPDATE pa_deposits SET state = 'deposited', flow_id = 'f-1', "
                 "ack_status = 'Pending', attempts = 1")
        conn.run("COMMIT")
        conn.run("BEGIN")
        conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))
        assert attack(conn, sql) == "EI007", sql
    finally:
        conn.close()


def test_the_sender_may_move_the_state_along(database: Database, as_app: Connect,
                                             superuser: Connect, tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        issue_in(uow)
    conn = in_tenant(as_app, tenant)
    try:
        assert attack(conn, "UPDATE pa_deposits SET state = 'refused', ack_status = 'Error', "
                      "reason_codes = '{InvalidSchema}', attempts = 1") is None
    finally:
        conn.close()
    [[_, _, _, state, attempts, _]] = outbox(superuser, tenant)
    assert (state, attempts) == ("refused", 1)


def test_another_tenant_neither_sees_nor_moves_a_deposit(database: Database, as_app: Connect,
                                                         superuser: Connect,
                                                         tenant: uuid.UUID) -> None:
    with database.unit_of_work(tenant) as uow:
        mine = issue_in(uow)
    other = create_tenant("Other", database.unit_of_work)
    conn = in_tenant(as_app, other)
    try:
        assert conn.run("SELECT count(*) FROM pa_deposits") == [[0]]
        conn.run("UPDATE pa_deposits SET state = 'refused' WHERE invoice_id = :i",
                 i=str(mine.invoice_id))
        assert conn.row_count in (0, -1)
        # Writing a row under the first tenant's id is refused by the policy.
        assert attack(conn, "INSERT INTO pa_deposits (tenant_id, invoice_id, tracking_id, "
                      "sha256) VALUES (:t, :i, :k, :s)", t=str(tenant),
                      i=str(mine.invoice_id), k=str(mine.invoice_id),
                      s=bytes(32)) in {"42501", "23505"}
    finally:
        conn.close()
    assert [row[3] for row in outbox(superuser, tenant)] == ["pending"]
