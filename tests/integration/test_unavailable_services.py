"""A service the API needs that is down, restarted or hung is a 503 with
Retry-After that says what cannot answer, soon: never a 500, never a hang.

Each fault is made for real: a PostgreSQL session terminated by the server
(what a restart does to every session), a port nobody listens on, and a
server that accepts connections and never answers (a listening socket that
never accepts: the kernel completes the handshake, nobody reads). The fault
suite (tests/faults/test_faults.py) makes the same faults under load.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import runtime
from chalicelib.adapters import aws
from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.postgres import Database, app_connector, connector
from chalicelib.config import Settings
from chalicelib.domain.errors import (
    ArchiveUnavailable,
    DatabaseUnavailable,
    QueueUnavailable,
)
from devstack.stack import free_port
from tests.builders import recent
from tests.conftest import Connect
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, get, issue, owner_with_key, post


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port whose server accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK clients' timeouts, shortened so a hung server costs this test ~2 s, not 15."""
    monkeypatch.setattr(aws, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(aws, "READ_TIMEOUT", 0.3)


def _terminate(superuser: Connect, db: Database) -> None:
    """What a restart (pg_ctl -m fast) does to this Database's session: the
    server ends it with FATAL 57P01."""
    with db.transaction(None) as conn:
        [[pid]] = conn.run("SELECT pg_backend_pid()")
    admin = superuser()
    try:
        admin.run("SELECT pg_terminate_backend(:p)", p=pid)
    finally:
        admin.close()


# ------------------------------------------------------------------ PostgreSQL

def test_a_session_the_server_ended_is_replaced_on_the_next_transaction(
        app_settings: Settings, superuser: Connect) -> None:
    db = Database(app_connector(app_settings))
    try:
        _terminate(superuser, db)
        with db.transaction(None) as conn:  # the stale connection: one fresh try
            assert conn.run("SELECT 1") == [[1]]
    finally:
        db.close()


def test_a_session_ended_inside_a_transaction_is_database_unavailable(
        app_settings: Settings, superuser: Connect) -> None:
    db = Database(app_connector(app_settings))
    try:
        with pytest.raises(DatabaseUnavailable, match="in a transaction"), \
                db.transaction(None) as conn:
            [[pid]] = conn.run("SELECT pg_backend_pid()")
            admin = superuser()
            admin.run("SELECT pg_terminate_backend(:p)", p=pid)
            admin.close()
            conn.run("SELECT 1")
        with db.transaction(None) as conn:  # the broken connection was dropped
            assert conn.run("SELECT 1") == [[1]]
    finally:
        db.close()


def test_a_database_nobody_answers_at_is_database_unavailable(app_settings: Settings) -> None:
    from dataclasses import replace

    down = replace(app_settings, db_port=free_port())
    db = Database(connector(down, down.db_app_user, down.db_app_password.get_secret_value()))
    with pytest.raises(DatabaseUnavailable, match="cannot connect"), db.transaction(None):
        pass


def test_a_statement_the_server_refuses_is_not_database_unavailable(
        database: Database) -> None:
    from pg8000.exceptions import DatabaseError

    # A bug of ours stays a bug (a 500), never a "retry later".
    with pytest.raises(DatabaseError), database.transaction(None) as conn:
        conn.run("SELECT * FROM no_such_table")


def test_the_api_answers_503_with_retry_after_while_the_database_is_down(
        client: Any, frozen: FrozenClock, app_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    _, key = owner_with_key(client, frozen, WRITE)
    down = replace(app_settings, db_port=free_port())
    dead = Database(connector(down, down.db_app_user, down.db_app_password.get_secret_value()))
    monkeypatch.setattr(runtime, "database", lambda: dead)
    answer = issue(client, key["secret"], recent(), key="while-down")
    assert answer.status_code == 503, answer.json_body
    assert answer.headers["Retry-After"] == str(DatabaseUnavailable.retry_after)
    assert answer.json_body["error"] == "DatabaseUnavailable"
    assert "same Idempotency-Key" in answer.json_body["detail"]
    monkeypatch.undo()  # the database is back: the same key issues the invoice, once
    assert issue(client, key["secret"], recent(), key="while-down").status_code == 201
    assert issue(client, key["secret"], recent(), key="while-down").status_code == 200


# ------------------------------------------------------------------ S3

def _archive(app_settings: Settings, port: int) -> ObjectLockArchive:
    from dataclasses import replace

    return ObjectLockArchive(aws.s3_client(replace(
        app_settings, s3_endpoint_url=f"http://127.0.0.1:{port}")), app_settings.archive_bucket)


def test_a_hung_archive_is_unavailable_soon_not_unsafe(
        app_settings: Settings, hung_port: int, quick_timeouts: None) -> None:
    archive = _archive(app_settings, hung_port)
    started = time.monotonic()
    with pytest.raises(ArchiveUnavailable, match="did not answer"):
        archive.check_ready()
    with pytest.raises(ArchiveUnavailable, match="did not answer"):
        archive.get("tenants/x/invoices/2026/F-000001.pdf", "v1", b"\0" * 32)
    assert time.monotonic() - started < 10  # 2 calls x 3 attempts x 0.3 s + backoff


def test_the_sdk_clients_answer_within_the_gateway_ceiling(app_settings: Settings) -> None:
    """Attempts x (connect + read timeout) under API Gateway's 29 s, for both clients."""
    for client in (aws.s3_client(app_settings), aws.sqs_client(app_settings)):
        config = client.meta.config
        attempts = config.retries.get("total_max_attempts") or config.retries["max_attempts"]
        worst = attempts * (config.connect_timeout + config.read_timeout)
        assert worst <= 24, worst  # 3 x (3 + 5) s


def test_issuing_while_the_archive_hangs_is_503_and_issues_nothing(
        client: Any, frozen: FrozenClock, app_settings: Settings, hung_port: int,
        quick_timeouts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    hung = _archive(app_settings, hung_port)
    monkeypatch.setattr(runtime, "invoice_archive", lambda: hung)
    answer = issue(client, key["secret"], recent(), key="archive-hung")
    assert answer.status_code == 503, answer.json_body
    assert answer.headers["Retry-After"] == str(ArchiveUnavailable.retry_after)
    assert answer.json_body["error"] == "ArchiveUnavailable"
    monkeypatch.undo()
    assert get(client, key["secret"], "/invoices").json_body["invoices"] == []  # nothing issued
    assert issue(client, key["secret"], recent(), key="archive-hung").status_code == 201


# ------------------------------------------------------------------ SQS

def test_a_hung_queue_is_unavailable(app_settings: Settings, hung_port: int,
                                     quick_timeouts: None) -> None:
    from dataclasses import replace

    sqs = aws.sqs_client(replace(app_settings, sqs_endpoint_url=f"http://127.0.0.1:{hung_port}"))
    with pytest.raises(QueueUnavailable, match="no answer"):
        aws.SqsQueue(sqs, app_settings.invoice_queue)


def test_a_batch_while_the_queue_is_down_is_503_with_retry_after(
        client: Any, frozen: FrozenClock, app_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    _, key = owner_with_key(client, frozen, WRITE)
    down = replace(app_settings, sqs_endpoint_url=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(runtime, "invoice_queue",
                        lambda: aws.SqsQueue(aws.sqs_client(down), down.invoice_queue))
    answer = post(client, "/invoice-batches",
                  {"invoices": [{"idempotency_key": "batch-down-1", "invoice": recent()}]},
                  Authorization=f"Bearer {key['secret']}")
    assert answer.status_code == 503, answer.json_body
    assert answer.headers["Retry-After"] == str(QueueUnavailable.retry_after)
    assert answer.json_body["error"] == "QueueUnavailable"
