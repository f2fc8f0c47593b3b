"""The catalogue of the schema the migrations create: every table holding a
`tenant_id` column has row-level security enabled and forced (so even the
tables' owner is bound), and a policy for the application that compares the
row's tenant with the transaction's `app.tenant_id` setting. A new tenant
table that forgets one of the three fails here, whatever its name."""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from chalicelib.config import Settings
from tests.conftest import Connect

SETTING = "current_setting('app.tenant_id'"


@pytest.fixture(scope="module")
def catalogue(superuser: Connect) -> Iterator[pg8000.native.Connection]:
    conn = superuser()
    try:
        yield conn
    finally:
        conn.close()


def tenant_tables(conn: pg8000.native.Connection) -> dict[str, tuple[bool, bool]]:
    """Each ordinary or partitioned table with a tenant_id column, outside the
    system schemas: (RLS enabled, RLS forced)."""
    rows = conn.run(
        "SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
        "AND NOT a.attisdropped "
        "WHERE c.relkind IN ('r', 'p') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')")
    return {name: (enabled, forced) for name, enabled, forced in rows}


def setting_readers(conn: pg8000.native.Connection) -> set[str]:
    """Functions of the schema whose body reads the tenant setting (policies
    call app_current_tenant() rather than repeating current_setting)."""
    rows = conn.run(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND position(:setting IN p.prosrc) > 0", setting=SETTING)
    return {name for [name] in rows}


def tenant_policies(conn: pg8000.native.Connection, app_role: str) -> dict[str, list[str]]:
    """Per table, the policies binding the application role that compare the
    row's tenant_id with the transaction's tenant setting (directly or through
    a function that reads it)."""
    readers = setting_readers(conn)
    rows = conn.run("SELECT schemaname || '.' || tablename, policyname, roles::text[], "
                    "coalesce(qual, ''), coalesce(with_check, '') FROM pg_policies")
    found: dict[str, list[str]] = {}
    for table, policy, roles, qual, with_check in rows:
        if not ({"public", app_role} & set(roles)):
            continue
        for expression in (qual, with_check):
            reads = SETTING in expression or any(f"{f}(" in expression for f in readers)
            if reads and "tenant_id" in expression:
                found.setdefault(table, []).append(policy)
                break
    return found


def test_the_catalogue_finds_the_tenant_tables(catalogue: pg8000.native.Connection) -> None:
    tables = tenant_tables(catalogue)
    assert {"public.ledger_entries", "public.ledger_heads", "public.invoices",
            "public.users", "public.closings", "public.pa_cursors",
            "public.pa_status_messages"} <= set(tables), sorted(tables)
    assert "app_current_tenant" in setting_readers(catalogue)


def test_every_tenant_table_has_row_security_enabled_and_forced(
        catalogue: pg8000.native.Connection) -> None:
    unguarded = {name: {"enabled": enabled, "forced": forced}
                 for name, (enabled, forced) in tenant_tables(catalogue).items()
                 if not (enabled and forced)}
    assert unguarded == {}


def test_every_tenant_table_has_a_policy_on_the_tenant_setting(
        catalogue: pg8000.native.Connection, app_settings: Settings) -> None:
    policies = tenant_policies(catalogue, app_settings.db_app_user)
    without = sorted(set(tenant_tables(catalogue)) - set(policies))
    assert without == []


def test_a_tenant_table_without_its_guards_is_named(
        catalogue: pg8000.native.Connection, app_settings: Settings) -> None:
    """The check itself, on tables made (and rolled back) here: one with no
    row security, one enabled but not forced, one whose only policy ignores
    the tenant."""
    catalogue.run("BEGIN")
    try:
        catalogue.run("CREATE TABLE unguarded_notes (tenant_id uuid NOT NULL)")
        catalogue.run("CREATE TABLE unforced_notes (tenant_id uuid NOT NULL)")
        catalogue.run("ALTER TABLE unforced_notes ENABLE ROW LEVEL SECURITY")
        catalogue.run("CREATE TABLE open_notes (tenant_id uuid NOT NULL)")
        catalogue.run("ALTER TABLE open_notes ENABLE ROW LEVEL SECURITY")
        catalogue.run("ALTER TABLE open_notes FORCE ROW LEVEL SECURITY")
        catalogue.run("CREATE POLICY everyone ON open_notes USING (true)")
        tables = tenant_tables(catalogue)
        policies = tenant_policies(catalogue, app_settings.db_app_user)
    finally:
        catalogue.run("ROLLBACK")
    assert tables["public.unguarded_notes"] == (False, False)
    assert tables["public.unforced_notes"] == (True, False)
    assert tables["public.open_notes"] == (True, True)
    assert not {"public.unguarded_notes", "public.unforced_notes",
                "public.open_notes"} & set(policies)
    assert "public.ledger_entries" in policies
