"""Health route over the real stack, and the migration runner's guarantees."""

from __future__ import annotations

import json
from collections.abc import Callable

import pg8000.native
import pytest
from chalice.test import Client

from chalicelib import runtime
from chalicelib.config import Settings, settings
from chalicelib.migrate import MIGRATIONS, MigrationError, migrate, quote_role
from devstack.stack import LocalStack, free_port

Connect = Callable[[], pg8000.native.Connection]


def test_health_reports_both_dependencies_up(stack: LocalStack) -> None:
    import app as app_module

    with Client(app_module.app) as client:
        response = client.http.get("/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok", "database": "up", "object_store": "up"}


@pytest.mark.parametrize("variable,down", [("EINVOICE_DB_PORT", "database"),
                                           ("EINVOICE_S3_ENDPOINT_URL", "object_store")])
def test_health_names_the_dependency_that_is_down(stack: LocalStack,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  variable: str, down: str) -> None:
    from functions.health import handler

    dead = free_port()
    value = str(dead) if variable == "EINVOICE_DB_PORT" else f"http://127.0.0.1:{dead}"
    monkeypatch.setenv(variable, value)
    for cache in (settings, runtime.database, runtime.object_store):
        cache.cache_clear()
    try:
        response = handler({"httpMethod": "GET", "path": "/health"}, None)
    finally:
        monkeypatch.undo()
        for cache in (settings, runtime.database, runtime.object_store):
            cache.cache_clear()
    body = json.loads(response["body"])
    assert response["statusCode"] == 503
    assert body["status"] == "degraded" and body[down] == "down"
    assert {k: v for k, v in body.items() if k not in (down, "status")} == {
        ("object_store" if down == "database" else "database"): "up"}


def owner(app_settings: Settings) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        user=app_settings.db_owner_user,
        password=app_settings.db_owner_password.get_secret_value(),
        host=app_settings.db_host, port=app_settings.db_port, database=app_settings.db_name)


def test_migrations_apply_once(app_settings: Settings) -> None:
    conn = owner(app_settings)
    try:
        assert migrate(conn, app_settings.db_app_user) == []
        versions = [r[0] for r in conn.run("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == sorted(path.name for path in MIGRATIONS.glob("*.sql"))
        assert len(versions) >= 3
    finally:
        conn.close()


def test_an_edited_applied_migration_stops_the_run(app_settings: Settings,
                                                   superuser: Connect) -> None:
    root = superuser()
    conn = owner(app_settings)
    try:
        [[saved]] = root.run("SELECT sha256 FROM schema_migrations "
                             "WHERE version = '0001_tenants.sql'")
        root.run("UPDATE schema_migrations SET sha256 = 'edited' "
                 "WHERE version = '0001_tenants.sql'")
        with pytest.raises(MigrationError, match=r"0001_tenants\.sql changed"):
            migrate(conn, app_settings.db_app_user)
    finally:
        root.run("UPDATE schema_migrations SET sha256 = :s WHERE version = '0001_tenants.sql'",
                 s=saved)
        root.close()
        conn.close()


@pytest.mark.parametrize("name", ['app"; DROP TABLE tenants; --', "App", "", "a" * 64])
def test_role_names_are_not_injectable(name: str) -> None:
    with pytest.raises(MigrationError):
        quote_role(name)


def test_application_role_cannot_read_migration_history(as_app: Connect) -> None:
    conn = as_app()
    try:
        with pytest.raises(pg8000.native.DatabaseError) as caught:
            conn.run("SELECT * FROM schema_migrations")
        assert caught.value.args[0]["C"] == "42501"
    finally:
        conn.close()
