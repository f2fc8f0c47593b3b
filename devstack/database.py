"""Creates the roles and the database on a cluster we own (local runs, tests).

On managed PostgreSQL the same roles are created by the infrastructure code;
the guarantees are the same: the owner owns the tables, the application role
logs in without SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS.
"""

from __future__ import annotations

from pg8000.native import identifier, literal

from chalicelib.config import Settings
from chalicelib.migrate import migrate, owner_connector
from devstack.postgres import PostgresServer

ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"

# The cumulative statistics and lock views, and the functions under them, are
# PUBLIC by default: every session of the application role would read the
# statements of the others (pg_stat_activity.query; same role, so no
# pg_read_all_stats needed) and global row counts (n_live_tup). Only the
# catalog's owner (a superuser) can revoke them, so this is a cluster step, not
# a migration. A view checks the EXECUTE right on its functions as the caller,
# so pg_stat_ssl goes too (nothing in the app reads it).
# pg_stats stays: it hides every table under row-level security already.
STATISTICS_REVOKE = r"""
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS v FROM pg_class c
              WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'v'
                AND (c.relname LIKE 'pg\_stat\_%' OR c.relname LIKE 'pg\_statio\_%'
                     OR c.relname = 'pg_locks')
    LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM PUBLIC', r.v);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname LIKE 'pg\_stat\_get\_%' OR p.proname = 'pg_lock_status')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', r.f);
    END LOOP;
END
$$
"""


def provision(server: PostgresServer, settings: Settings) -> list[str]:
    """Create (or re-password) both roles and the database, then migrate."""
    admin = server.connect()
    try:
        for role, password in ((settings.db_owner_user, settings.db_owner_password),
                               (settings.db_app_user, settings.db_app_password)):
            exists = admin.run("SELECT 1 FROM pg_roles WHERE rolname = :r", r=role)
            verb = "ALTER" if exists else "CREATE"
            admin.run(f"{verb} ROLE {identifier(role)} {ROLE_ATTRIBUTES} "
                      f"PASSWORD {literal(password.get_secret_value())}")
        if not admin.run("SELECT 1 FROM pg_database WHERE datname = :d", d=settings.db_name):
            admin.run(f"CREATE DATABASE {identifier(settings.db_name)} "
                      f"OWNER {identifier(settings.db_owner_user)} "
                      "ENCODING 'UTF8' TEMPLATE template0")
        admin.run(f"REVOKE ALL ON DATABASE {identifier(settings.db_name)} FROM PUBLIC")
        admin.run(f"GRANT CONNECT ON DATABASE {identifier(settings.db_name)} "
                  f"TO {identifier(settings.db_app_user)}")
    finally:
        admin.close()

    in_db = server.connect(settings.db_name)
    try:
        in_db.run("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        in_db.run(STATISTICS_REVOKE)
    finally:
        in_db.close()

    owner = owner_connector(settings)()
    try:
        return migrate(owner, settings.db_app_user)
    finally:
        owner.close()
