"""Item 15: what one session of the application role can learn about the
others (every tenant's requests run as that same role) through the
statistics views, and what the scheduling functions hand it."""

from __future__ import annotations

import uuid

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database
from tests.conftest import Connect

REVOKED = [
    "SELECT query FROM pg_stat_activity",
    "SELECT n_live_tup FROM pg_stat_user_tables",
    "SELECT n_live_tup FROM pg_stat_all_tables",
    "SELECT n_tup_ins FROM pg_stat_xact_user_tables",
    "SELECT heap_blks_read FROM pg_statio_user_tables",
    "SELECT objid FROM pg_locks",
    "SELECT client_dn FROM pg_stat_ssl",
    "SELECT query FROM pg_stat_get_activity(NULL)",
    "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
    "SELECT pg_stat_get_live_tuples('invoices'::regclass)",
    "SELECT pg_stat_get_tuples_inserted('ledger_entries'::regclass)",
]


def _sqlstate(exc: DatabaseError) -> str:
    return str(exc.args[0]["C"])


@pytest.mark.parametrize("sql", REVOKED)
def test_app_role_may_not_read_statistics(as_app: Connect, sql: str) -> None:
    conn = as_app()
    try:
        with pytest.raises(DatabaseError) as refused:
            conn.run(sql)
        assert _sqlstate(refused.value) == "42501"
    finally:
        conn.close()


def test_app_role_gets_no_column_statistics_of_tenant_tables(as_app: Connect) -> None:
    """pg_stats stays readable (clients use it) but hides every table under
    row-level security: no most-common values of another tenant's columns."""
    conn = as_app()
    try:
        assert conn.run("SELECT count(*) FROM pg_stats WHERE schemaname = 'public' "
                        "AND tablename IN ('invoices', 'ledger_entries', 'users')") == [[0]]
    finally:
        conn.close()


def test_a_sessions_statement_text_carries_no_tenant_id(
        database: Database, tenant: uuid.UUID, superuser: Connect) -> None:
    """Even for whoever may read pg_stat_activity (a superuser here), the text
    of a tenant's transaction names no tenant: the id travels as a bind
    parameter (pg8000 uses the extended protocol), the text says `$1`."""
    with database.transaction(None) as conn:
        [[pid]] = conn.run("SELECT pg_backend_pid()")
    observer = superuser()
    try:
        with database.transaction(tenant) as conn:
            [[text]] = observer.run("SELECT query FROM pg_stat_activity WHERE pid = :p", p=pid)
            assert "set_config('app.tenant_id', $1, true)" in text
            assert str(tenant) not in text
            conn.run("SELECT count(*) FROM invoices WHERE tenant_id = :t", t=str(tenant))
            [[text]] = observer.run("SELECT query FROM pg_stat_activity WHERE pid = :p", p=pid)
            assert "tenant_id = $1" in text
            assert str(tenant) not in text
    finally:
        observer.close()


@pytest.mark.parametrize(("call", "columns"), [
    ("SELECT * FROM tenants_to_seal(5)", ["tenant_id"]),
    ("SELECT * FROM anchors_to_retry(5)", ["tenant_id", "anchor_id"]),
    ("SELECT * FROM closings_to_anchor(5, ARRAY['x'], now() - interval '7 days')",
     ["tenant_id", "closing_id"]),
    ("SELECT * FROM invoices_awaiting_archive(interval '5 minutes', 5)",
     ["tenant_id", "invoice_id"]),
])
def test_scheduling_functions_give_the_app_role_ids_only(
        as_app: Connect, call: str, columns: list[str]) -> None:
    """The schedules run as the application role, so it can list the ids of
    work due (ids, never data; bounded by the limit): the accepted limit of
    docs/security.md. Anything more in their result would be a leak."""
    conn = as_app()
    try:
        rows = conn.run(call)
        assert [c["name"] for c in conn.columns] == columns
        assert len(rows) <= 5
    finally:
        conn.close()
