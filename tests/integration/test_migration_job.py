"""The deploy's migration job (functions/migrate.py) on the real PostgreSQL 15.

Each test gets a fresh database owned by a fresh owner role that is no
superuser, as on a managed database (Scaleway, RDS): the job prepares the
application role, applies every migration once, says so when run again,
serialises concurrent runs, and names a failed migration without its text.
"""

from __future__ import annotations

import ast
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from pg8000.native import identifier

from chalicelib import migrate as migrations
from chalicelib.config import settings
from chalicelib.migrate import MIGRATIONS, migrate
from devstack.postgres import new_password
from devstack.stack import LocalStack
from tests.conftest import remember

ROOT = Path(__file__).resolve().parents[2]
ALL = sorted(p.name for p in MIGRATIONS.glob("*.sql"))


@dataclass
class Fresh:
    """A fresh database, its owner and the name its app role will have."""

    database: str
    owner: str
    owner_password: str
    app: str
    app_password: str
    port: int

    def env(self, *, app_password: bool = True) -> dict[str, str]:
        values = {"EINVOICE_DB_HOST": "127.0.0.1", "EINVOICE_DB_PORT": str(self.port),
                  "EINVOICE_DB_NAME": self.database, "EINVOICE_DB_OWNER_USER": self.owner,
                  "EINVOICE_DB_OWNER_PASSWORD": self.owner_password,
                  "EINVOICE_DB_APP_USER": self.app,
                  "EINVOICE_DB_APP_PASSWORD": self.app_password if app_password else ""}
        return values

    def connect(self, user: str, password: str) -> pg8000.native.Connection:
        return pg8000.native.Connection(user=user, password=password, host="127.0.0.1",
                                        port=self.port, database=self.database,
                                        ssl_context=False)

    def owner_connection(self) -> pg8000.native.Connection:
        return self.connect(self.owner, self.owner_password)


def _fresh(stack: LocalStack, *, createrole: bool = True) -> Fresh:
    tag = uuid.uuid4().hex[:10]
    found = Fresh(f"mig_{tag}", f"mig_owner_{tag}", new_password(), f"mig_app_{tag}",
                  new_password(), stack.pg_port)
    remember(found.owner_password, found.app_password)
    admin = stack.postgres.connect()
    try:
        admin.run(f"CREATE ROLE {identifier(found.owner)} LOGIN NOSUPERUSER "
                  f"{'CREATEROLE' if createrole else 'NOCREATEROLE'} "
                  f"PASSWORD '{found.owner_password}'")
        admin.run(f"CREATE DATABASE {identifier(found.database)} OWNER "
                  f"{identifier(found.owner)} ENCODING 'UTF8' TEMPLATE template0")
    finally:
        admin.close()
    return found


def _drop(stack: LocalStack, fresh: Fresh) -> None:
    admin = stack.postgres.connect()
    try:
        admin.run(f"DROP DATABASE IF EXISTS {identifier(fresh.database)} WITH (FORCE)")
        admin.run(f"DROP ROLE IF EXISTS {identifier(fresh.app)}")
        admin.run(f"DROP ROLE IF EXISTS {identifier(fresh.owner)}")
    finally:
        admin.close()


@pytest.fixture
def fresh(stack: LocalStack) -> Iterator[Fresh]:
    made = _fresh(stack)
    yield made
    _drop(stack, made)


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], None]]:
    """Point the job's settings at a database (as its function environment would)."""
    def point(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()

    yield point
    monkeypatch.undo()
    settings.cache_clear()


def run(event: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    from functions.migrate import handle

    answer = handle(event or {"headers": {"X-Request-Id": "deploy-1"}}, None)
    return answer["statusCode"], json.loads(answer["body"])


def test_on_a_fresh_database_all_apply_then_none(fresh: Fresh, job_env: Any) -> None:
    """The owner is no superuser (CREATEROLE only, as RDS's master user): the job
    creates the app role, applies every migration, and a rerun applies none."""
    job_env(fresh.env())
    status, body = run()
    assert status == 200, body
    assert body["applied"] == ALL and body["status"] == "migrated"
    assert body["migrations"] == len(ALL)
    assert f"created the application role {fresh.app}" in body["role"]

    status, again = run()
    assert status == 200 and again["applied"] == [] and again["status"] == "up to date"

    from functions.migrate import handle_aws

    assert handle_aws({}, None)["applied"] == []

    app = fresh.connect(fresh.app, fresh.app_password)  # the role it made logs in
    try:
        [[superuser, bypass, create_role, create_db]] = app.run(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user")
        assert not (superuser or bypass or create_role or create_db)
        assert app.run("SELECT count(*) FROM tenants") == [[0]]  # granted, and RLS hides all
        with pytest.raises(pg8000.native.DatabaseError) as refused:
            app.run("SELECT * FROM schema_migrations")
        assert refused.value.args[0]["C"] == "42501"
        with pytest.raises(pg8000.native.DatabaseError) as refused:
            app.run("CREATE TABLE planted (x int)")
        assert refused.value.args[0]["C"] == "42501"
    finally:
        app.close()
    owner = fresh.owner_connection()
    try:
        assert [r[0] for r in owner.run("SELECT version FROM schema_migrations ORDER BY 1")] \
            == ALL
    finally:
        owner.close()


def test_concurrent_runs_serialise_each_migration_applied_once(fresh: Fresh) -> None:
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def deploy(name: str) -> None:
        conn = fresh.owner_connection()
        try:
            start.wait()
            results[name] = migrate(conn, fresh.app, app_password=fresh.app_password)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=deploy, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted([results["a"], results["b"]], key=len) == [[], ALL]


def _broken_migrations(folder: Path) -> Path:
    (folder / "0001_ok.sql").write_text("CREATE TABLE job_ok (x int);\n")
    # The server's error would quote the value: an IBAN, as data often is.
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE half_applied (x int);\n"
        "INSERT INTO half_applied VALUES ('FR7630006000011234567890189'::int);\n")
    return folder


def test_a_failed_migration_is_named_rolled_back_whole_and_never_quoted(
        fresh: Fresh, job_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], service_logs: pytest.LogCaptureFixture) -> None:
    from functions.migrate import MigrationJobFailed, handle_aws

    monkeypatch.setattr(migrations, "MIGRATIONS", _broken_migrations(tmp_path))
    job_env(fresh.env())
    status, body = run()
    assert status == 500
    assert body == {"error": "migration failed", "migration": "0002_broken.sql",
                    "sqlstate": "22P02",
                    "detail": "rolled back whole: nothing of it is applied; the migrations "
                              "before it stay applied"}
    with pytest.raises(MigrationJobFailed) as failed:
        handle_aws({}, None)
    assert str(failed.value) == "migration failed: 0002_broken.sql (SQLSTATE 22P02)"

    owner = fresh.owner_connection()
    try:
        assert owner.run("SELECT version FROM schema_migrations") == [["0001_ok.sql"]]
        assert owner.run("SELECT to_regclass('job_ok') IS NOT NULL, "
                         "to_regclass('half_applied') IS NOT NULL") == [[True, False]]
    finally:
        owner.close()
    printed = capsys.readouterr()
    everything = json.dumps(body) + str(failed.value) + printed.out + printed.err \
        + service_logs.text + repr([r.__dict__ for r in service_logs.records])
    assert "FR76" not in everything and "invalid input syntax" not in everything

    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half_applied (x int);\n")
    status, body = run()
    assert status == 200 and body["applied"] == ["0002_broken.sql"]


def test_a_pre_existing_app_role_is_used_without_its_password(stack: LocalStack,
                                                              job_env: Any) -> None:
    """Scaleway: the app user exists (made by the infrastructure) and the owner
    may not create roles; the job needs neither the app password nor CREATEROLE."""
    fresh = _fresh(stack, createrole=False)
    try:
        admin = stack.postgres.connect()
        try:
            admin.run(f"CREATE ROLE {identifier(fresh.app)} LOGIN NOSUPERUSER NOBYPASSRLS "
                      f"PASSWORD '{fresh.app_password}'")
        finally:
            admin.close()
        job_env(fresh.env(app_password=False))
        status, body = run()
        assert status == 200 and body["applied"] == ALL, body
        app = fresh.connect(fresh.app, fresh.app_password)
        try:
            assert app.run("SELECT count(*) FROM tenants") == [[0]]
        finally:
            app.close()
    finally:
        _drop(stack, fresh)


@pytest.mark.parametrize(("setup", "words"), [
    (None, "may not create roles (CREATEROLE): create it first"),
    ("LOGIN BYPASSRLS", "is a superuser or bypasses row-level security"),
    ("NOLOGIN", "cannot log in"),
    ("LOGIN IN ROLE pg_monitor", "is a member of pg_read_all_stats"),
])
def test_an_app_role_that_cannot_be_made_safe_stops_the_run(
        stack: LocalStack, job_env: Any, setup: str | None, words: str) -> None:
    fresh = _fresh(stack, createrole=False)
    try:
        if setup is not None:
            admin = stack.postgres.connect()
            try:
                admin.run(f"CREATE ROLE {identifier(fresh.app)} {setup}")
            finally:
                admin.close()
        job_env(fresh.env())
        status, body = run()
        assert status == 500 and body["error"] == "migrations stopped"
        assert words in body["detail"]
        owner = fresh.owner_connection()
        try:  # stopped before any migration
            assert owner.run("SELECT to_regclass('schema_migrations') IS NULL") == [[True]]
        finally:
            owner.close()
    finally:
        _drop(stack, fresh)


def test_an_app_role_that_is_the_owner_is_refused(fresh: Fresh, job_env: Any) -> None:
    job_env({**fresh.env(), "EINVOICE_DB_APP_USER": fresh.owner})
    status, body = run()
    assert status == 500 and "is the owner role or a member of it" in body["detail"]


def test_a_wrong_owner_password_answers_500_without_server_text(fresh: Fresh,
                                                                job_env: Any) -> None:
    job_env({**fresh.env(), "EINVOICE_DB_OWNER_PASSWORD": "wrong-password-123"})
    status, body = run()
    assert status == 500
    assert body == {"error": "cannot connect to the database as the owner role",
                    "reason": "DatabaseError, SQLSTATE 28P01"}


def _reads_owner_credentials(path: Path) -> bool:
    names = {"db_owner_password", "db_owner_user", "EINVOICE_DB_OWNER_PASSWORD",
             "owner_connector"}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in names:
            return True
        if isinstance(node, ast.Name) and node.id in names:
            return True
        if isinstance(node, ast.Constant) and node.value in names:
            return True
        if isinstance(node, ast.alias) and node.name in names:
            return True
    return False


def test_only_the_migration_job_and_operator_commands_read_the_owner_credentials() -> None:
    """Every function but functions/migrate.py runs without the owner's password:
    neither the edge, the runtime nor the use cases name it."""
    readers = sorted(str(p.relative_to(ROOT)) for p in [
        ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py"), *(ROOT / "functions").glob(
            "*.py")] if _reads_owner_credentials(p))
    assert readers == ["chalicelib/config.py", "chalicelib/migrate.py",
                       "chalicelib/rotate_keys.py", "functions/migrate.py"]


def test_the_functions_environment_has_no_owner_password(stack: LocalStack) -> None:
    """The stack the whole suite runs the app against gives it none: every
    other test is the proof that the app never needs it."""
    assert "EINVOICE_DB_OWNER_PASSWORD" not in stack.env()
    assert settings().db_owner_password.get_secret_value() == ""


# --- the ledger checks added to a live chain (0020, 0021) ---------------------------------

def _until(folder: Path, last: str) -> Path:
    """The migrations up to `last`, as a database deployed before the next ones had."""
    for path in MIGRATIONS.glob("*.sql"):
        if path.name <= last:
            (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def _live_chain(fresh: Fresh, folder: Path, payloads: list[str]) -> pg8000.native.Connection:
    """A database at 0019 whose tenant's chain holds `payloads` (note.added entries)."""
    owner = fresh.owner_connection()
    migrate(owner, fresh.app, app_password=fresh.app_password, directory=_until(folder, "0019"))
    owner.run("BEGIN")
    tenant = str(uuid.uuid4())
    owner.run("SELECT set_config('app.tenant_id', :t, true)", t=tenant)
    owner.run("INSERT INTO tenants (id, name) VALUES (:t, 'Live SARL')", t=tenant)
    for payload in payloads:
        owner.run("SELECT * FROM ledger_append('note.added', :p, NULL)", p=payload)
    owner.run("COMMIT")
    return owner


def _validated(owner: pg8000.native.Connection) -> dict[str, bool]:
    return {name: bool(valid) for name, valid in owner.run(
        "SELECT conname, convalidated FROM pg_constraint WHERE conname IN "
        "('ledger_entries_envelope', 'ledger_entries_service_kinds')")}


GOOD = '{"at":"2026-11-23T10:00:00.000000Z","data":{"n":1},"v":1}'


def test_the_envelope_check_is_added_to_a_live_chain_and_validated(fresh: Fresh,
                                                                   tmp_path: Path) -> None:
    owner = _live_chain(fresh, tmp_path, [GOOD, GOOD.replace('"n":1', '"n":2')])
    try:
        assert migrate(owner, fresh.app) == [n for n in ALL if n > "0019"]
        assert _validated(owner) == {"ledger_entries_envelope": True,
                                     "ledger_entries_service_kinds": True}
    finally:
        owner.close()


def test_a_chain_already_holding_a_malformed_entry_still_migrates_and_refuses_new_ones(
        fresh: Fresh, tmp_path: Path) -> None:
    """Before 0020 the check let `{}` through (it returned NULL): such an entry
    stays (entries are never changed), the check stays NOT VALID, and every
    new row is checked all the same."""
    owner = _live_chain(fresh, tmp_path, [GOOD, "{}"])
    try:
        assert migrate(owner, fresh.app) == [n for n in ALL if n > "0019"]
        assert _validated(owner) == {"ledger_entries_envelope": False,
                                     "ledger_entries_service_kinds": True}
        owner.run("SELECT set_config('app.sealing_scan', 'on', false)")  # the owner's view
        [[tenant]] = owner.run("SELECT tenant_id::text FROM ledger_heads")
        owner.run("SELECT set_config('app.sealing_scan', 'off', false)")
        owner.run("BEGIN")
        owner.run("SELECT set_config('app.tenant_id', :t, true)", t=tenant)
        with pytest.raises(pg8000.native.DatabaseError) as refused:
            owner.run("SELECT * FROM ledger_append('note.added', '{}', NULL)")
        owner.run("ROLLBACK")
        assert refused.value.args[0]["C"] == "23514"
    finally:
        owner.close()
