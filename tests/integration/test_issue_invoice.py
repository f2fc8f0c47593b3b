"""Issue invoice end to end on the real parts: PostgreSQL, the Factur-X
libraries, the schematron worker and the moto S3 server over HTTP.

A crash is injected after each step; the retry of the same request must
complete the work with no duplicate number, no gap and no orphan object.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.adapters.postgres import Database, invoices_awaiting_archive
from chalicelib.config import Settings
from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    Conflict,
    InvalidInput,
    NotFound,
)
from chalicelib.ports import InvoiceDocuments
from chalicelib.usecases.archive_invoice import (
    archive_invoice,
    archive_pending,
    archived_document,
    retain_until,
)
from chalicelib.usecases.invoicing import InvoicePorts
from chalicelib.usecases.issue_invoice import issue_credit_note, issue_invoice
from tests.builders import Crash, consumer, crash_at, line, recent
from tests.conftest import Connect

STEPS = ["validated", "archive_checked", "numbered", "xml_built", "pdf_rendered", "embedded",
         "checked", "ledger_appended", "stored", "committed", "archived_pdf", "archived_xml",
         "recorded"]


def state(superuser: Connect, tenant: uuid.UUID) -> dict[str, Any]:
    """Everything issuing leaves behind for one tenant, as a superuser sees it."""
    conn = superuser()
    try:
        t = str(tenant)
        return {
            "numbers": [r[0] for r in conn.run(
                "SELECT invoice_number FROM invoices WHERE tenant_id = :t ORDER BY number",
                t=t)],
            "archived": [r[0] for r in conn.run(
                "SELECT archive IS NOT NULL FROM invoices WHERE tenant_id = :t ORDER BY number",
                t=t)],
            "kinds": [r[0] for r in conn.run(
                "SELECT kind FROM ledger_entries WHERE tenant_id = :t ORDER BY seq", t=t)],
            "staged": conn.run("SELECT count(*) FROM invoice_documents WHERE tenant_id = :t",
                               t=t)[0][0],
        }
    finally:
        conn.close()


def versions(app_settings: Settings, tenant: uuid.UUID) -> dict[str, int]:
    s3 = s3_client(app_settings)
    listing = s3.list_object_versions(Bucket=app_settings.archive_bucket,
                                      Prefix=f"tenants/{tenant}/")
    found: dict[str, int] = {}
    for version in listing.get("Versions", []):
        found[version["Key"]] = found.get(version["Key"], 0) + 1
    return found


def test_an_invoice_is_numbered_chained_and_archived(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect,
        app_settings: Settings) -> None:
    issued = issue_invoice(tenant, "order-1", recent(), ports)

    assert issued.created and issued.archived
    invoice_row = issued.invoice
    assert invoice_row.invoice_number == "F-000001" and invoice_row.type_code == "380"
    assert state(superuser, tenant) == {"numbers": ["F-000001"], "archived": [True],
                                        "kinds": ["invoice.issued", "invoice.archived"],
                                        "staged": 0}
    _, pdf = archived_document(tenant, invoice_row.invoice_id, "pdf", ports)
    _, xml = archived_document(tenant, invoice_row.invoice_id, "xml", ports)
    assert hashlib.sha256(pdf).digest() == invoice_row.pdf_sha256
    assert hashlib.sha256(xml).digest() == invoice_row.xml_sha256
    assert pdf.startswith(b"%PDF-") and b"F-000001" in xml

    s3 = s3_client(app_settings)
    receipt = invoice_row.archive.as_dict() if invoice_row.archive else {}
    assert [o["kind"] for o in receipt["objects"]] == ["pdf", "xml"]
    for stored in receipt["objects"]:
        assert stored["key"] == f"tenants/{tenant}/invoices/2026/F-000001.{stored['kind']}"
        head = s3.head_object(Bucket=app_settings.archive_bucket, Key=stored["key"],
                              VersionId=stored["version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] >= retain_until(date(2026, 11, 20))
        with pytest.raises(s3.exceptions.ClientError):
            s3.delete_object(Bucket=app_settings.archive_bucket, Key=stored["key"],
                             VersionId=stored["version_id"])

    conn = superuser()
    try:
        [[payload]] = conn.run("SELECT payload FROM ledger_entries WHERE tenant_id = :t "
                               "AND kind = 'invoice.issued'", t=str(tenant))
    finally:
        conn.close()
    data = json.loads(payload)["data"]
    assert data["invoice_number"] == "F-000001"
    assert data["pdf_sha256"] == invoice_row.pdf_sha256.hex()
    assert data["xml_sha256"] == invoice_row.xml_sha256.hex()
    assert data["totals"]["amount_due"] == "120.00"


def test_same_key_same_body_is_the_same_invoice_and_another_body_a_conflict(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    first = issue_invoice(tenant, "k", recent(), ports)
    again = issue_invoice(tenant, "k", recent(), ports)
    assert not again.created and again.invoice == first.invoice
    with pytest.raises(Conflict) as refused:
        issue_invoice(tenant, "k", recent(payment_terms="Autre chose"), ports)
    assert refused.value.violations[0].field == "Idempotency-Key"
    assert state(superuser, tenant)["numbers"] == ["F-000001"]


@pytest.mark.parametrize("key", [None, "", "a b", "é", "x" * 201])
def test_a_missing_or_malformed_idempotency_key_is_refused(
        ports: InvoicePorts, tenant: uuid.UUID, key: str | None) -> None:
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, key, recent(), ports)
    assert refused.value.violations[0].field == "Idempotency-Key"


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_any_step_then_a_retry_leaves_one_invoice_no_gap_no_orphan(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect, app_settings: Settings,
        step: str) -> None:
    with pytest.raises(Crash):
        issue_invoice(tenant, "retry-me", recent(), ports, crash_at(step))
    retried = issue_invoice(tenant, "retry-me", recent(), ports)
    following = issue_invoice(tenant, "next", recent(), ports)

    assert retried.archived and retried.invoice.invoice_number == "F-000001"
    assert following.invoice.invoice_number == "F-000002"
    assert state(superuser, tenant) == {
        "numbers": ["F-000001", "F-000002"], "archived": [True, True],
        "kinds": ["invoice.issued", "invoice.archived"] * 2, "staged": 0}
    # One version per key: the retry reused what the crashed run had put.
    assert set(versions(app_settings, tenant).values()) == {1}
    assert len(versions(app_settings, tenant)) == 4


def test_the_sweep_archives_what_a_crash_left_and_nobody_retried(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect, database: Database,
        app_settings: Settings) -> None:
    from datetime import timedelta

    with pytest.raises(Crash):
        issue_invoice(tenant, "abandoned", recent(), ports, crash_at("archived_pdf"))
    assert state(superuser, tenant)["archived"] == [False]
    # Not listed while it may still be in the hands of its own request.
    assert all(p[0] != tenant for p in invoices_awaiting_archive(database, timedelta(0)))
    age(superuser, tenant, minutes=6)
    pending = [p for p in invoices_awaiting_archive(database, timedelta(0))
               if p[0] == tenant]
    assert len(pending) == 1
    assert all(p[0] != tenant for p in invoices_awaiting_archive(database, timedelta(hours=1)))

    assert archive_pending(pending, ports) == {"archived": 1, "failed": 0}
    assert state(superuser, tenant)["archived"] == [True]
    assert state(superuser, tenant)["staged"] == 0
    assert list(versions(app_settings, tenant).values()) == [1, 1]
    # Running it again changes nothing.
    assert archive_invoice(tenant, pending[0][1], ports).archive is not None
    assert state(superuser, tenant)["kinds"] == ["invoice.issued", "invoice.archived"]


def age(superuser: Connect, tenant: uuid.UUID, minutes: int) -> None:
    """Move the tenant's issue times back (a superuser, triggers off)."""
    conn = superuser()
    try:
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE invoices SET issued_at = issued_at - make_interval(mins => :m) "
                 "WHERE tenant_id = :t", m=minutes, t=str(tenant))
    finally:
        conn.close()


def test_concurrent_retries_with_one_key_make_one_invoice(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    answers: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def retry() -> None:
        start.wait()
        try:
            answers.append(issue_invoice(tenant, "same", recent(), ports))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {a.invoice.invoice_id for a in answers} == {answers[0].invoice.invoice_id}
    assert sum(a.created for a in answers) == 1
    assert state(superuser, tenant)["numbers"] == ["F-000001"]



def test_an_archiver_and_a_late_retry_holding_the_chain_head_do_not_deadlock(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    """The retry passed the idempotency lookup before the first request
    committed, so it numbers, takes the chain's head, then meets the key. If
    the archiver wrote the invoice row's new version before waiting for that
    head, the retry's key check would wait on the archiver: a deadlock. Every
    writer takes the head first, so the retry gets its conflict at once."""
    events = {name: threading.Event() for name in
              ("b_looked_up", "b_holds_head", "a_puts_done")}
    outcomes: dict[str, Any] = {}

    def first(step: str) -> None:
        if step == "numbered":  # holding the series' number: B looks up, then queues
            assert events["b_looked_up"].wait(10)
        if step == "committed":
            assert events["b_holds_head"].wait(10)
        if step == "archived_xml":
            events["a_puts_done"].set()

    def retry(step: str) -> None:
        if step == "validated":
            events["b_looked_up"].set()
        if step == "ledger_appended":
            events["b_holds_head"].set()
            assert events["a_puts_done"].wait(10)
            time.sleep(0.5)  # the archiver reaches its wait for the head meanwhile

    def run(name: str, checkpoint: Callable[[str], None]) -> None:
        try:
            outcomes[name] = issue_invoice(tenant, "late-retry", recent(), ports, checkpoint)
        except BaseException as exc:  # reported by the assertions below
            outcomes[name] = exc

    a = threading.Thread(target=run, args=("a", first))
    a.start()
    time.sleep(0.2)  # A takes the series' number first
    b = threading.Thread(target=run, args=("b", retry))
    b.start()
    a.join(30)
    b.join(30)
    assert not isinstance(outcomes["a"], BaseException), outcomes["a"]
    assert not isinstance(outcomes["b"], BaseException), outcomes["b"]
    assert outcomes["a"].created and not outcomes["b"].created
    assert outcomes["a"].archived  # the archiver was not a deadlock's victim either
    assert outcomes["a"].invoice.invoice_id == outcomes["b"].invoice.invoice_id
    assert state(superuser, tenant) == {"numbers": ["F-000001"], "archived": [True],
                                        "kinds": ["invoice.issued", "invoice.archived"],
                                        "staged": 0}



class SlowCheckFailingPdf:
    """The real documents port, but the check takes a second and the PDF fails."""

    def __init__(self, real: InvoiceDocuments) -> None:
        self._real = real
        self.check_ended: float | None = None

    def problems(self, xml: bytes) -> Any:
        time.sleep(1.0)
        found = self._real.problems(xml)
        self.check_ended = time.monotonic()
        return found

    def pdf(self, *args: Any) -> bytes:
        time.sleep(0.2)  # the check has started meanwhile (else it would just be cancelled)
        raise RuntimeError("renderer failed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_the_background_check_ends_inside_its_transaction(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    """The checks run while the PDF renders; when rendering fails, the call
    still waits for them: nothing outlives the rolled-back transaction."""
    documents = SlowCheckFailingPdf(ports.documents)
    failing = InvoicePorts(ports.unit_of_work, documents, ports.archive, ports.clock)
    with pytest.raises(RuntimeError, match="renderer failed"):
        issue_invoice(tenant, "check-outlives", recent(), failing)
    assert documents.check_ended is not None and documents.check_ended <= time.monotonic()
    assert state(superuser, tenant)["numbers"] == []


def test_an_archive_that_cannot_keep_11_years_gets_no_invoice(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect,
        app_settings: Settings) -> None:
    s3 = s3_client(app_settings)
    bucket = f"governance-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": app_settings.s3_region})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 11}}})
    unsafe = InvoicePorts(ports.unit_of_work, ports.documents,
                          ObjectLockArchive(s3, bucket), ports.clock)
    with pytest.raises(ArchiveNotSafe):
        issue_invoice(tenant, "unsafe", recent(), unsafe)
    assert state(superuser, tenant) == {"numbers": [], "archived": [], "kinds": [],
                                        "staged": 0}
    assert s3.list_object_versions(Bucket=bucket).get("Versions", []) == []


class BrokenXml:
    """Documents whose XML breaks EN 16931 (BR-CO-15: the gross total)."""

    def __init__(self, real: InvoiceDocuments) -> None:
        self._real = real

    def xml(self, draft: Any, number: str, totals: Any) -> bytes:
        good = self._real.xml(draft, number, totals)
        total = f"<ram:GrandTotalAmount>{totals.tax_inclusive_amount}</ram:GrandTotalAmount>"
        assert total.encode() in good
        return good.replace(total.encode(), total.replace(
            str(totals.tax_inclusive_amount), str(totals.tax_inclusive_amount + 1)).encode())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_documents_failing_the_schematron_issue_nothing_and_use_no_number(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    broken = InvoicePorts(ports.unit_of_work, BrokenXml(ports.documents), ports.archive,
                          ports.clock)
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, "broken", recent(), broken)
    assert any("BR-CO-15" in v.rule for v in refused.value.violations), refused.value
    assert state(superuser, tenant)["numbers"] == []
    assert issue_invoice(tenant, "fine", recent(), ports).invoice.invoice_number == "F-000001"


def test_an_issue_date_in_the_future_is_refused(ports: InvoicePorts, tenant: uuid.UUID) -> None:
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, "future", recent(issue_date="2026-11-24",
                                                due_date="2026-12-24"), ports)
    assert [v.field for v in refused.value.violations] == ["issue_date"]


def test_every_violation_is_listed_and_nothing_is_written(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    bad = recent(lines=[line(rate="19.6"), line(quantity="abc")], due_date="2026-01-01")
    del bad["buyer"]["siren"]
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, "bad", bad, ports)
    fields = {v.field for v in refused.value.violations}
    assert {"lines.0.vat_rate", "lines.1.quantity"} <= fields
    assert state(superuser, tenant)["numbers"] == []


def test_b2c_invoice_and_series_are_numbered_apart(
        ports: InvoicePorts, tenant: uuid.UUID) -> None:
    first = issue_invoice(tenant, "b2c", consumer(issue_date="2026-11-20",
                                                  due_date="2026-11-20"), ports)
    other = issue_invoice(tenant, "other-series", recent(series="AB"), ports)
    assert first.invoice.invoice_number == "F-000001"
    assert other.invoice.invoice_number == "AB-000001"



def test_a_credit_note_does_not_wait_for_the_credited_invoice_s_archiver(
        ports: InvoicePorts, tenant: uuid.UUID) -> None:
    """The archiver locks the invoice row FOR NO KEY UPDATE: a credit note's
    foreign key to it (KEY SHARE) goes through while the puts are under way."""
    with pytest.raises(Crash):  # issued, left for an archiver
        issue_invoice(tenant, "to-credit", recent(), ports, crash_at("committed"))
    with ports.unit_of_work(tenant) as uow:
        original = uow.invoices.by_idempotency_key("to-credit")
    assert original is not None
    puts_done, release = threading.Event(), threading.Event()

    def paused(step: str) -> None:
        if step == "archived_xml":  # the row is locked, the chain's head not yet taken
            puts_done.set()
            assert release.wait(30)

    archiver = threading.Thread(target=archive_invoice,
                                args=(tenant, original.invoice_id, ports, paused))
    archiver.start()
    try:
        assert puts_done.wait(30)
        credited: list[Any] = []
        crediting = threading.Thread(target=lambda: credited.append(issue_credit_note(
            tenant, original.invoice_id, "cn-while-archiving", recent(), ports)))
        crediting.start()
        crediting.join(15)
        assert not crediting.is_alive(), "the credit note waited for the archiver's row lock"
        assert credited[0].created and \
            credited[0].invoice.credited_invoice_id == original.invoice_id
    finally:
        release.set()
        archiver.join(30)
    with ports.unit_of_work(tenant) as uow:
        archived = uow.invoices.get(original.invoice_id)
    assert archived is not None and archived.archive is not None


def test_a_credit_note_references_the_invoice_which_never_changes(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    original = issue_invoice(tenant, "inv", recent(), ports).invoice
    credit = issue_credit_note(tenant, original.invoice_id, "cn", recent(), ports).invoice
    assert credit.type_code == "381" and credit.credited_invoice_id == original.invoice_id
    assert credit.invoice_number == "F-000002"
    _, xml = archived_document(tenant, credit.invoice_id, "xml", ports)
    assert b"<ram:TypeCode>381</ram:TypeCode>" in xml and b"F-000001" in xml
    assert state(superuser, tenant)["kinds"] == [
        "invoice.issued", "invoice.archived", "credit_note.issued", "invoice.archived"]

    with pytest.raises(Conflict):  # a credit note is not credited
        issue_credit_note(tenant, credit.invoice_id, "cn2", recent(), ports)
    with pytest.raises(InvalidInput) as given:
        issue_credit_note(tenant, original.invoice_id, "cn3",
                          recent(type_code=381, preceding_invoice={"number": "X-1"}), ports)
    assert [v.field for v in given.value.violations] == ["type_code", "preceding_invoice"]
    with pytest.raises(InvalidInput) as other_buyer:
        issue_credit_note(tenant, original.invoice_id, "cn4",
                          recent(buyer={**recent()["buyer"], "name": "Someone Else"}), ports)
    assert [v.field for v in other_buyer.value.violations] == ["buyer"]
    with pytest.raises(InvalidInput) as via_invoices:
        issue_invoice(tenant, "cn5", recent(type_code=381), ports)
    assert [v.field for v in via_invoices.value.violations] == ["type_code"]


def test_another_tenants_invoice_cannot_be_credited_or_read(
        ports: InvoicePorts, tenant: uuid.UUID, database: Database) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    victim = create_tenant("Victim", database.unit_of_work)
    theirs = issue_invoice(victim, "v", recent(), ports).invoice
    with pytest.raises(NotFound):
        issue_credit_note(tenant, theirs.invoice_id, "steal", recent(), ports)
    with pytest.raises(NotFound):
        archived_document(tenant, theirs.invoice_id, "pdf", ports)
    # The victim's key is theirs alone: the same key in another tenant is a new invoice.
    mine = issue_invoice(tenant, "v", recent(), ports)
    assert mine.created and mine.invoice.invoice_id != theirs.invoice_id


def test_a_tampered_archive_is_detected_when_read(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect,
        app_settings: Settings) -> None:
    issued = issue_invoice(tenant, "t", recent(), ports).invoice
    receipt = issued.archive.as_dict() if issued.archive else {}
    pdf = receipt["objects"][0]
    # The attacker cannot change the locked version, so adds another version
    # under the key and points the receipt at it (a superuser, triggers off).
    forged = s3_client(app_settings).put_object(
        Bucket=app_settings.archive_bucket, Key=pdf["key"], Body=b"%PDF-1.7 forged",
        ChecksumAlgorithm="SHA256")
    pdf["version_id"] = forged["VersionId"]
    conn = superuser()
    try:
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE invoices SET archive = :a WHERE tenant_id = :t AND id = :i",
                 a=json.dumps(receipt), t=str(tenant), i=str(issued.invoice_id))
    finally:
        conn.close()
    with pytest.raises(ArchiveTampered):
        archived_document(tenant, issued.invoice_id, "pdf", ports)


def test_retain_until_is_issue_date_plus_11_years_never_less() -> None:
    assert retain_until(date(2026, 11, 20)) >= datetime(2037, 11, 21, tzinfo=UTC)
    assert retain_until(date(2028, 2, 29)) >= datetime(2039, 3, 2, tzinfo=UTC)
    assert retain_until(date(2026, 11, 20)).tzinfo is not None



# ---------------------------------------------------------------- review findings

class LosesS3AfterNumbering(ObjectLockArchive):
    """The real archive, whose S3 becomes unreachable once the number is given."""

    def __init__(self, s3: Any, bucket: str) -> None:
        super().__init__(s3, bucket)
        self.checks = 0

    def check_ready(self) -> None:
        self.checks += 1
        if self.checks == 2:
            import boto3
            from botocore.config import Config

            self._s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9",
                                    region_name="fr-par", aws_access_key_id="x",
                                    aws_secret_access_key="y",
                                    config=Config(retries={"max_attempts": 1},
                                                  connect_timeout=1))
        super().check_ready()


def test_an_archive_failure_after_issuing_leaves_the_invoice_issued_and_pending(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect, database: Database,
        app_settings: Settings) -> None:
    flaky = InvoicePorts(ports.unit_of_work, ports.documents,
                         LosesS3AfterNumbering(s3_client(app_settings),
                                               app_settings.archive_bucket), ports.clock)
    issued = issue_invoice(tenant, "blip", recent(), flaky)
    assert issued.created and not issued.archived  # 201, archive pending: never "nothing issued"
    assert state(superuser, tenant)["kinds"] == ["invoice.issued"]
    again = issue_invoice(tenant, "blip", recent(), ports)  # the retry finishes the archive
    assert again.invoice.invoice_id == issued.invoice.invoice_id and again.archived


def test_two_archivers_at_once_put_one_version(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect,
        app_settings: Settings) -> None:
    with pytest.raises(Crash):
        issue_invoice(tenant, "race", recent(), ports, crash_at("committed"))
    [invoice_id] = [i for i in (_only_invoice(superuser, tenant),)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            archive_invoice(tenant, invoice_id, ports)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert state(superuser, tenant)["kinds"] == ["invoice.issued", "invoice.archived"]
    assert list(versions(app_settings, tenant).values()) == [1, 1]


def _only_invoice(superuser: Connect, tenant: uuid.UUID) -> uuid.UUID:
    conn = superuser()
    try:
        [[invoice_id]] = conn.run("SELECT id FROM invoices WHERE tenant_id = :t", t=str(tenant))
    finally:
        conn.close()
    return uuid.UUID(str(invoice_id))


def test_the_sweep_goes_on_past_an_invoice_it_cannot_archive(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect, database: Database,
        app_settings: Settings) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    other = create_tenant("Other", database.unit_of_work)
    for who in (tenant, other):
        with pytest.raises(Crash):
            issue_invoice(who, "stuck", recent(), ports, crash_at("committed"))
        age(superuser, who, minutes=6)
    # Someone else's bytes already sit under the first tenant's key.
    s3_client(app_settings).put_object(
        Bucket=app_settings.archive_bucket, Key=f"tenants/{tenant}/invoices/2026/F-000001.pdf",
        Body=b"other bytes", ChecksumAlgorithm="SHA256")
    from datetime import timedelta

    pending = [p for p in invoices_awaiting_archive(database, timedelta(0))
               if p[0] in (tenant, other)]
    assert archive_pending(pending, ports) == {"archived": 1, "failed": 1}
    assert state(superuser, other)["archived"] == [True]
    assert state(superuser, tenant)["archived"] == [False]


def test_an_invoice_dated_before_the_previous_number_is_a_422(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect) -> None:
    issue_invoice(tenant, "first", recent(), ports)
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, "earlier", recent(issue_date="2026-11-19"), ports)
    assert [v.field for v in refused.value.violations] == ["issue_date"]
    assert state(superuser, tenant)["numbers"] == ["F-000001"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"issue_date": "2026-10-22", "due_date": "2026-11-22"}, "issue_date"),  # 32 days back
    ({"issue_date": "2012-01-10", "due_date": "2012-02-10"}, "issue_date"),  # lock already over
    ({"buyer": {**recent()["buyer"], "name": "株式会社 Client"}}, "buyer.name"),
    ({"lines": [line(description="x\n" * 12)]}, "lines.0.description"),
])
def test_drafts_the_pdf_or_the_archive_cannot_honour_are_refused_before_numbering(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect, fields: dict[str, Any],
        field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        issue_invoice(tenant, "refused", recent(**fields), ports)
    assert [v.field for v in refused.value.violations] == [field]
    assert state(superuser, tenant)["numbers"] == []


def test_the_same_invoice_in_other_decimal_text_is_the_same_request(
        ports: InvoicePorts, tenant: uuid.UUID) -> None:
    from decimal import Decimal

    first = issue_invoice(tenant, "fp", recent(lines=[line(unit_price=Decimal("50.5"))]), ports)
    again = issue_invoice(tenant, "fp", recent(lines=[line(unit_price="50.50")]), ports)
    assert again.invoice.invoice_id == first.invoice.invoice_id and not again.created


def test_reads_are_checked_against_the_ledger_not_the_invoice_row(
        ports: InvoicePorts, tenant: uuid.UUID, superuser: Connect,
        app_settings: Settings) -> None:
    issued = issue_invoice(tenant, "t2", recent(), ports).invoice
    receipt = issued.archive.as_dict() if issued.archive else {}
    forged_pdf = b"%PDF-1.7 forged"
    forged = s3_client(app_settings).put_object(
        Bucket=app_settings.archive_bucket, Key=receipt["objects"][0]["key"], Body=forged_pdf,
        ChecksumAlgorithm="SHA256")
    receipt["objects"][0].update(version_id=forged["VersionId"],
                                 sha256=hashlib.sha256(forged_pdf).hexdigest())
    conn = superuser()
    try:
        conn.run("SET session_replication_role = replica")
        conn.run("UPDATE invoices SET archive = :a, pdf_sha256 = :h WHERE tenant_id = :t "
                 "AND id = :i", a=json.dumps(receipt), h=hashlib.sha256(forged_pdf).digest(),
                 t=str(tenant), i=str(issued.invoice_id))
    finally:
        conn.close()
    with pytest.raises(ArchiveTampered):
        archived_document(tenant, issued.invoice_id, "pdf", ports)
