"""Metrics where each event happens, flushed as CloudWatch EMF on stdout.

The EMF lines are read from what the process printed (the same on AWS, where
CloudWatch Logs turns them into metrics, and on Scaleway, where they are log
lines): namespace and service "einvoice", each metric a Count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib import metrics
from chalicelib.adapters.anchoring import OpenTimestampsCalendar
from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.adapters.postgres import Database, anchor_stores
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import Settings, settings
from chalicelib.domain.closing import Period
from chalicelib.domain.errors import ArchiveNotSafe
from chalicelib.ports import SystemClock, WitnessVersion
from chalicelib.usecases.anchor import AnchorPorts, anchor_closing
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.invoicing import InvoicePorts
from chalicelib.usecases.issue_invoice import issue_invoice
from chalicelib.usecases.seal_period import ClosingPorts, seal_period
from chalicelib.usecases.witness import check_witness
from devstack.anchor_standins import dead_endpoint
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, ScalewayClient, get, issue, owner_with_key

Printed = Callable[[], dict[str, list[float]]]


@pytest.fixture
def emf(capsys: pytest.CaptureFixture[str]) -> Iterator[Printed]:
    """The metrics printed since the last call, by name (values in order);
    every EMF line is checked for the namespace, service and unit."""
    metrics.flush()  # what an earlier test counted without an invocation around it
    capsys.readouterr()

    def printed() -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for line in capsys.readouterr().out.splitlines():
            try:
                blob = json.loads(line)
            except ValueError:
                continue
            if not isinstance(blob, dict) or "_aws" not in blob:
                continue
            [directive] = blob["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "einvoice"
            assert directive["Dimensions"] == [["service"]] and blob["service"] == "einvoice"
            for declared in directive["Metrics"]:
                assert declared["Unit"] == "Count" and declared["Name"] in metrics.NAMES
                value = blob[declared["Name"]]
                found.setdefault(declared["Name"], []).extend(
                    value if isinstance(value, list) else [value])
        return found

    yield printed


class PutsFail(ObjectLockArchive):
    """The real archive, whose puts fail (the object store went away)."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the object store did not answer")


class Unsafe(ObjectLockArchive):
    def check_ready(self) -> None:
        raise ArchiveNotSafe("no COMPLIANCE default retention")


def with_archive(ports: InvoicePorts, archive: Any) -> InvoicePorts:
    return InvoicePorts(ports.unit_of_work, ports.documents, archive, ports.clock)


def test_issuing_counts_each_new_invoice_and_each_archive_failure(
        ports: InvoicePorts, tenant: uuid.UUID, app_settings: Settings, emf: Printed) -> None:
    s3 = s3_client(app_settings)
    issued = issue_invoice(tenant, "m-1", recent(), with_archive(
        ports, PutsFail(s3, app_settings.archive_bucket)))
    assert issued.created and not issued.archived
    metrics.flush()
    assert emf() == {"InvoicesIssued": [1.0], "ArchiveFailures": [1.0]}

    again = issue_invoice(tenant, "m-1", recent(), ports)  # the retry archives it
    assert again.archived and not again.created
    metrics.flush()
    assert emf() == {}  # a retry is not a second invoice, and archiving worked

    with pytest.raises(ArchiveNotSafe):
        issue_invoice(tenant, "m-2", recent(), with_archive(
            ports, Unsafe(s3, app_settings.archive_bucket)))
    metrics.flush()
    assert emf() == {"ArchiveFailures": [1.0]}


def test_an_http_invocation_flushes_its_metrics_as_it_ends(
        client: Any, frozen: FrozenClock, emf: Printed) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    emf()
    answer = issue(client, key["secret"], recent(), key="http-metrics")
    assert answer.status_code == 201, answer.json_body
    assert emf() == {"InvoicesIssued": [1.0]}  # printed by the invocation, no flush here


def test_a_rate_limit_refusal_on_scaleway_is_the_same_emf_line(
        stack: Any, database: Database, monkeypatch: pytest.MonkeyPatch,
        emf: Printed) -> None:
    from tests.integration.web import within_one_minute_window

    monkeypatch.setenv("EINVOICE_LOGIN_PER_ACCOUNT_PER_MINUTE", "1")
    settings.cache_clear()
    try:
        scaleway = ScalewayClient()
        within_one_minute_window(database)
        body = json.dumps({"email": f"nobody.{uuid.uuid4().hex[:8]}@example.fr",
                           "password": "not the password"})
        codes = [scaleway.post("/login", headers={"Content-Type": "application/json"},
                               body=body).status_code for _ in range(3)]
    finally:
        monkeypatch.undo()
        settings.cache_clear()
    assert codes == [401, 429, 429]
    assert emf() == {"RateLimitRefusals": [1.0, 1.0]}  # one line per invocation


class Garbled:
    """A witness archive whose newest witness is not one we signed."""

    def history(self, prefix: str) -> list[WitnessVersion]:
        return [WitnessVersion(f"{prefix}0000000000000001-head.json", "v1",
                               b'{"not": "a witness"}')]


def test_a_witness_the_chain_contradicts_is_an_alarm(database: Database, tenant: uuid.UUID,
                                                     emf: Printed) -> None:
    found = check_witness(tenant, database.snapshot, Garbled(), {})  # type: ignore[arg-type]
    assert not found["ok"] and found["reason"] == "witness_invalid"
    metrics.flush()
    assert emf() == {"WitnessAlarms": [1.0]}


def test_a_failed_anchoring_attempt_is_counted(database: Database, tenant: uuid.UUID,
                                               tmp_path: Path, emf: Printed) -> None:
    key = tmp_path / "closing-key.pem"
    LocalSigningKey.create(key)
    day = datetime(2026, 11, 20, 10, tzinfo=UTC)
    append_ledger(AppendRequest(tenant_id=tenant, kind="customer.noted", payload={"n": 1}),
                  database.unit_of_work, FrozenClock(day))
    closing = seal_period(tenant, Period.parse("day", "2026-11-20"), ClosingPorts(
        database.unit_of_work, LocalSigningKey(key),
        FrozenClock(datetime(2026, 11, 21, 10, tzinfo=UTC)))).closing
    dead = dead_endpoint()
    ports = AnchorPorts(store=anchor_stores(database), clock=SystemClock(),
                        calendars=[OpenTimestampsCalendar(dead, timeout=2, trusted=(dead,))],
                        tsa=None)
    emf()
    [anchor] = anchor_closing(tenant, closing.closing_id, ports)
    assert anchor.status == "pending" and anchor.last_error
    metrics.flush()
    assert emf() == {"AnchoringFailures": [1.0]}


def test_a_metric_that_cannot_be_counted_or_printed_never_fails_the_work(
        client: Any, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch,
        emf: Printed) -> None:
    from aws_lambda_powertools.metrics import Metrics

    _, key = owner_with_key(client, frozen, WRITE)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("metrics are down")

    monkeypatch.setattr(Metrics, "add_metric", broken)
    assert issue(client, key["secret"], recent(), key="no-metrics").status_code == 201
    monkeypatch.undo()
    monkeypatch.setattr(Metrics, "flush_metrics", broken)
    assert issue(client, key["secret"], recent(), key="no-flush").status_code == 201
    monkeypatch.undo()
    assert emf() == {}
    metrics.flush()
    assert emf() == {}  # the set that could not print was dropped, not carried over


def test_a_missing_archived_version_is_a_named_503_an_alert_and_a_metric(
        client: Any, frozen: FrozenClock, app_settings: Settings, superuser: Any,
        service_logs: pytest.LogCaptureFixture, emf: Printed) -> None:
    """The receipt names a version the archive does not hold: the PDF's is a
    delete marker's id (what a DeleteObject without a version leaves), the
    XML's an id the server never gave. Neither is a 500."""
    import json as json_module

    _, key = owner_with_key(client, frozen, WRITE)
    issued = issue(client, key["secret"], recent(), key="archive-missing").json_body
    receipt = issued["archive"]
    objects = {o["kind"]: o for o in receipt["objects"]}
    s3 = s3_client(app_settings)
    marker = s3.delete_object(Bucket=app_settings.archive_bucket, Key=objects["pdf"]["key"])
    objects["pdf"]["version_id"] = marker["VersionId"]
    objects["xml"]["version_id"] = "no-such-version-0001"
    conn = superuser()
    try:  # the attacker (or an accident) behind the app's back
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE invoices SET archive = :a WHERE id = :i",
                 a=json_module.dumps(receipt), i=issued["id"])
    finally:
        conn.close()
    emf()
    for kind in ("pdf", "xml"):
        answer = get(client, key["secret"], f"/invoices/{issued['id']}/{kind}")
        assert answer.status_code == 503, (kind, answer.body)
        assert answer.json_body == {"error": "ArchiveMissing", "detail": (
            "the archived document cannot be read from the archive: it is not served from "
            "anywhere else, and the operator is alerted; retry later")}
        assert answer.headers["Retry-After"] == "300"
        assert emf() == {"ArchiveMissing": [1.0]}, kind
        [alert] = [r for r in service_logs.records
                   if r.getMessage() == "archive version missing"]
        assert alert.levelname == "ERROR"
        assert (alert.__dict__["invoice_id"], alert.__dict__["kind"],
                alert.__dict__["version_id"]) == (issued["id"], kind,
                                                  objects[kind]["version_id"])
        service_logs.clear()
