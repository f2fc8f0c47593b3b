"""Attacks on what an entry may be, as the application role (the app with a bug,
or a compromised generic-queue path): a malformed envelope, or a fiscal entry
no issued invoice backs. The engine itself refuses both; a malformed entry a
superuser plants anyway makes sealing answer 409, never 500."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database, sqlstate
from chalicelib.domain.kinds import (
    CREDIT_NOTE_ISSUED,
    INVOICE_ISSUED,
    SERVICE_KINDS,
    SERVICE_NAMESPACES,
)
from chalicelib.domain.ledger import canonical_payload
from tests.builders import backed_entry, recent, sale
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock
from tests.integration.web import issue, owner_with_key, seal

AT = "2026-11-23T10:00:00.000000Z"
MONEY = sale("F-1", "1000000.00")


def entries(superuser: Connect, tenant: uuid.UUID) -> list[tuple[str, str]]:
    conn = superuser()
    try:
        return [(k, p) for k, p in conn.run("SELECT kind, payload FROM ledger_entries "
                                            "WHERE tenant_id = :t ORDER BY seq", t=str(tenant))]
    finally:
        conn.close()


@pytest.fixture
def app_in_tenant(as_app: Connect, tenant: uuid.UUID) -> Iterator[pg8000.native.Connection]:
    conn = in_tenant(as_app, tenant)
    yield conn
    conn.close()


def append_refused(conn: pg8000.native.Connection, kind: str, payload: str) -> str:
    """ledger_append as the app role, then COMMIT: the SQLSTATE the engine
    refused it with (at the append, or at commit for deferred checks)."""
    with pytest.raises(DatabaseError) as caught:
        conn.run("SELECT * FROM ledger_append(:k, :p, NULL)", k=kind, p=payload)
        conn.run("COMMIT")
    conn.run("ROLLBACK")
    return sqlstate(caught.value) or ""


# --- 4. the envelope: false on every malformed one -------------------------------------

@pytest.mark.parametrize("payload", [
    "{}",
    '{"v":1}',
    f'{{"at":"{AT}","data":{{}}}}',                       # no v
    f'{{"at":"{AT}","v":1}}',                             # no data
    '{"data":{},"v":1}',                                  # no at
    '{"at":null,"data":{},"v":1}',
    '{"at":1,"data":{},"v":1}',                           # at not a string
    '{"at":"yesterday","data":{},"v":1}',                 # at not a UTC timestamp
    '{"at":"2026-13-01T10:00:00.000000Z","data":{},"v":1}',
    '{"at":"2026-02-29T10:00:00.000000Z","data":{},"v":1}',  # not a calendar day
    '{"at":"0000-01-01T10:00:00.000000Z","data":{},"v":1}',
    '{"at":"2026-11-23T10:00:00Z","data":{},"v":1}',      # not the fixed width
    f'{{"at":"{AT}","data":[],"v":1}}',                   # data not an object
    f'{{"at":"{AT}","data":null,"v":1}}',
    f'{{"at":"{AT}","data":"x","v":1}}',
    f'{{"at":"{AT}","data":{{}},"v":"1"}}',               # v a string
    f'{{"at":"{AT}","data":{{}},"v":2}}',
    f'{{"at":"{AT}","data":{{}},"v":1.0}}',
    f'{{"at":"{AT}","data":{{}},"v":true}}',
    f'{{"at":"{AT}","data":{{}},"v":null}}',
    f'{{"at":"{AT}","data":{{}},"v":1,"x":0}}',           # an extra key
    "[]", '"x"', "null", "1",
])
def test_the_engine_refuses_every_malformed_envelope(
        app_in_tenant: pg8000.native.Connection, superuser: Connect, tenant: uuid.UUID,
        payload: str) -> None:
    assert append_refused(app_in_tenant, "note.added", payload) == "23514"
    assert entries(superuser, tenant) == []


@pytest.mark.parametrize("at", [AT, "2028-02-29T23:59:59.999999Z"])
def test_a_well_formed_envelope_is_appended(app_in_tenant: pg8000.native.Connection,
                                            superuser: Connect, tenant: uuid.UUID,
                                            at: str) -> None:
    payload = f'{{"at":"{at}","data":{{}},"v":1}}'
    app_in_tenant.run("SELECT * FROM ledger_append('note.added', :p, NULL)", p=payload)
    app_in_tenant.run("COMMIT")
    assert entries(superuser, tenant) == [("note.added", payload)]


def plant(superuser: Connect, tenant: uuid.UUID, payload: str) -> None:
    """What the engine refuses, put there by a superuser who lifts the check for
    one transaction (appended through ledger_append, as the queue once did)."""
    conn = superuser()
    try:
        conn.run("BEGIN")
        conn.run("ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_envelope")
        conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))
        conn.run("SELECT * FROM ledger_append('note.added', :p, NULL)", p=payload)
        conn.run("ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_envelope "
                 "CHECK (ledger_payload_envelope_ok(payload)) NOT VALID")
        conn.run("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize("payload", ["{}", '{"v":1}',
                                     '{"at":"2026-02-30T10:00:00.000000Z","data":{},"v":1}'])
def test_sealing_a_tenant_with_a_planted_malformed_entry_answers_409_naming_it(
        client: Any, frozen: FrozenClock, superuser: Connect, payload: str) -> None:
    owner, key = owner_with_key(client, frozen, ["invoices:write", "closings:write"])
    tenant = uuid.UUID(owner.body["tenant_id"])
    assert issue(client, key["secret"], recent()).status_code == 201
    plant(superuser, tenant, payload)
    frozen.moment = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)
    refused = seal(client, key["secret"], {"kind": "day", "period": "2026-11-23"})
    assert refused.status_code == 409, refused.body
    [violation] = refused.json_body["violations"]
    assert violation["field"] == "ledger"
    assert "entry 3 " in violation["rule"]  # invoice.issued, invoice.archived, the planted one
    from chalicelib import runtime
    from chalicelib.usecases.seal_period import seal_all_due

    assert seal_all_due([tenant], runtime.closing_ports())["failed"] == 0  # the schedule too


# --- 5. fiscal kinds: only with the issued invoice that records them ------------------

@pytest.mark.parametrize("kind", [INVOICE_ISSUED, CREDIT_NOTE_ISSUED])
def test_the_app_role_cannot_append_a_fiscal_entry_no_invoice_backs(
        app_in_tenant: pg8000.native.Connection, superuser: Connect, tenant: uuid.UUID,
        kind: str) -> None:
    payload = canonical_payload(MONEY, datetime(2026, 11, 23, tzinfo=UTC))
    assert append_refused(app_in_tenant, kind, payload) == "EL004"
    assert entries(superuser, tenant) == []


def forged(database: Database, tenant: uuid.UUID, change: dict[str, Any]) -> str:
    """A real invoice row, then a second entry naming it, changed: the SQLSTATE."""
    when = datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(DatabaseError) as caught, database.unit_of_work(tenant) as uow:
        real = backed_entry(uow, INVOICE_ISSUED, sale("F-1", "10.00"), when)
        data = {"invoice_id": str(real.invoice_id), "invoice_number": real.invoice_number,
                "series": real.series, "number": real.number, "type_code": "380",
                "issue_date": "2026-11-23", "totals": json.loads(real.totals),
                "pdf_sha256": real.pdf_sha256.hex(), "xml_sha256": real.xml_sha256.hex()}
        uow.ledger.append(INVOICE_ISSUED, canonical_payload({**data, **change}, when), None)
    return sqlstate(caught.value) or ""


def test_a_fiscal_entry_must_carry_its_own_invoice(database: Database, superuser: Connect,
                                                   tenant: uuid.UUID) -> None:
    """A second entry for an invoice already recorded (here with its totals
    inflated) is backed by no invoice of its own: refused, nothing kept."""
    assert forged(database, tenant, {"totals": MONEY["totals"]}) == "EL004"
    assert entries(superuser, tenant) == []


@pytest.mark.parametrize("field,value", [
    ("totals", sale("F-1", "1.00")["totals"]), ("number", 2), ("invoice_number", "F-000009"),
    ("issue_date", "2026-11-22"), ("pdf_sha256", "00" * 32), ("type_code", "381"),
])
def test_an_invoice_row_records_only_the_entry_that_carries_its_values(
        app_in_tenant: pg8000.native.Connection, database: Database, superuser: Connect,
        tenant: uuid.UUID, field: str, value: Any) -> None:
    """The issuing path's own steps, by hand as the app role, with one value of
    the entry differing from the invoice row: refused at commit (EL005)."""
    when = datetime(2026, 11, 23, tzinfo=UTC)
    [[number]] = app_in_tenant.run("SELECT invoice_number_next('F')")
    invoice_id = uuid.uuid4()
    data = {"invoice_id": str(invoice_id), "invoice_number": f"F-{number:06d}",
            "series": "F", "number": number, "type_code": "380", "issue_date": "2026-11-23",
            "totals": MONEY["totals"], "pdf_sha256": "ab" * 32, "xml_sha256": "cd" * 32}
    [[seq, *_]] = app_in_tenant.run("SELECT * FROM ledger_append('invoice.issued', :p, NULL)",
                                    p=canonical_payload({**data, field: value}, when))
    app_in_tenant.run(
        "INSERT INTO invoices (tenant_id, id, series, number, invoice_number, type_code, "
        "issue_date, idempotency_key, request_sha256, totals, pdf_sha256, xml_sha256, "
        "ledger_seq, document_sealed) VALUES (:t, :id, 'F', :n, :label, '380', '2026-11-23', "
        ":key, :h, :totals, :pdf, :xml, :seq, :sealed)",
        t=str(tenant), id=str(invoice_id), n=number, label=data["invoice_number"],
        key=f"k-{invoice_id}", h=bytes(32), totals=json.dumps(MONEY["totals"]),
        pdf=bytes.fromhex("ab" * 32), xml=bytes.fromhex("cd" * 32), seq=seq,
        sealed=b"\x01" + bytes(40))
    with pytest.raises(DatabaseError) as caught:
        app_in_tenant.run("COMMIT")
    assert sqlstate(caught.value) == "EL005"
    assert entries(superuser, tenant) == []


def test_an_invoice_row_cannot_record_an_entry_of_another_kind(
        app_in_tenant: pg8000.native.Connection, tenant: uuid.UUID) -> None:
    """An issued invoice recorded by a note (so that closings would not sum it)."""
    [[number]] = app_in_tenant.run("SELECT invoice_number_next('F')")
    [[seq, *_]] = app_in_tenant.run(
        "SELECT * FROM ledger_append('note.added', :p, NULL)",
        p=canonical_payload({}, datetime(2026, 11, 23, tzinfo=UTC)))
    with pytest.raises(DatabaseError) as caught:
        app_in_tenant.run(
            "INSERT INTO invoices (tenant_id, id, series, number, invoice_number, type_code, "
            "issue_date, idempotency_key, request_sha256, totals, pdf_sha256, xml_sha256, "
            "ledger_seq, document_sealed) VALUES (:t, :id, 'F', :n, 'F-X', '380', "
            "'2026-11-23', 'k', :h, '{}', :h, :h, :seq, :sealed)",
            t=str(tenant), id=str(uuid.uuid4()), n=number, h=bytes(32), seq=seq,
            sealed=b"\x01" + bytes(40))
    app_in_tenant.run("ROLLBACK")
    assert sqlstate(caught.value) == "EI006"


@pytest.mark.parametrize("kind", ["invoice.cancelled", "payment.received", "quote.accepted",
                                  "closing.reopened", "credit_note.voided"])
def test_the_engine_refuses_invented_kinds_in_the_service_namespaces(
        app_in_tenant: pg8000.native.Connection, superuser: Connect, tenant: uuid.UUID,
        kind: str) -> None:
    payload = canonical_payload({}, datetime(2026, 11, 23, tzinfo=UTC))
    assert append_refused(app_in_tenant, kind, payload) == "23514"
    assert entries(superuser, tenant) == []


def test_the_engines_service_kinds_are_the_codes(superuser: Connect) -> None:
    """The engine's list of service namespaces and kinds (0021's CHECK, or a
    later migration's) is kinds.py's, so a kind added in code without its
    migration, or the reverse, fails here rather than at the first append."""
    conn = superuser()
    try:
        [[definition]] = conn.run(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'ledger_entries_service_kinds'")
    finally:
        conn.close()
    namespaces = re.search(r"'\^\(([a-z_|]+)\)\\\.'", definition)
    assert namespaces is not None, definition
    assert set(namespaces.group(1).split("|")) == set(SERVICE_NAMESPACES)
    assert set(re.findall(r"'([a-z_]+\.[a-z_]+)'::text", definition)) == set(SERVICE_KINDS)
