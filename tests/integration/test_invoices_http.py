"""POST /invoices and friends over HTTP: who may issue, what a client sees
(201, then 200 for a retry, 409, 422 with every violation), and the PDF
served back from the archive after its checksum is checked."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from tests.builders import line, recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, Session, get, issue, login, member_of, owner_with_key


@pytest.fixture
def writer(client: Any, frozen: FrozenClock) -> tuple[Session, str]:
    owner, key = owner_with_key(client, frozen, WRITE)
    return owner, key["secret"]


def test_issue_then_download_the_factur_x(client: Any, writer: tuple[Session, str]) -> None:
    from facturx import get_level, get_xml_from_pdf

    _, secret = writer
    created = issue(client, secret, recent())
    assert created.status_code == 201, created.body
    body = created.json_body
    assert body["invoice_number"] == "F-000001"
    assert body["totals"]["amount_due"] == "120.00"
    assert created.headers["Location"] == f"/invoices/{body['id']}"
    assert [o["kind"] for o in body["archive"]["objects"]] == ["pdf", "xml"]

    pdf = get(client, secret, f"/invoices/{body['id']}/pdf")
    assert pdf.status_code == 200
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert "F-000001.pdf" in pdf.headers["Content-Disposition"]
    assert hashlib.sha256(pdf.body).hexdigest() == body["pdf_sha256"]
    name, xml = get_xml_from_pdf(io.BytesIO(pdf.body), check_xsd=True)
    assert name == "factur-x.xml" and get_level(__import__("lxml.etree").etree.fromstring(
        xml)) == "en16931"
    assert hashlib.sha256(xml).hexdigest() == body["xml_sha256"]

    alone = get(client, secret, f"/invoices/{body['id']}/xml")
    assert alone.status_code == 200 and alone.body == xml
    assert get(client, secret, f"/invoices/{body['id']}").json_body == body


def test_retry_conflict_and_clear_refusals(client: Any, writer: tuple[Session, str]) -> None:
    _, secret = writer
    first = issue(client, secret, recent())
    again = issue(client, secret, recent())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json_body["id"] == first.json_body["id"]

    conflict = issue(client, secret, recent(payment_terms="Comptant"))
    assert conflict.status_code == 409
    assert conflict.json_body["violations"][0]["field"] == "Idempotency-Key"

    missing = issue(client, secret, recent(), key=None)
    assert missing.status_code == 422
    assert missing.json_body["violations"][0]["field"] == "Idempotency-Key"

    bad = recent(lines=[{"description": "x", "quantity": "1", "unit_price": "1.00001",
                         "vat_category": "S", "vat_rate": "19.6"}], tenant_id="x")
    refused = issue(client, secret, bad, key="bad")
    assert refused.status_code == 422
    fields = {v["field"] for v in refused.json_body["violations"]}
    assert {"lines.0.unit_price", "lines.0.vat_rate", "tenant_id"} <= fields, fields

    for text in ("not json", "[1, 2]", '{"a": 1, "a": 2}', '{"x": NaN}'):
        answer = issue(client, secret, text, key=f"text-{len(text)}")
        assert answer.status_code == 422, text

    assert get(client, secret, "/invoices/not-a-uuid").status_code == 422
    assert get(client, secret,
               "/invoices/00000000-0000-0000-0000-000000000000/pdf").status_code == 404


def test_a_credit_note_over_http(client: Any, writer: tuple[Session, str]) -> None:
    _, secret = writer
    original = issue(client, secret, recent()).json_body
    credit = issue(client, secret, recent(), key="cn-1",
                   path=f"/invoices/{original['id']}/credit-notes")
    assert credit.status_code == 201, credit.body
    assert credit.json_body["type_code"] == "381"
    assert credit.json_body["credited_invoice_id"] == original["id"]


def test_who_may_issue_and_read(client: Any, writer: tuple[Session, str],
                                frozen: FrozenClock) -> None:
    owner, secret = writer
    issued = issue(client, secret, recent()).json_body
    tenant = owner.body["tenant_id"]

    accountant = Session(login(client, member_of(tenant, "accountant")))
    refused = client.post("/invoices", body=json.dumps(recent()), headers={
        "Cookie": accountant.jar, "X-CSRF-Token": accountant.csrf,
        "Content-Type": "application/json", "Idempotency-Key": "acc"})
    assert refused.status_code == 403
    assert client.get(f"/invoices/{issued['id']}",
                      headers={"Cookie": accountant.jar}).status_code == 200

    member = Session(login(client, member_of(tenant)))
    no_csrf = client.post("/invoices", body=json.dumps(recent()), headers={
        "Cookie": member.jar, "Content-Type": "application/json", "Idempotency-Key": "m"})
    assert no_csrf.status_code == 403
    made = client.post("/invoices", body=json.dumps(recent()), headers={
        "Cookie": member.jar, "X-CSRF-Token": member.csrf,
        "Content-Type": "application/json", "Idempotency-Key": "m"})
    assert made.status_code == 201, made.body

    _, reader = owner_with_key(client, frozen, ["ledger:read"])
    assert issue(client, reader["secret"], recent(), key="r").status_code == 403

    _, stranger = owner_with_key(client, frozen, WRITE)
    for path in (f"/invoices/{issued['id']}", f"/invoices/{issued['id']}/pdf",
                 f"/invoices/{issued['id']}/xml"):
        answer = get(client, stranger["secret"], path)
        assert answer.status_code == 404 and issued["invoice_number"] not in str(answer.body)
    credit = issue(client, stranger["secret"], recent(), key="steal",
                   path=f"/invoices/{issued['id']}/credit-notes")
    assert credit.status_code == 404


def _seller(**fields: Any) -> dict[str, Any]:
    return {**recent()["seller"], **fields}


INVALID: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "bad_siren": (recent(seller=_seller(siren="123456789")),
                  [("seller.siren", "SIREN")]),
    "bad_iban": (recent(seller=_seller(iban="FR7630006000011234567890188")),
                 [("seller.iban", "IBAN")]),
    "rate_19_6": (recent(lines=[line(rate="19.6")]), [("lines.0.vat_rate", "French VAT rate")]),
    "exempt_without_reason": (recent(lines=[line(category="E", rate="0")]),
                              [("vat_exemptions", "exemption reason")]),
    "b2b_without_penalty_rate": (recent(late_payment_penalty_rate=None),
                                 [("late_payment_penalty_rate", "L441-10")]),
    "indemnity_not_40": (recent(recovery_indemnity="50"), [("recovery_indemnity", "40.00")]),
    "due_before_issue": (recent(due_date="2026-11-01"), [("due_date", "issue date")]),
    "franchise_mention": (recent(seller=_seller(vat_franchise=True, vat_number=None),
                                 lines=[line(category="E", rate="0")],
                                 vat_exemptions=[{"category": "E", "reason": "Exonéré"}]),
                          [("seller.tax_registration_id", "franchise"),
                           ("vat_exemptions.0.reason", "293 B")]),
    "b2b_without_buyer_siren": (recent(buyer={k: v for k, v in recent()["buyer"].items()
                                              if k != "siren"}), [("buyer.siren", "BT-47")]),
    "five_decimals": (recent(lines=[line(unit_price="1.23456")]),
                      [("lines.0.unit_price", "4 decimals")]),
    "no_lines": (recent(lines=[]), [("lines", "1 to 1000")]),
    "intra_community_incomplete": (
        recent(lines=[line(category="K", rate="0")],
               vat_exemptions=[{"category": "K", "code": "VATEX-EU-IC"}]),
        [("buyer.vat_number", "another member state"), ("delivery_date", "BR-IC-11"),
         ("delivery_address", "BR-IC-12")]),
    "future_issue_date": (recent(issue_date="2026-11-24", due_date="2026-12-24"),
                          [("issue_date", "future")]),
}


@pytest.mark.parametrize("case", INVALID)
def test_each_invalid_invoice_gets_its_exact_422(client: Any, writer: tuple[Session, str],
                                                 case: str) -> None:
    body, expected = INVALID[case]
    answer = issue(client, writer[1], body, key=f"invalid-{case}")
    assert answer.status_code == 422, answer.body
    got = [(v["field"], v["rule"]) for v in answer.json_body["violations"]]
    assert [field for field, _ in got] == [field for field, _ in expected], got
    for (_, rule), (_, words) in zip(got, expected, strict=True):
        assert words in rule, (rule, words)
    assert get(client, writer[1], "/invoices").json_body["invoices"] == []


class NoSchematron:
    """The real documents, whose conformance check cannot run (worker gone)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def problems(self, xml: bytes) -> Any:
        from chalicelib.documents.schematron import SchematronUnavailable

        raise SchematronUnavailable("the worker died twice")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_schematron_unavailable_is_a_503_and_nothing_is_issued(
        client: Any, writer: tuple[Session, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import runtime
    from chalicelib.usecases.invoicing import InvoicePorts

    real = runtime.invoice_ports()
    monkeypatch.setattr(runtime, "invoice_ports", lambda: InvoicePorts(
        real.unit_of_work, NoSchematron(real.documents), real.archive, real.clock))
    answer = issue(client, writer[1], recent(), key="no-schematron")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    assert "nothing was issued" in answer.json_body["detail"]
    monkeypatch.undo()
    assert get(client, writer[1], "/invoices").json_body["invoices"] == []
    # The same key afterwards issues number 1: nothing was consumed.
    assert issue(client, writer[1], recent(), key="no-schematron").json_body[
        "invoice_number"] == "F-000001"


def test_a_deeply_nested_body_is_a_422(client: Any, writer: tuple[Session, str]) -> None:
    body = json.dumps({**recent(), "x": json.loads("[" * 600 + "]" * 600)})
    answer = issue(client, writer[1], body, key="deep")
    assert answer.status_code == 422, answer.body
