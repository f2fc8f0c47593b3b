"""Quotes (devis) on the real stack: made, read and converted over HTTP, kept
out of the invoice series, converted once (a crash in between recovered by the
retry), frozen by the engine against the app role and the table owner, and
recorded in the tenant's ledger (`quote.created`, `quote.converted`) in the
transaction of the row they describe, once, without personal data."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pg8000.native
import pytest
import rfc8785
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.adapters.documents import FacturXDocuments
from chalicelib.adapters.postgres import Database, PostgresQuotes, sqlstate
from chalicelib.config import Settings
from chalicelib.domain.errors import Conflict, InvalidInput
from chalicelib.ports import StoredQuote
from chalicelib.usecases.invoicing import InvoicePorts
from chalicelib.usecases.issue_invoice import issue_credit_note, issue_invoice
from chalicelib.usecases.quotes import (
    QuotePorts,
    convert_quote,
    create_quote,
    get_quote,
    invoice_key,
)
from chalicelib.usecases.verify_ledger import verify_ledger
from tests.builders import IBAN, address, crash_at, line, quote_draft, quote_request, recent
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock
from tests.integration.web import Session, get, issue, login, member_of, owner_with_key

WRITE = ["invoices:write", "invoices:read"]
DUE = {"due_date": "2026-12-23"}


@pytest.fixture
def writer(client: Any, frozen: FrozenClock) -> tuple[Session, str]:
    owner, key = owner_with_key(client, frozen, WRITE)
    return owner, key["secret"]


@pytest.fixture(scope="module")
def documents() -> FacturXDocuments:
    return FacturXDocuments()


@pytest.fixture
def ports(database: Database, app_settings: Settings, documents: FacturXDocuments,
          clock: FrozenClock) -> InvoicePorts:
    archive = ObjectLockArchive(s3_client(app_settings), app_settings.archive_bucket)
    return InvoicePorts(database.unit_of_work, documents, archive, clock)


@pytest.fixture
def quote_ports(ports: InvoicePorts) -> QuotePorts:
    return QuotePorts(ports.unit_of_work, ports.documents, ports.clock)


def invoice_numbers(superuser: Connect, tenant: uuid.UUID | str) -> list[str]:
    conn = superuser()
    try:
        return [r[0] for r in conn.run("SELECT invoice_number FROM invoices WHERE tenant_id = :t "
                                       "ORDER BY number", t=str(tenant))]
    finally:
        conn.close()


def quote_rows(superuser: Connect, tenant: uuid.UUID | str) -> list[Any]:
    """The tenant's quote references and its counter, as the engine holds them."""
    conn = superuser()
    try:
        return [[r[0] for r in conn.run("SELECT reference FROM quotes WHERE tenant_id = :t "
                                        "ORDER BY number", t=str(tenant))],
                conn.run("SELECT last_number FROM quote_counters WHERE tenant_id = :t",
                         t=str(tenant))]
    finally:
        conn.close()


def quote_entries(database: Database, tenant: uuid.UUID,
                  kind: str | None = None) -> list[dict[str, Any]]:
    """The `data` of the tenant's quote.* entries (or of one kind), in chain order."""
    with database.snapshot(tenant) as uow:
        return [json.loads(e.payload)["data"] for e in uow.ledger.entries()
                if (e.kind == kind if kind else e.kind.startswith("quote."))]


# ---------------------------------------------------------------- over HTTP

def test_make_read_and_convert_a_quote(client: Any, writer: tuple[Session, str],
                                       superuser: Connect) -> None:
    owner, secret = writer
    made = issue(client, secret, quote_request(), key="q-1", path="/quotes")
    assert made.status_code == 201, made.body
    body = made.json_body
    assert body["reference"] == "D-000001" and body["valid_until"] == "2026-12-31"
    assert body["converted_invoice_id"] is None
    assert body["totals"]["amount_due"] == "120.00"
    assert "issue_date" not in body["invoice"] and body["invoice"]["series"] == "F"
    assert made.headers["Location"] == f"/quotes/{body['id']}"
    assert get(client, secret, f"/quotes/{body['id']}").json_body == body
    assert invoice_numbers(superuser, owner.body["tenant_id"]) == []

    converted = issue(client, secret, DUE, key="c-1", path=f"/quotes/{body['id']}/invoice")
    assert converted.status_code == 201, converted.body
    invoice = converted.json_body
    assert invoice["invoice_number"] == "F-000001" and invoice["type_code"] == "380"
    assert invoice["issue_date"] == "2026-11-23"  # today in Paris, from the app's clock
    assert invoice["totals"] == body["totals"]
    assert converted.headers["Location"] == f"/invoices/{invoice['id']}"
    assert get(client, secret, f"/invoices/{invoice['id']}").json_body == invoice

    after = get(client, secret, f"/quotes/{body['id']}").json_body
    assert after["converted_invoice_id"] == invoice["id"]
    assert after["links"]["invoice"] == f"/invoices/{invoice['id']}"
    assert {k: v for k, v in after.items() if k not in ("converted_invoice_id", "links")} == \
        {k: v for k, v in body.items() if k not in ("converted_invoice_id", "links")}


def test_same_key_same_quote_another_body_409(client: Any, writer: tuple[Session, str]) -> None:
    _, secret = writer
    first = issue(client, secret, quote_request(), key="q", path="/quotes")
    # The same request in other decimal text and key order is the same request.
    same = quote_request()
    same["invoice"]["lines"] = [line(quantity="2.0", unit_price="50")]
    again = issue(client, secret, dict(reversed(same.items())), key="q", path="/quotes")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json_body == first.json_body
    for other in (quote_request(payment_terms="Comptant"), quote_request("2026-12-30")):
        conflict = issue(client, secret, other, key="q", path="/quotes")
        assert conflict.status_code == 409
        assert conflict.json_body["violations"][0]["field"] == "Idempotency-Key"
    second = issue(client, secret, quote_request(), key="q2", path="/quotes")
    assert second.status_code == 201 and second.json_body["reference"] == "D-000002"


def test_a_quote_becomes_one_invoice(client: Any, writer: tuple[Session, str],
                                     superuser: Connect) -> None:
    owner, secret = writer
    made = issue(client, secret, quote_request(), key="q", path="/quotes").json_body
    path = f"/quotes/{made['id']}/invoice"
    body = {"issue_date": "2026-11-21", **DUE}
    first = issue(client, secret, body, key="c", path=path)
    retry = issue(client, secret, body, key="c", path=path)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json_body == first.json_body
    assert first.json_body["issue_date"] == "2026-11-21"
    invoice_id = first.json_body["id"]

    twice = issue(client, secret, body, key="another", path=path)
    assert twice.status_code == 409
    assert twice.json_body["violations"][0]["field"] == "quote_id"
    assert invoice_id in twice.json_body["violations"][0]["rule"]

    other_dates = issue(client, secret, {**body, "due_date": "2026-12-24"}, key="c", path=path)
    assert other_dates.status_code == 409
    assert other_dates.json_body["violations"][0]["field"] == "Idempotency-Key"
    assert invoice_numbers(superuser, owner.body["tenant_id"]) == ["F-000001"]
    assert get(client, secret, f"/invoices?idempotency_key=quote:{made['id']}").json_body[
        "invoices"][0]["id"] == invoice_id


def test_quotes_take_no_invoice_number(client: Any, writer: tuple[Session, str],
                                       superuser: Connect) -> None:
    owner, secret = writer
    refs = [issue(client, secret, quote_request(), key=f"q{i}", path="/quotes").json_body
            for i in range(2)]
    assert [q["reference"] for q in refs] == ["D-000001", "D-000002"]
    assert issue(client, secret, recent(), key="inv").json_body["invoice_number"] == "F-000001"
    converted = issue(client, secret, DUE, key="c", path=f"/quotes/{refs[1]['id']}/invoice")
    assert converted.json_body["invoice_number"] == "F-000002"
    third = issue(client, secret, quote_request(), key="q3", path="/quotes").json_body
    assert third["reference"] == "D-000003"
    assert invoice_numbers(superuser, owner.body["tenant_id"]) == ["F-000001", "F-000002"]


def test_an_expired_quote_is_not_converted(client: Any, writer: tuple[Session, str],
                                           frozen: FrozenClock, superuser: Connect) -> None:
    owner, secret = writer
    made = issue(client, secret, quote_request("2026-11-24"), key="q", path="/quotes").json_body
    frozen.moment = datetime(2026, 11, 24, 22, 59, tzinfo=UTC)  # 23:59 in Paris: still valid
    assert issue(client, secret, DUE, key="c0", path="/quotes/00000000-0000-0000-0000-"
                 "000000000000/invoice").status_code == 404
    frozen.moment = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # the 25th in Paris
    expired = issue(client, secret, DUE, key="c", path=f"/quotes/{made['id']}/invoice")
    assert expired.status_code == 409
    [violation] = expired.json_body["violations"]
    assert violation["field"] == "valid_until" and "expired on 2026-11-24" in violation["rule"]
    assert invoice_numbers(superuser, owner.body["tenant_id"]) == []
    past = issue(client, secret, quote_request("2026-11-24"), key="q-past", path="/quotes")
    assert past.status_code == 422
    assert past.json_body["violations"][0]["field"] == "valid_until"


def test_every_bad_input_is_a_clear_4xx(client: Any, writer: tuple[Session, str]) -> None:
    _, secret = writer
    cases: list[tuple[Any, str | None, set[str]]] = [
        (quote_request(), None, {"Idempotency-Key"}),
        ({"invoice": quote_draft()}, "a", {"valid_until"}),
        ({"valid_until": "2026-12-31"}, "b", {"invoice"}),
        ({**quote_request(), "tenant_id": "x"}, "c", {"tenant_id"}),
        (quote_request("31/12/2026"), "d", {"valid_until"}),
        ({"valid_until": "2026-12-31", "invoice": recent()}, "e",
         {"invoice.issue_date", "invoice.due_date"}),
        (quote_request(type_code=381), "f", {"invoice.type_code"}),
        (quote_request(lines=[line(rate="19.6")], discount_conditions=None), "g",
         {"invoice.lines.0.vat_rate", "invoice.discount_conditions"}),
        ({"valid_until": "2026-12-31", "invoice": [1]}, "h", {"invoice"}),
        ("not json", "i", {"body"}), ("[1]", "j", {"body"}), ('{"x": NaN}', "k", {"x"}),
        (quote_request(buyer={**quote_draft()["buyer"], "name": "株式会社 Client"}), "l",
         {"invoice.buyer.name"}),  # the PDF's fonts could not print it
    ]
    for body, key, fields in cases:
        answer = issue(client, secret, body, key=key, path="/quotes")
        assert answer.status_code == 422, (body, answer.body)
        assert {v["field"] for v in answer.json_body["violations"]} == fields, answer.body

    made = issue(client, secret, quote_request(), key="ok", path="/quotes").json_body
    path = f"/quotes/{made['id']}/invoice"
    conversions: list[tuple[Any, str | None, set[str]]] = [
        (DUE, None, {"Idempotency-Key"}),
        ({}, "a", {"due_date"}),
        ({"due_date": "2026-13-01"}, "b", {"due_date"}),
        ({**DUE, "lines": []}, "c", {"lines"}),
        ({**DUE, "issue_date": "2026-11-30"}, "d", {"issue_date"}),  # in the future
        ({**DUE, "issue_date": "2026-10-01"}, "e", {"issue_date"}),  # too far back
        ({"due_date": "2026-11-01"}, "f", {"due_date"}),  # before the issue date
        ("", "g", {"body"}),
    ]
    for body, key, fields in conversions:
        answer = issue(client, secret, body, key=key, path=path)
        assert answer.status_code == 422, (body, answer.body)
        assert {v["field"] for v in answer.json_body["violations"]} == fields, answer.body
    assert get(client, secret, "/quotes/not-a-uuid").status_code == 422
    assert issue(client, secret, DUE, key="x", path="/quotes/nope/invoice").status_code == 422
    assert get(client, secret, f"/quotes/{made['id']}").json_body["converted_invoice_id"] is None


def test_who_may_quote_convert_and_read(client: Any, writer: tuple[Session, str],
                                        frozen: FrozenClock) -> None:
    owner, secret = writer
    made = issue(client, secret, quote_request(), key="q", path="/quotes").json_body
    tenant = owner.body["tenant_id"]

    accountant = Session(login(client, member_of(tenant, "accountant")))
    for path, body in (("/quotes", quote_request()), (f"/quotes/{made['id']}/invoice", DUE)):
        refused = client.post(path, body=json.dumps(body), headers={
            "Cookie": accountant.jar, "X-CSRF-Token": accountant.csrf,
            "Content-Type": "application/json", "Idempotency-Key": "acc"})
        assert refused.status_code == 403
    assert client.get(f"/quotes/{made['id']}",
                      headers={"Cookie": accountant.jar}).status_code == 200

    member = Session(login(client, member_of(tenant)))
    no_csrf = client.post("/quotes", body=json.dumps(quote_request()), headers={
        "Cookie": member.jar, "Content-Type": "application/json", "Idempotency-Key": "m"})
    assert no_csrf.status_code == 403
    converted = client.post(f"/quotes/{made['id']}/invoice", body=json.dumps(DUE), headers={
        "Cookie": member.jar, "X-CSRF-Token": member.csrf,
        "Content-Type": "application/json", "Idempotency-Key": "m"})
    assert converted.status_code == 201, converted.body

    _, reader = owner_with_key(client, frozen, ["invoices:read"])
    assert issue(client, reader["secret"], quote_request(), key="r",
                 path="/quotes").status_code == 403


def test_another_tenants_quote_is_a_404_that_shows_nothing(
        client: Any, writer: tuple[Session, str], frozen: FrozenClock) -> None:
    _, secret = writer
    made = issue(client, secret, quote_request(), key="q", path="/quotes").json_body
    _, stranger = owner_with_key(client, frozen, WRITE)
    read = get(client, stranger["secret"], f"/quotes/{made['id']}")
    steal = issue(client, stranger["secret"], DUE, key="steal",
                  path=f"/quotes/{made['id']}/invoice")
    for answer in (read, steal):
        assert answer.status_code == 404
        assert made["id"] not in str(answer.body) and "Client SA" not in str(answer.body)
    # The stranger's own counter starts at 1: nothing is shared.
    mine = issue(client, stranger["secret"], quote_request(), key="q", path="/quotes").json_body
    assert mine["reference"] == "D-000001" and mine["id"] != made["id"]
    assert get(client, secret, f"/quotes/{made['id']}").json_body["converted_invoice_id"] is None


# ---------------------------------------------------------------- crashes and races

def test_a_crash_between_issuing_and_recording_is_finished_by_the_retry(
        ports: InvoicePorts, quote_ports: QuotePorts, tenant: uuid.UUID,
        superuser: Connect, clock: FrozenClock, database: Database) -> None:
    made = create_quote(tenant, "q", quote_request(), quote_ports).quote
    for step in ("stored", "committed", "invoice_issued"):
        with pytest.raises(BaseException, match=step):
            convert_quote(tenant, made.quote_id, "c", DUE, ports, crash_at(step))
    assert get_quote(tenant, made.quote_id, ports.unit_of_work).converted_invoice_id is None
    assert invoice_numbers(superuser, tenant) == ["F-000001"]

    # Even once the quote has expired meanwhile, the invoice made is linked.
    clock.moment = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
    retried = convert_quote(tenant, made.quote_id, "c", DUE, ports)
    assert not retried.created and retried.archived
    assert retried.invoice.invoice_number == "F-000001"
    assert retried.invoice.issue_date.isoformat() == "2026-11-23"  # the crashed attempt's day
    linked = get_quote(tenant, made.quote_id, ports.unit_of_work)
    assert linked.converted_invoice_id == retried.invoice.invoice_id
    assert linked.conversion_key == "c"
    assert convert_quote(tenant, made.quote_id, "c", DUE, ports).invoice == retried.invoice
    with pytest.raises(Conflict):
        convert_quote(tenant, made.quote_id, "other", DUE, ports)
    assert invoice_numbers(superuser, tenant) == ["F-000001"]
    # The crashes recorded no conversion, so no entry; the retry that did, one.
    assert [e["invoice_id"] for e in quote_entries(database, tenant,
                                                   "quote.converted")] == \
        [str(retried.invoice.invoice_id)]


def test_racing_conversions_with_different_keys_make_one_invoice(
        ports: InvoicePorts, quote_ports: QuotePorts, tenant: uuid.UUID,
        superuser: Connect, database: Database) -> None:
    made = create_quote(tenant, "q", quote_request(), quote_ports).quote
    start = threading.Barrier(4)
    answers: list[Any] = []
    refusals: list[BaseException] = []

    def convert(key: str) -> None:
        start.wait()
        try:
            answers.append(convert_quote(tenant, made.quote_id, key, DUE, ports))
        except BaseException as exc:
            refusals.append(exc)

    threads = [threading.Thread(target=convert, args=(f"k{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 1 and len(refusals) == 3, refusals
    assert all(isinstance(r, Conflict) and r.violations[0].field == "quote_id"
               for r in refusals), refusals
    assert invoice_numbers(superuser, tenant) == ["F-000001"]
    assert get_quote(tenant, made.quote_id, ports.unit_of_work).converted_invoice_id == \
        answers[0].invoice.invoice_id
    [converted] = quote_entries(database, tenant, "quote.converted")
    assert converted["invoice_id"] == str(answers[0].invoice.invoice_id)


def test_the_same_quote_retried_the_next_day_is_the_same_request(
        quote_ports: QuotePorts, tenant: uuid.UUID, clock: FrozenClock) -> None:
    first = create_quote(tenant, "q", quote_request(), quote_ports)
    clock.moment = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    again = create_quote(tenant, "q", quote_request(), quote_ports)
    assert (first.created, again.created) == (True, False) and again.quote == first.quote
    with pytest.raises(InvalidInput):
        create_quote(tenant, "q", {"valid_until": "2026-12-31", "invoice": "x"}, quote_ports)


# ---------------------------------------------------------------- the ledger

# What a B2C quote holds that is personal data, and must never be in the chain.
EMAIL = "marie.martin@example.org"
PERSONAL = ("Marie Martin", "Bordeaux", "33000", "rue de la Paix", IBAN, "Atelier Durand",
            "marie.martin", "example.org")


def consumer_quote() -> dict[str, Any]:
    """A quote to a consumer (a person: name, address, email where the model
    has one), from a seller with an IBAN."""
    buyer: dict[str, Any] = {"name": "Marie Martin", "kind": "consumer",
                             "address": address("33000", "Bordeaux")}
    if "electronic_address" in quote_draft()["buyer"]:  # BT-49: a consumer's is their email
        buyer["electronic_address"] = {"scheme": "EM", "value": EMAIL}
    body = quote_request(buyer=buyer)
    for field in ("late_payment_penalty_rate", "recovery_indemnity"):  # B2B only
        del body["invoice"][field]
    return body


def test_quotes_leave_their_audit_trail_without_personal_data(
        client: Any, frozen: FrozenClock) -> None:
    _, key = owner_with_key(client, frozen, [*WRITE, "ledger:read"])
    secret = key["secret"]
    made = issue(client, secret, consumer_quote(), key="q-1", path="/quotes")
    assert made.status_code == 201, made.body
    body = made.json_body
    path = f"/quotes/{body['id']}/invoice"
    converted = issue(client, secret, DUE, key="c-1", path=path)
    assert converted.status_code == 201, converted.body
    invoice = converted.json_body

    def chain() -> list[dict[str, Any]]:
        return list(get(client, secret, "/ledger/entries?limit=1000").json_body["entries"])

    entries = chain()
    assert [e["kind"] for e in entries if e["kind"].startswith(("quote.", "invoice."))] == \
        ["quote.created", "invoice.issued", "invoice.archived", "quote.converted"]
    created, linked = (json.loads(e["payload"]) for e in entries
                       if e["kind"].startswith("quote."))
    assert created["data"] == {
        "quote_id": body["id"], "reference": "D-000001", "valid_until": "2026-12-31",
        "currency": "EUR", "seller_siren": body["invoice"]["seller"]["siren"],
        "totals": body["totals"],
        # The kept document, as GET /quotes/{id} shows it, proves itself by its hash.
        "document_sha256": hashlib.sha256(rfc8785.dumps(body["invoice"])).hexdigest()}
    assert linked["data"] == {"quote_id": body["id"], "reference": "D-000001",
                              "invoice_id": invoice["id"], "invoice_number": "F-000001"}
    assert created["at"] == linked["at"] == "2026-11-23T09:30:00.000000Z"  # the app's clock
    # The buyer's name and address, the seller's IBAN: in the quote, never in the chain.
    assert "Marie Martin" in json.dumps(body) and IBAN in json.dumps(body)
    for entry in entries:
        if entry["kind"].startswith("quote."):
            assert not [s for s in PERSONAL if s in entry["payload"]], entry["payload"]

    # Retries, and requests refused, append nothing.
    assert issue(client, secret, consumer_quote(), key="q-1", path="/quotes").status_code == 200
    assert issue(client, secret, quote_request(), key="q-1", path="/quotes").status_code == 409
    assert issue(client, secret, DUE, key="c-1", path=path).status_code == 200
    assert issue(client, secret, DUE, key="c-2", path=path).status_code == 409
    assert issue(client, secret, {**DUE, "due_date": "2026-12-24"}, key="c-1",
                 path=path).status_code == 409
    assert chain() == entries
    verified = get(client, secret, "/ledger/verify").json_body
    assert verified["ok"] is True and verified["entries_checked"] == len(entries), verified


@pytest.mark.parametrize("step", ["quote_numbered", "quote_ledger_appended", "quote_stored"])
def test_a_crash_while_making_a_quote_leaves_neither_row_nor_entry(
        quote_ports: QuotePorts, tenant: uuid.UUID, database: Database, superuser: Connect,
        step: str) -> None:
    with pytest.raises(BaseException, match=step):
        create_quote(tenant, "q", quote_request(), quote_ports, crash_at(step))
    assert quote_rows(superuser, tenant) == [[], []] and quote_entries(database, tenant) == []

    made = create_quote(tenant, "q", quote_request(), quote_ports)
    assert made.created and made.quote.reference == "D-000001"
    [entry] = quote_entries(database, tenant)
    assert (entry["quote_id"], entry["reference"]) == (str(made.quote.quote_id), "D-000001")
    assert entry["document_sha256"] == hashlib.sha256(made.quote.document.encode()).hexdigest()
    assert verify_ledger(tenant, database.snapshot).ok


def test_an_insert_the_engine_refuses_leaves_neither_row_nor_entry(
        quote_ports: QuotePorts, tenant: uuid.UUID, database: Database, superuser: Connect,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_add = PostgresQuotes.add

    def misnumbered(store: PostgresQuotes, made: StoredQuote) -> StoredQuote:
        # A reference that is not its number's: the engine's CHECK refuses the row.
        return real_add(store, replace(made, reference="D-999999"))

    monkeypatch.setattr(PostgresQuotes, "add", misnumbered)
    with pytest.raises(DatabaseError) as caught:
        create_quote(tenant, "q", quote_request(), quote_ports)
    assert sqlstate(caught.value) == "23514"
    assert quote_rows(superuser, tenant) == [[], []] and quote_entries(database, tenant) == []

    monkeypatch.setattr(PostgresQuotes, "add", real_add)
    made = create_quote(tenant, "q", quote_request(), quote_ports)
    assert made.quote.reference == "D-000001"
    assert [e["quote_id"] for e in quote_entries(database, tenant)] == [str(made.quote.quote_id)]
    assert verify_ledger(tenant, database.snapshot).ok


def test_a_retry_that_committed_first_leaves_one_quote_and_one_entry(
        quote_ports: QuotePorts, tenant: uuid.UUID, database: Database,
        superuser: Connect) -> None:
    """The request looked its key up, found nothing; meanwhile its retry made
    the quote. Its own insert is then refused (the key is taken): its number
    and its entry go with its transaction, and it answers the retry's quote."""
    first: list[Any] = []

    def meanwhile(step: str) -> None:
        if step == "quote_looked_up":
            first.append(create_quote(tenant, "q", quote_request(), quote_ports))

    late = create_quote(tenant, "q", quote_request(), quote_ports, meanwhile)
    assert first[0].created and not late.created and late.quote == first[0].quote
    assert quote_rows(superuser, tenant) == [["D-000001"], [[1]]]
    assert [e["quote_id"] for e in quote_entries(database, tenant)] == \
        [str(late.quote.quote_id)]
    assert create_quote(tenant, "q", quote_request(), quote_ports).quote == late.quote
    assert len(quote_entries(database, tenant)) == 1
    assert verify_ledger(tenant, database.snapshot).ok


def test_racing_creations_with_one_key_leave_one_entry(
        quote_ports: QuotePorts, tenant: uuid.UUID, database: Database,
        superuser: Connect) -> None:
    start = threading.Barrier(4)
    answers: list[Any] = []
    failures: list[BaseException] = []

    def make() -> None:
        start.wait()
        try:
            answers.append(create_quote(tenant, "q", quote_request(), quote_ports))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and sorted(a.created for a in answers) == [False, False, False, True]
    assert len({a.quote for a in answers}) == 1
    assert quote_rows(superuser, tenant) == [["D-000001"], [[1]]]
    assert [e["quote_id"] for e in quote_entries(database, tenant, "quote.created")] == \
        [str(answers[0].quote.quote_id)]
    assert verify_ledger(tenant, database.snapshot).ok


def test_a_crash_while_recording_the_conversion_leaves_neither_link_nor_entry(
        ports: InvoicePorts, quote_ports: QuotePorts, tenant: uuid.UUID, database: Database,
        superuser: Connect) -> None:
    made = create_quote(tenant, "q", quote_request(), quote_ports).quote
    for step in ("conversion_recorded", "conversion_ledger_appended"):
        with pytest.raises(BaseException, match=step):
            convert_quote(tenant, made.quote_id, "c", DUE, ports, crash_at(step))
        assert get_quote(tenant, made.quote_id, ports.unit_of_work).converted_invoice_id is None
        assert quote_entries(database, tenant, "quote.converted") == []
    retried = convert_quote(tenant, made.quote_id, "c", DUE, ports)
    assert not retried.created  # the invoice was issued by the first attempt
    assert convert_quote(tenant, made.quote_id, "c", DUE, ports).invoice == retried.invoice
    assert quote_entries(database, tenant, "quote.converted") == [{
        "quote_id": str(made.quote_id), "reference": "D-000001",
        "invoice_id": str(retried.invoice.invoice_id), "invoice_number": "F-000001"}]
    assert invoice_numbers(superuser, tenant) == ["F-000001"]
    assert verify_ledger(tenant, database.snapshot).ok


def test_racing_conversions_with_one_key_leave_one_entry(
        ports: InvoicePorts, quote_ports: QuotePorts, tenant: uuid.UUID, database: Database,
        superuser: Connect) -> None:
    made = create_quote(tenant, "q", quote_request(), quote_ports).quote
    start = threading.Barrier(4)
    answers: list[Any] = []
    failures: list[BaseException] = []

    def convert() -> None:
        start.wait()
        try:
            answers.append(convert_quote(tenant, made.quote_id, "k", DUE, ports))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert len({a.invoice.invoice_id for a in answers}) == 1 and len(answers) == 4
    assert sum(a.created for a in answers) == 1
    assert invoice_numbers(superuser, tenant) == ["F-000001"]
    assert [e["invoice_id"] for e in quote_entries(database, tenant, "quote.converted")] == \
        [str(answers[0].invoice.invoice_id)]
    assert verify_ledger(tenant, database.snapshot).ok


# ---------------------------------------------------------------- the engine

def refused(conn: pg8000.native.Connection, sql: str, **params: Any) -> str:
    """Run `sql` in the open transaction, expect a refusal, roll back; the SQLSTATE."""
    with pytest.raises(DatabaseError) as caught:
        conn.run(sql, **params)
    conn.run("ROLLBACK")
    return sqlstate(caught.value) or ""


@pytest.fixture
def quotes(ports: InvoicePorts, quote_ports: QuotePorts,
           tenant: uuid.UUID) -> dict[str, uuid.UUID]:
    """One converted quote, one not, an invoice no quote became, a credit note."""
    loose = issue_invoice(tenant, "loose", recent(), ports).invoice
    credit = issue_credit_note(tenant, loose.invoice_id, "cn", recent(), ports).invoice
    converted = create_quote(tenant, "q1", quote_request(), quote_ports).quote
    issued = convert_quote(tenant, converted.quote_id, "c1", DUE, ports).invoice
    pending = create_quote(tenant, "q2", quote_request(), quote_ports).quote
    return {"converted": converted.quote_id, "invoice": issued.invoice_id,
            "pending": pending.quote_id, "loose": loose.invoice_id,
            "credit": credit.invoice_id}


# (statement, SQLSTATE as the app role, SQLSTATE as the table owner): the app
# role lacks the privilege (42501); the owner has it, and the triggers refuse.
ATTACKS = [
    ("UPDATE quotes SET document = '{}' WHERE id = :pending", "42501", "EQ003"),
    ("UPDATE quotes SET valid_until = valid_until + 365 WHERE id = :pending", "42501", "EQ003"),
    ("UPDATE quotes SET converted_invoice_id = :loose, conversion_key = 'x', "
     "conversion_sha256 = request_sha256 WHERE id = :converted", "EQ003", "EQ003"),
    ("UPDATE quotes SET converted_invoice_id = NULL, conversion_key = NULL, "
     "conversion_sha256 = NULL WHERE id = :converted", "EQ003", "EQ003"),
    ("UPDATE quotes SET converted_invoice_id = :credit, conversion_key = 'x', "
     "conversion_sha256 = request_sha256 WHERE id = :pending", "EQ004", "EQ004"),
    ("UPDATE quotes SET converted_invoice_id = gen_random_uuid(), conversion_key = 'x', "
     "conversion_sha256 = request_sha256 WHERE id = :pending", "EQ004", "EQ004"),
    # One invoice comes from one quote at most.
    ("UPDATE quotes SET converted_invoice_id = :invoice, conversion_key = 'x', "
     "conversion_sha256 = request_sha256 WHERE id = :pending", "23505", "23505"),
    ("UPDATE quotes SET converted_invoice_id = :loose WHERE id = :pending", "23514", "23514"),
    ("DELETE FROM quotes", "42501", "EL001"),
    ("DELETE FROM quotes WHERE id = :pending", "42501", "EL001"),
    ("TRUNCATE quotes", "42501", "EL001"),
    ("UPDATE quote_counters SET last_number = last_number + 5", "42501", "EQ001"),
    ("DELETE FROM quote_counters", "42501", "EL001"),
    ("TRUNCATE quote_counters", "42501", "EL001"),
    ("INSERT INTO quotes (tenant_id, id, number, reference, idempotency_key, request_sha256, "
     "document, totals, valid_until) SELECT tenant_id, gen_random_uuid(), 7, 'D-000007', 'k', "
     "request_sha256, document, totals, valid_until FROM quotes WHERE id = :pending",
     "EQ002", "EQ002"),
    # A number given to no quote: refused at commit.
    ("SELECT quote_number_next()", "EQ001", "EQ001"),
]


@pytest.mark.parametrize("role", ["app", "owner"])
def test_the_engine_refuses_to_change_or_delete_a_quote(
        as_app: Connect, as_owner: Connect, superuser: Connect, tenant: uuid.UUID,
        quotes: dict[str, uuid.UUID], role: str) -> None:
    """As the app role (a bug) and as the table owner (no privilege check
    stops it: the triggers do), nothing of a quote changes but its one conversion."""
    before = _rows(superuser, tenant)
    got: dict[str, str] = {}
    for sql, _, _ in ATTACKS:
        conn = in_tenant(as_app if role == "app" else as_owner, tenant)
        try:
            params = {k: str(v) for k, v in quotes.items() if f":{k}" in sql}
            with pytest.raises(DatabaseError) as caught:
                conn.run(sql, **params)
                conn.run("COMMIT")
            got[sql] = sqlstate(caught.value) or ""
        finally:
            conn.close()
    assert got == {sql: app if role == "app" else owner for sql, app, owner in ATTACKS}
    assert _rows(superuser, tenant) == before


def test_the_app_role_converts_once_and_sees_one_tenant(
        as_app: Connect, tenant: uuid.UUID, quotes: dict[str, uuid.UUID],
        database: Database) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    other = create_tenant(f"Other {uuid.uuid4().hex[:8]}", database.unit_of_work)
    conn = in_tenant(as_app, other)
    try:
        assert conn.run("SELECT count(*) FROM quotes") == [[0]]
        assert conn.run("SELECT count(*) FROM quote_counters") == [[0]]
        # Tenant A's quote, aimed at from B: invisible, so nothing to update.
        assert conn.run("UPDATE quotes SET converted_invoice_id = :i, conversion_key = 'x', "
                        "conversion_sha256 = decode(repeat('00', 32), 'hex') "
                        "WHERE id = :q RETURNING 1", i=str(quotes["loose"]),
                        q=str(quotes["pending"])) == []
        assert refused(conn, "INSERT INTO quotes (tenant_id, id, number, reference, "
                       "idempotency_key, request_sha256, document, totals, valid_until) "
                       "VALUES (:t, gen_random_uuid(), 1, 'D-000001', 'k', "
                       "decode(repeat('00', 32), 'hex'), '{}', '{}', '2026-12-31')",
                       t=str(tenant)) in {"42501", "EQ002"}
    finally:
        conn.close()

    conn = in_tenant(as_app, tenant)
    try:
        # The conversion the use case makes: allowed once, from NULL, to an invoice.
        assert conn.run("UPDATE quotes SET converted_invoice_id = :i, conversion_key = 'x', "
                        "conversion_sha256 = request_sha256 WHERE id = :q RETURNING 1",
                        i=str(quotes["loose"]), q=str(quotes["pending"])) == [[1]]
        assert conn.run("SELECT converted_at IS NOT NULL FROM quotes WHERE id = :q",
                        q=str(quotes["pending"])) == [[True]]
        assert refused(conn, "UPDATE quotes SET conversion_key = 'y' WHERE id = :q",
                       q=str(quotes["converted"])) == "EQ003"
    finally:
        conn.close()


def _rows(superuser: Connect, tenant: uuid.UUID) -> list[Any]:
    conn = superuser()
    try:
        return [conn.run("SELECT id::text, number, reference, document, valid_until, "
                         "converted_invoice_id::text, conversion_key, converted_at FROM quotes "
                         "WHERE tenant_id = :t ORDER BY number", t=str(tenant)),
                conn.run("SELECT last_number FROM quote_counters WHERE tenant_id = :t",
                         t=str(tenant))]
    finally:
        conn.close()


def test_the_quote_key_is_the_invoice_idempotency_key(quotes: dict[str, uuid.UUID],
                                                      tenant: uuid.UUID,
                                                      ports: InvoicePorts) -> None:
    with ports.unit_of_work(tenant) as uow:
        made = uow.invoices.by_idempotency_key(invoice_key(quotes["converted"]))
    assert made is not None and made.invoice_id == quotes["invoice"]
