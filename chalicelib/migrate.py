"""Applies chalicelib/migrations/*.sql in order, as the owner role.

Each file runs in its own transaction and is recorded with its SHA-256 in
`schema_migrations`; an applied file that changed afterwards stops the run
(migrations are history, never edited). An advisory lock lets concurrent
deployments run this safely.

    python -m chalicelib.migrate     # settings from EINVOICE_* (owner credentials)
"""

from __future__ import annotations

import hashlib
import re
import ssl
import sys
from pathlib import Path

import pg8000.native

from chalicelib.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x65696E76  # "einv"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    pass


def quote_role(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise MigrationError(f"role name {name!r} must match {_ROLE_NAME.pattern}")
    return f'"{name}"'


def migrate(conn: pg8000.native.Connection, app_role: str) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    role = quote_role(app_role)
    conn.run("SELECT pg_advisory_lock(:id)", id=_LOCK_ID)
    try:
        conn.run("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                 "sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = dict(conn.run("SELECT version, sha256 FROM schema_migrations"))
        done: list[str] = []
        for path in sorted(MIGRATIONS.glob("*.sql")):
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
            except BaseException:
                conn.run("ROLLBACK")
                raise
            done.append(path.name)
        return done
    finally:
        conn.run("SELECT pg_advisory_unlock(:id)", id=_LOCK_ID)


def main() -> int:
    settings = Settings()
    conn = pg8000.native.Connection(
        user=settings.db_owner_user, password=settings.db_owner_password.get_secret_value(),
        host=settings.db_host, port=settings.db_port, database=settings.db_name,
        ssl_context=ssl.create_default_context() if settings.db_tls else None)
    try:
        for name in migrate(conn, settings.db_app_user):
            print(f"applied {name}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
