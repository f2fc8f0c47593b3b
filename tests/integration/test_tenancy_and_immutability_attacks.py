"""Attacks on the engine's guarantees, as the application role (the app with a
bug or an injection): every one must be refused by PostgreSQL itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database, sqlstate
from chalicelib.domain.ledger import GENESIS, ChainHead, canonical_payload, next_entry
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.verify_ledger import verify_ledger
from tests.fakes import FrozenClock

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
Connect = Callable[[], pg8000.native.Connection]


@pytest.fixture
def app(as_app: Connect) -> Iterator[pg8000.native.Connection]:
    conn = as_app()
    yield conn
    conn.close()


def begin(conn: pg8000.native.Connection, tenant: uuid.UUID | None) -> None:
    conn.run("BEGIN")
    if tenant is not None:
        conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))


def fill(database: Database, tenant: uuid.UUID, n: int) -> None:
    for i in range(n):
        append_ledger(AppendRequest(tenant_id=tenant, kind="note.added",
                                    payload={"number": f"F-{i}"}),
                      database.unit_of_work, FrozenClock())


def refused(conn: pg8000.native.Connection, sql: str, **params: object) -> str:
    """Run `sql`, expect the engine to refuse it, roll back, return SQLSTATE."""
    with pytest.raises(DatabaseError) as caught:
        conn.run(sql, **params)
    conn.run("ROLLBACK")
    return sqlstate(caught.value) or ""


def test_application_role_has_no_escape_hatch(app: pg8000.native.Connection) -> None:
    [[superuser, bypass, createrole, createdb]] = app.run(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
        "WHERE rolname = current_user")
    assert not (superuser or bypass or createrole or createdb)
    owners = app.run("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                     "WHERE relname IN ('tenants', 'ledger_entries', 'ledger_heads')")
    assert owners == [["einvoice_owner"]]
    forced = app.run("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                     "WHERE relname IN ('tenants', 'ledger_entries', 'ledger_heads') "
                     "ORDER BY relname")
    assert all(row[1] and row[2] for row in forced) and len(forced) == 3


@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entries SET payload = payload",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries",
    "TRUNCATE ledger_entries CASCADE",
    "DELETE FROM ledger_heads",
    "UPDATE ledger_heads SET seq = 0, hash = decode(repeat('00', 32), 'hex')",
    "ALTER TABLE ledger_entries DISABLE TRIGGER ALL",
    "ALTER TABLE ledger_entries NO FORCE ROW LEVEL SECURITY",
    "SET session_replication_role = replica",
    "SET ROLE einvoice_owner",
    "DROP TABLE ledger_entries",
    "CREATE TABLE ledger_copy (x int)",
])
def test_application_cannot_alter_the_ledger(database: Database, tenant: uuid.UUID,
                                             app: pg8000.native.Connection, sql: str) -> None:
    fill(database, tenant, 3)
    begin(app, tenant)
    assert refused(app, sql) in {"42501", "EL001"}  # insufficient privilege / append-only
    begin(app, tenant)
    assert app.run("SELECT count(*) FROM ledger_entries")[0][0] == 3
    assert app.run("SELECT seq FROM ledger_heads")[0][0] == 3
    app.run("ROLLBACK")


def test_select_without_where_sees_one_tenant(database: Database, tenant: uuid.UUID,
                                              app: pg8000.native.Connection) -> None:
    other = create_tenant("Other SAS", database.unit_of_work)
    fill(database, tenant, 4)
    fill(database, other, 6)
    begin(app, tenant)
    assert {r[0] for r in app.run("SELECT tenant_id FROM ledger_entries")} == {tenant}
    assert app.run("SELECT count(*) FROM ledger_entries")[0][0] == 4
    assert [r[0] for r in app.run("SELECT id FROM tenants")] == [tenant]
    assert [r[0] for r in app.run("SELECT tenant_id FROM ledger_heads")] == [tenant]
    # Explicitly asking for the other tenant's rows finds nothing either.
    assert app.run("SELECT count(*) FROM ledger_entries WHERE tenant_id = :o",
                   o=str(other))[0][0] == 0
    app.run("ROLLBACK")


def test_no_tenant_set_sees_nothing(database: Database, tenant: uuid.UUID,
                                    app: pg8000.native.Connection) -> None:
    fill(database, tenant, 2)
    for _ in range(2):  # fresh session, then after a SET LOCAL has come and gone
        begin(app, None)
        for table in ("tenants", "ledger_entries", "ledger_heads"):
            assert app.run(f"SELECT count(*) FROM {table}")[0][0] == 0, table
        app.run("COMMIT")
        begin(app, tenant)
        app.run("COMMIT")


def test_tenant_setting_does_not_outlive_its_transaction(database: Database, tenant: uuid.UUID,
                                                          app: pg8000.native.Connection) -> None:
    fill(database, tenant, 1)
    begin(app, tenant)
    assert app.run("SELECT count(*) FROM ledger_entries")[0][0] == 1
    app.run("COMMIT")
    assert app.run("SELECT count(*) FROM ledger_entries")[0][0] == 0


def test_malformed_tenant_setting_fails_closed(app: pg8000.native.Connection) -> None:
    app.run("BEGIN")
    app.run("SELECT set_config('app.tenant_id', 'x'' OR true --', true)")
    assert refused(app, "SELECT * FROM ledger_entries") == "22P02"  # invalid uuid text


def test_cannot_append_into_another_tenants_chain(database: Database, tenant: uuid.UUID,
                                                  app: pg8000.native.Connection) -> None:
    victim = create_tenant("Victim SARL", database.unit_of_work)
    fill(database, victim, 2)
    payload = canonical_payload({"number": "EVIL"}, AT)
    first = next_entry(GENESIS, "note.added", payload)
    # A well-formed first entry for the victim, written from the attacker's tenant:
    # the engine refuses it (the victim's rows are invisible, the policy's
    # WITH CHECK refuses a foreign tenant_id).
    begin(app, tenant)
    state = refused(app, "INSERT INTO ledger_entries (tenant_id, seq, kind, payload, "
                    "prev_hash, hash) VALUES (:t, :s, :k, :p, :ph, :h)", t=str(victim),
                    s=first.seq, k=first.kind, p=first.payload, ph=first.prev_hash,
                    h=first.hash)
    assert state == "42501"
    # Nor can it open a second chain head for the victim, or hijack its tenant row.
    begin(app, tenant)
    assert refused(app, "INSERT INTO ledger_heads (tenant_id) VALUES (:v)",
                   v=str(victim)) == "42501"
    begin(app, tenant)
    assert refused(app, "INSERT INTO tenants (id, name) VALUES (:v, 'x')",
                   v=str(victim)) == "42501"
    begin(app, victim)
    assert app.run("SELECT count(*) FROM ledger_entries")[0][0] == 2
    app.run("ROLLBACK")


def forged_insert(conn: pg8000.native.Connection, tenant: uuid.UUID, seq: int, prev: bytes,
                  hash_: bytes, payload: str) -> str:
    begin(conn, tenant)
    return refused(conn, "INSERT INTO ledger_entries (tenant_id, seq, kind, payload, prev_hash, "
                   "hash) VALUES (:t, :s, 'note.added', :p, :ph, :h)", t=str(tenant), s=seq,
                   p=payload, ph=prev, h=hash_)


def test_application_can_only_append_through_the_engine(
        database: Database, tenant: uuid.UUID, app: pg8000.native.Connection) -> None:
    fill(database, tenant, 1)
    good = next_entry(GENESIS, "note.added", canonical_payload({"n": 1}, AT))
    assert forged_insert(app, tenant, 2, good.prev_hash, good.hash, good.payload) == "42501"
    # ledger_append() picks seq and links itself; it refuses to run without a tenant.
    app.run("BEGIN")
    assert refused(app, "SELECT * FROM ledger_append('a.b', '{}', NULL)") == "EL003"
    begin(app, tenant)
    [[seq, created]] = app.run("SELECT seq, created FROM ledger_append('a.b', :p, NULL)",
                               p=canonical_payload({}, AT))
    app.run("COMMIT")
    assert (seq, created) == (2, True)


def test_engine_refuses_forged_entries_even_from_the_owner(
        database: Database, tenant: uuid.UUID, as_owner: Connect) -> None:
    fill(database, tenant, 3)
    owner = as_owner()
    try:
        begin(owner, tenant)
        [[head_seq, head_hash]] = owner.run("SELECT seq, hash FROM ledger_heads")
        owner.run("ROLLBACK")
        head = ChainHead(head_seq, bytes(head_hash))
        good = next_entry(head, "note.added", canonical_payload({"n": 4}, AT))
        # wrong hash for the content
        assert forged_insert(owner, tenant, 4, head.hash, bytes(32), good.payload) == "EL002"
        # right hash, but linked to something else than entry 3 (a fork)
        fork = next_entry(ChainHead(3, bytes(32)), "note.added", good.payload)
        assert forged_insert(owner, tenant, 4, fork.prev_hash, fork.hash, fork.payload) == "EL002"
        # a gap: seq 6 while 5 does not exist
        gap = next_entry(ChainHead(5, head.hash), "note.added", good.payload)
        assert forged_insert(owner, tenant, 6, gap.prev_hash, gap.hash, gap.payload) == "EL002"
        # a second entry 3 (rewriting history)
        begin(owner, tenant)
        [[prev2]] = owner.run("SELECT hash FROM ledger_entries WHERE seq = 2")
        owner.run("ROLLBACK")
        dup = next_entry(ChainHead(2, bytes(prev2)), "note.added", good.payload)
        assert forged_insert(owner, tenant, 3, dup.prev_hash, dup.hash, dup.payload) == "23505"
        # payload that is not a JSON object
        bad = next_entry(head, "note.added", "[1]")
        assert forged_insert(owner, tenant, 4, bad.prev_hash, bad.hash, bad.payload) == "23514"
        # the owner cannot append for a tenant other than the transaction's (RLS FORCE)
        other = create_tenant("Other owner target", database.unit_of_work)
        first = next_entry(GENESIS, "note.added", good.payload)
        assert forged_insert(owner, tenant, 1, first.prev_hash, first.hash,
                             first.payload) == "23505"
        begin(owner, tenant)
        assert refused(owner, "INSERT INTO ledger_entries (tenant_id, seq, kind, payload, "
                       "prev_hash, hash) VALUES (:t, 1, :k, :p, :ph, :h)", t=str(other),
                       k=first.kind, p=first.payload, ph=first.prev_hash,
                       h=first.hash) == "42501"
        # a well-formed entry goes in, but only ledger_append() moves a head:
        # what was inserted around it is reported by verify
        begin(owner, tenant)
        owner.run("INSERT INTO ledger_entries (tenant_id, seq, kind, payload, prev_hash, hash) "
                  "VALUES (:t, 4, :k, :p, :ph, :h)", t=str(tenant), k=good.kind, p=good.payload,
                  ph=good.prev_hash, h=good.hash)
        assert owner.run("SELECT seq FROM ledger_heads")[0][0] == 3
        owner.run("COMMIT")
    finally:
        owner.close()
    result = verify_ledger(tenant, database.snapshot)
    assert (result.first_broken_seq, result.reason) == (4, "head_behind")


@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entries SET payload = payload",
    "DELETE FROM ledger_entries",
    # Invoices reference ledger entries: CASCADE reaches the triggers of both.
    "TRUNCATE ledger_entries CASCADE",
    "DELETE FROM ledger_heads",
    "TRUNCATE ledger_heads CASCADE",
])
def test_triggers_refuse_mutation_even_to_the_owner(database: Database, tenant: uuid.UUID,
                                                    as_owner: Connect, sql: str) -> None:
    """The owner has every privilege on its tables: only the triggers stand
    in the way (disabling them is the owner's and superuser's power, which is
    why the owner's password is never given to functions)."""
    fill(database, tenant, 2)
    owner = as_owner()
    try:
        begin(owner, tenant)
        assert refused(owner, sql) == "EL001"
        begin(owner, tenant)
        assert owner.run("SELECT count(*) FROM ledger_entries")[0][0] == 2
        owner.run("ROLLBACK")
    finally:
        owner.close()


def test_engine_refuses_a_payload_that_is_not_the_envelope(
        tenant: uuid.UUID, app: pg8000.native.Connection) -> None:
    for payload in ('{"x":1}', '{"at":"t","data":{},"v":2}', '{"at":"t","data":[],"v":1}',
                    '{"at":"t","data":{},"v":1,"extra":0}'):
        begin(app, tenant)
        assert refused(app, "SELECT * FROM ledger_append('a.b', :p, NULL)", p=payload) == "23514"


def test_a_non_canonical_payload_is_refused_by_the_engine(
        database: Database, tenant: uuid.UUID, app: pg8000.native.Connection) -> None:
    """A compromised app once chained a valid envelope with a repeated key (jsonb
    cannot see it, and only the verifiers named it); migration 0023 refuses it at
    the append (the verifiers still name one planted otherwise:
    test_canonical_payloads.py)."""
    fill(database, tenant, 2)
    begin(app, tenant)
    assert refused(app, "SELECT * FROM ledger_append('note.added', :p, NULL)",
                   p='{"at":"2026-11-23T10:00:00.000000Z","data":{"total":"1.00",'
                     '"total":"999.00"},"v":1}') == "23514"
    assert verify_ledger(tenant, database.snapshot).ok


def test_database_refusals_become_a_clear_4xx_without_the_data(
        database: Database, tenant: uuid.UUID) -> None:
    from chalicelib.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught, database.unit_of_work(tenant) as uow:
        uow.ledger.append("a.b", '{"iban":"FR7630006000011234567890189"}', None)
    assert caught.value.violations[0].field == "payload"
    assert "23514" in caught.value.violations[0].rule
    assert "FR76" not in str(caught.value)
