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
    finally:
        in_db.close()

    owner = owner_connector(settings)()
    try:
        return migrate(owner, settings.db_app_user)
    finally:
        owner.close()
