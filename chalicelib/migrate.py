"""Applies chalicelib/migrations/*.sql in order, as the owner role, after
making sure the application role exists and cannot bypass what the schema
enforces.

Everything runs under one advisory lock, so concurrent deployments wait for
each other and the second finds nothing to do:

1. the application role: created when missing (LOGIN NOSUPERUSER NOCREATEDB
   NOCREATEROLE NOREPLICATION NOBYPASSRLS) if the owner may create roles and
   the job was given its password; an existing one gets that password when
   given (and the owner may set it). Either way it is then checked: a role
   that is a superuser, bypasses RLS, cannot log in, is (a member of) the
   owner, reads all statistics (pg_read_all_stats), or may create objects
   in schema public stops the run.
2. CONNECT on the database for it and nothing for PUBLIC; on a managed
   database where the owner cannot change the grants, what they already
   allow is checked instead.
3. each pending migration in its own transaction, recorded with its SHA-256
   in `schema_migrations`; a failing one is rolled back whole and named, with
   its SQLSTATE only (the server's text may quote data). An applied file that
   changed afterwards stops the run (migrations are history, never edited).

    python -m chalicelib.migrate     # settings from EINVOICE_* (owner credentials)

The deploy runs the same through the one-shot function functions/migrate.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pg8000.native
from pg8000.exceptions import DatabaseError
from pg8000.native import identifier, literal

from chalicelib.config import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x65696E76  # "einv"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
APP_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
_INSUFFICIENT_PRIVILEGE = "42501"


class MigrationError(RuntimeError):
    """The run stopped for a reason of ours, stated in full (it quotes no data)."""


class MigrationFailed(MigrationError):
    """A step the server refused: named, with its SQLSTATE, never the server's
    text. A migration that fails is rolled back whole."""

    def __init__(self, step: str, state: str | None, what: str = "migration") -> None:
        self.step = step
        self.sqlstate = state
        self.what = what
        super().__init__(f"{what} {step} failed" + (f" (SQLSTATE {state})" if state else ""))


def quote_role(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise MigrationError(f"role name {name!r} must match {_ROLE_NAME.pattern}")
    return f'"{name}"'


def _state(exc: BaseException) -> str | None:
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        code = exc.args[0].get("C")
        return str(code) if code else None
    return None


@dataclass
class RoleReport:
    """What the role set-up did, in words an operator reads (no secrets)."""

    notes: list[str] = field(default_factory=list)


def prepare_app_role(conn: pg8000.native.Connection, app_role: str,
                     password: str | None) -> RoleReport:
    """Step 1 and 2 of the module docstring, as the owner (not a superuser)."""
    role = quote_role(app_role)
    report = RoleReport()
    found = conn.run("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                     "WHERE rolname = :r", r=app_role)
    if not found:
        if not password:
            raise MigrationError(
                f"the application role {app_role} does not exist: create it "
                f"({APP_ROLE_ATTRIBUTES}) or give this job its password "
                "(EINVOICE_DB_APP_PASSWORD) to create it")
        try:
            conn.run(f"CREATE ROLE {role} {APP_ROLE_ATTRIBUTES} PASSWORD {literal(password)}")
        except DatabaseError as exc:
            state = _state(exc)
            if state == _INSUFFICIENT_PRIVILEGE:
                raise MigrationError(
                    f"the application role {app_role} does not exist and the owner role may not "
                    "create roles (CREATEROLE): create it first") from None
            raise MigrationFailed(f"creating {app_role}", state, "role set-up") from None
        report.notes.append(f"created the application role {app_role}")
    else:
        superuser, bypass_rls, can_login = found[0]
        if superuser or bypass_rls:
            raise MigrationError(f"the application role {app_role} is a superuser or bypasses "
                                 "row-level security: it must be neither")
        if not can_login:
            raise MigrationError(f"the application role {app_role} cannot log in (LOGIN)")
        if password:
            try:
                conn.run(f"ALTER ROLE {role} PASSWORD {literal(password)}")
            except DatabaseError as exc:
                if _state(exc) != _INSUFFICIENT_PRIVILEGE:
                    raise MigrationFailed(f"setting the password of {app_role}", _state(exc),
                                          "role set-up") from None
                report.notes.append(f"the password of {app_role} is left as it is (the owner "
                                    "may not change it)")
            else:
                report.notes.append(f"set the password of {app_role}")
    [[owner_like]] = conn.run("SELECT pg_has_role(:r, current_user, 'MEMBER')", r=app_role)
    if owner_like:
        raise MigrationError(f"the application role {app_role} is the owner role or a member "
                             "of it: it would own the tables it must only use")
    # pg_read_all_stats (pg_monitor includes it) would show it every session's
    # statements and the statistics the cluster step revokes from PUBLIC.
    [[reads_stats]] = conn.run("SELECT pg_has_role(:r, 'pg_read_all_stats', 'MEMBER')",
                               r=app_role)
    if reads_stats:
        raise MigrationError(f"the application role {app_role} is a member of "
                             "pg_read_all_stats: it would read every session's statements")

    [[database]] = conn.run("SELECT current_database()")
    db = identifier(database)
    try:
        conn.run(f"GRANT CONNECT ON DATABASE {db} TO {role}")
        conn.run(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    except DatabaseError as exc:
        if _state(exc) != _INSUFFICIENT_PRIVILEGE:
            raise MigrationFailed("database grants", _state(exc), "role set-up") from None
        report.notes.append("database grants left as they are (the owner does not own the "
                            "database)")
    [[may_connect]] = conn.run("SELECT has_database_privilege(:r, current_database(), "
                               "'CONNECT')", r=app_role)
    if not may_connect:
        raise MigrationError(f"the application role {app_role} may not connect to {database}: "
                             "grant it CONNECT, or let the owner role own the database")
    # Nobody but the owner creates objects in public (PostgreSQL 15's default).
    with contextlib.suppress(DatabaseError):
        conn.run("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    [[may_create]] = conn.run("SELECT has_schema_privilege(:r, 'public', 'CREATE')",
                              r=app_role)
    if may_create:
        raise MigrationError(f"the application role {app_role} may create objects in schema "
                             "public: revoke CREATE on it")
    return report


def pending(conn: pg8000.native.Connection, directory: Path | None = None) -> list[str]:
    """The migrations not applied yet (read without the lock: a report only)."""
    files = [p.name for p in sorted((directory or MIGRATIONS).glob("*.sql"))]
    [[exists]] = conn.run("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = {r[0] for r in conn.run("SELECT version FROM schema_migrations")} if exists \
        else set()
    return [name for name in files if name not in applied]


def migrate(conn: pg8000.native.Connection, app_role: str, *,
            app_password: str | None = None, directory: Path | None = None,
            role_report: RoleReport | None = None) -> list[str]:
    """Prepare the application role, apply pending migrations; return the
    names applied now (empty: the database was up to date)."""
    role = quote_role(app_role)
    conn.run("SELECT pg_advisory_lock(:id)", id=_LOCK_ID)
    try:
        report = prepare_app_role(conn, app_role, app_password)
        if role_report is not None:
            role_report.notes.extend(report.notes)
        conn.run("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                 "sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = dict(conn.run("SELECT version, sha256 FROM schema_migrations"))
        done: list[str] = []
        for path in sorted((directory or MIGRATIONS).glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if path.name in applied:
                if applied[path.name] != digest:
                    raise MigrationError(f"{path.name} changed after it was applied")
                continue
            conn.run("BEGIN")
            try:
                conn.run(text.replace("{{app_role}}", role))
                conn.run("INSERT INTO schema_migrations (version, sha256) VALUES (:v, :s)",
                         v=path.name, s=digest)
                conn.run("COMMIT")
            except Exception as exc:  # noqa: BLE001 - re-raised by name, without server text
                state = _state(exc)
                with contextlib.suppress(Exception):  # a dead connection rolls back itself
                    conn.run("ROLLBACK")
                raise MigrationFailed(path.name, state) from None
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.run("ROLLBACK")
                raise
            done.append(path.name)
        return done
    finally:
        with contextlib.suppress(Exception):  # a dead session has released it already
            conn.run("SELECT pg_advisory_unlock(:id)", id=_LOCK_ID)


def owner_connector(settings: Settings) -> Callable[[], pg8000.native.Connection]:
    """Connections as the owner role, with the same TLS as the functions'."""
    from chalicelib.adapters.postgres.database import connector

    return connector(settings, settings.db_owner_user,
                     settings.db_owner_password.get_secret_value())


def main() -> int:
    settings = Settings.from_environment()
    conn = owner_connector(settings)()
    try:
        notes = RoleReport()
        applied = migrate(conn, settings.db_app_user,
                          app_password=settings.db_app_password.get_secret_value() or None,
                          role_report=notes)
        for note in notes.notes:
            print(note)
        for name in applied:
            print(f"applied {name}")
        if not applied:
            print("up to date: no migration to apply")
    except MigrationError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
