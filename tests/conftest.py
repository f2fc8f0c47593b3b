"""One real stack per test session: PostgreSQL 15 (as the unprivileged
`postgres` user, fsync off) and moto in server mode, both on 127.0.0.1 and on
free ports, started here and stopped at the end. Tests isolate by tenant."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from chalicelib import runtime
from chalicelib.adapters.postgres import Database, app_connector
from chalicelib.config import Settings, settings
from chalicelib.usecases.create_tenant import create_tenant
from devstack.pa_standin import PaStandIn
from devstack.stack import LocalStack, Secrets, free_port
from tests.fakes import FrozenClock

# Every secret the tests see (passwords, tokens, codes, keys, emails), and
# every log line the service (and any library) printed during the run: at the
# end, no line may hold any of them (pytest_sessionfinish below).
SECRETS: set[str] = set()
LOG_LINES: list[str] = []
_FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@example\.fr")
_RAW_CREDENTIAL = re.compile(r"eik_[^\[]|(?:session|csrf)=[^\[;\s]")


def remember(*values: str | None) -> None:
    SECRETS.update(v for v in values if v and len(v) >= 6)


def find_leaks(lines: list[str], secrets: set[str]) -> list[str]:
    """Each line that holds a known secret, a full email or a raw credential."""
    leaks = []
    for line in lines:
        found = [s for s in secrets if s in line]
        if found or _FULL_EMAIL.search(line) or _RAW_CREDENTIAL.search(line):
            leaks.append(line[:300])
    return leaks


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOG_LINES.append(self.format(record))


def pytest_configure(config: pytest.Config) -> None:
    from chalicelib.logs import logger as service_logger

    service = _Capture()
    service.setFormatter(service_logger.registered_formatter)  # exactly what is printed
    logging.getLogger("einvoice").addHandler(service)
    everything_else = _Capture()  # libraries (pg8000, boto3, moto, ...) at their own levels
    everything_else.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(everything_else)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = find_leaks(LOG_LINES, SECRETS)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log scan: {len(LOG_LINES)} log lines checked against "
                            f"{len(SECRETS)} secrets seen by the tests: {len(leaks)} leaks")
        for leak in leaks[:20]:
            reporter.write_line(f"  LEAK: {leak}")
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _clear_caches() -> None:
    settings.cache_clear()
    runtime.database.cache_clear()
    runtime.clock.cache_clear()
    runtime.object_store.cache_clear()
    runtime.passwords.cache_clear()
    runtime.field_cipher.cache_clear()
    runtime.key_wrapper.cache_clear()
    runtime.mailer.cache_clear()
    runtime.closing_signer.cache_clear()
    runtime.pinned_keys.cache_clear()
    runtime.pa_client.cache_clear()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    base = Path(tempfile.mkdtemp(prefix="einvoice-test-"))
    local = LocalStack(base, free_port(), free_port(), Secrets(), durable=False)
    local.start()
    saved = dict(os.environ)
    os.environ.update(local.env())
    # Same argon2id code path, cheap parameters: the suite logs in many times.
    os.environ.update(EINVOICE_PASSWORD_TIME_COST="1", EINVOICE_PASSWORD_MEMORY_KIB="1024",
                      EINVOICE_PASSWORD_PARALLELISM="1")
    # Every test request comes from 127.0.0.1: rate-limit tests lower these themselves.
    for limit in ("LOGIN_PER_IP", "LOGIN_PER_ACCOUNT", "SIGNUP_PER_IP", "WRITES_PER_USER",
                  "SECOND_FACTOR_PER_USER"):
        os.environ[f"EINVOICE_{limit}_PER_MINUTE"] = "100000"
    _clear_caches()
    try:
        yield local
    finally:
        if runtime.database.cache_info().currsize:
            runtime.database().close()
        os.environ.clear()
        os.environ.update(saved)
        _clear_caches()
        local.stop()
        shutil.rmtree(local.postgres.base_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(stack: LocalStack) -> Iterator[Any]:
    """The HTTP API through Chalice's test client, on the real stack."""
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app) as test_client:
        yield test_client.http


@pytest.fixture(scope="session")
def app_settings(stack: LocalStack) -> Settings:
    return stack.settings()


@pytest.fixture(scope="session")
def database(app_settings: Settings) -> Iterator[Database]:
    db = Database(app_connector(app_settings), cipher=runtime.field_cipher)
    yield db
    db.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="session")
def documents() -> Any:
    """The Factur-X documents port (its schematron worker shared by the session)."""
    from chalicelib.adapters.documents import FacturXDocuments

    return FacturXDocuments()


@pytest.fixture
def ports(database: Database, app_settings: Settings, documents: Any, clock: FrozenClock) -> Any:
    """Issuing's ports on the real PostgreSQL and moto S3 server, with a frozen clock."""
    from chalicelib.adapters.archive import ObjectLockArchive
    from chalicelib.adapters.aws import s3_client
    from chalicelib.usecases.invoicing import InvoicePorts

    archive = ObjectLockArchive(s3_client(app_settings), app_settings.archive_bucket)
    return InvoicePorts(database.unit_of_work, documents, archive, clock)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """A frozen clock installed as the app's clock (runtime.clock), e.g. for TOTP."""
    clock = FrozenClock()
    monkeypatch.setattr(runtime, "clock", lambda: clock)
    return clock


@pytest.fixture
def tenant(database: Database) -> uuid.UUID:
    return create_tenant(f"Tenant {uuid.uuid4().hex[:8]}", database.unit_of_work)


Connect = Callable[[], pg8000.native.Connection]


@pytest.fixture
def service_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog for the service's Powertools logger, which does not propagate to
    the root logger (where caplog listens by default)."""
    logger = logging.getLogger("einvoice")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def superuser(stack: LocalStack, app_settings: Settings) -> Connect:
    """Opens a superuser connection to the application database (the attacker
    with full rights, for tampering tests)."""
    return lambda: stack.postgres.connect(app_settings.db_name)


@pytest.fixture(scope="session")
def as_owner(app_settings: Settings) -> Connect:
    """Opens a connection as the table owner (migrations' role): still bound by
    RLS (FORCE) and by the ledger's triggers."""
    return lambda: pg8000.native.Connection(
        user=app_settings.db_owner_user,
        password=app_settings.db_owner_password.get_secret_value(),
        host=app_settings.db_host, port=app_settings.db_port, database=app_settings.db_name)


@pytest.fixture(scope="session")
def as_app(app_settings: Settings) -> Connect:
    """Opens a raw connection as the application role (the app with a bug)."""
    return app_connector(app_settings)


def in_tenant(connect: Connect, tenant: uuid.UUID) -> pg8000.native.Connection:
    """A raw connection with an open transaction scoped to `tenant` (close it after)."""
    conn = connect()
    conn.run("BEGIN")
    conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))
    return conn


@pytest.fixture
def pa() -> Iterator[PaStandIn]:
    """A local plateforme agréée (devstack's stand-in) for one test, its client
    secret among the secrets no log line may hold."""
    stand_in = PaStandIn(client_secret=f"s3cr3t-for-the-pa-tests-{uuid.uuid4().hex[:8]}")
    remember(stand_in.client_secret)
    with stand_in:
        yield stand_in
