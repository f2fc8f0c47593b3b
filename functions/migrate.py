"""The migrations as a one-shot job the deploy runs (never a route or a schedule).

The only function given the owner role's credentials (EINVOICE_DB_OWNER_USER,
EINVOICE_DB_OWNER_PASSWORD); every other function connects as the application
role. It prepares the application role and applies chalicelib/migrations/
with chalicelib/migrate.py, over the same TLS as the functions (EINVOICE_DB_TLS,
EINVOICE_DB_CA_FILE / EINVOICE_DB_CA_PEM). Run twice, the second applies
nothing and says so; run twice at once, the second waits on the advisory lock,
then finds nothing to do. A failing migration is rolled back whole and named
with its SQLSTATE; the server's text, which may quote data, is never answered
or logged.

- `handle(event, context)`: Scaleway (an HTTP-shaped call; its body is
  ignored): 200 with what was applied, 500 naming what failed.
- `handle_aws(event, context)`: Lambda, invoked directly by the deploy: the
  same answer on success; a failure raises `MigrationJobFailed` whose message
  is that naming, so the invocation reports a function error and the deploy
  stops there.
"""

from __future__ import annotations

from typing import Any

from chalicelib.entrypoints.http import json_response
from chalicelib.entrypoints.invocation import invocation, scaleway_call_id, usable_id
from chalicelib.logs import logger


class MigrationJobFailed(RuntimeError):
    """The job did not complete; the message names the step (never server text)."""


def run_job() -> tuple[int, dict[str, Any]]:
    """(status, answer) of one run against the configured database."""
    from chalicelib.config import settings
    from chalicelib.migrate import (
        MIGRATIONS,
        MigrationError,
        MigrationFailed,
        RoleReport,
        migrate,
        owner_connector,
    )
    from chalicelib.runtime import fault_code

    s = settings()
    total = len(list(MIGRATIONS.glob("*.sql")))
    try:
        conn = owner_connector(s)()
    except Exception as exc:  # noqa: BLE001 - answered 500, logged by type and SQLSTATE
        reason = type(exc).__name__ + (f", SQLSTATE {fault_code(exc)}" if fault_code(exc)
                                       else "")
        logger.error("migrations: cannot connect as the owner role", extra={"reason": reason})
        return 500, {"error": "cannot connect to the database as the owner role",
                     "reason": reason}
    notes = RoleReport()
    try:
        applied = migrate(conn, s.db_app_user,
                          app_password=s.db_app_password.get_secret_value() or None,
                          role_report=notes)
    except MigrationFailed as exc:
        logger.error("migrations stopped", extra={"step": exc.step, "sqlstate": exc.sqlstate})
        if exc.what == "migration":
            return 500, {"error": "migration failed", "migration": exc.step,
                         "sqlstate": exc.sqlstate,
                         "detail": "rolled back whole: nothing of it is applied; the "
                                   "migrations before it stay applied"}
        return 500, {"error": f"{exc.what} failed", "step": exc.step, "sqlstate": exc.sqlstate}
    except MigrationError as exc:  # our own words: they quote no data
        logger.error("migrations stopped", extra={"detail": str(exc)})
        return 500, {"error": "migrations stopped", "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - answered 500, logged by type and SQLSTATE
        reason = type(exc).__name__ + (f", SQLSTATE {fault_code(exc)}" if fault_code(exc)
                                       else "")
        logger.error("migrations stopped", extra={"reason": reason})
        return 500, {"error": "internal error", "reason": reason}
    finally:
        conn.close()
    logger.info("migrations done", extra={"applied": applied, "role": notes.notes})
    return 200, {"status": "migrated" if applied else "up to date", "applied": applied,
                 "migrations": total, "role": notes.notes}


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scaleway: the job's answer as an HTTP answer."""
    with invocation(scaleway_call_id(event)):
        status, body = run_job()
    return json_response(status, body)


def handle_aws(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda direct invoke: the answer, or a function error naming the failure."""
    with invocation(usable_id(getattr(context, "aws_request_id", None))):
        status, body = run_job()
    if status != 200:
        named = body.get("migration") or body.get("step") or body.get("detail") \
            or body.get("reason") or ""
        raise MigrationJobFailed(f"{body['error']}: {named}".rstrip(": ")
                                 + (f" (SQLSTATE {body['sqlstate']})"
                                    if body.get("sqlstate") else ""))
    return body
