"""CDAR messages: what we write reads back the same, and hostile input (XXE,
billion laughs, oversize, wrong root, missing fields) is refused by name,
never crashes and never reaches the network or the file system."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from chalicelib.documents.cdar import (
    MAX_CDAR_BYTES,
    NS,
    PARTY_STATUS,
    PLATFORM_STATUS,
    CdarNotBuilt,
    CdarRefused,
    Party,
    build_status,
    parse_cdar,
)
from chalicelib.domain.lifecycle import derive

SELLER, BUYER = Party("123456782", "SE"), Party("987654321", "BY")
ISSUED = datetime(2026, 12, 8, 10, 30, 5, tzinfo=UTC)


def status(code: int, **changes: object) -> bytes:
    values: dict[str, object] = dict(
        message_id=f"CDV-{code}", issued_at=ISSUED, invoice_number="F2026-0042",
        invoice_date=date(2026, 12, 1), code=code, issuer=SELLER, recipients=[BUYER])
    values.update(changes)
    return build_status(**values)  # type: ignore[arg-type]


def test_212_round_trips_with_men_per_vat_rate_as_decimal() -> None:
    amounts = [(Decimal("20"), Decimal("1200.00")), (Decimal("5.5"), Decimal("105.50"))]
    message = parse_cdar(status(212, amounts=amounts))
    assert message.message_id == "CDV-212"
    assert message.issued_at == ISSUED
    assert message.type_code == PARTY_STATUS
    assert message.guideline == "urn.cpro.gouv.fr:1p0:CDV:invoice"
    [report] = message.reports
    assert report.invoice_number == "F2026-0042"
    assert report.process_condition == 212
    assert report.invoice_date == date(2026, 12, 1)
    assert report.men == ((Decimal("20.00"), Decimal("1200.00")),
                          (Decimal("5.50"), Decimal("105.50")))
    assert all(isinstance(v, Decimal) for pair in report.men for v in pair)
    assert {c.currency for c in report.characteristics} == {"EUR"}


@pytest.mark.parametrize("code,reasons", [(204, ()), (205, ()), (206, ("CMD_ERR",)),
                                          (207, ("TX_TVA_ERR", "DEST_ERR")),
                                          (210, ("DOUBLON",))])
def test_the_buyers_statuses_round_trip_with_their_reason_codes(
        code: int, reasons: tuple[str, ...]) -> None:
    [report] = parse_cdar(status(code, reason_codes=reasons, issuer=BUYER,
                                 recipients=[SELLER])).reports
    assert (report.process_condition, report.reason_codes) == (code, reasons)


def test_other_characteristics_are_read_beside_men() -> None:
    xml = status(212, amounts=[(Decimal("20"), Decimal("100"))]).replace(
        b"</ram:SpecifiedDocumentStatus>",
        b"<ram:SpecifiedDocumentCharacteristic><ram:TypeCode>MPA</ram:TypeCode>"
        b'<ram:ValueAmount currencyID="EUR">40.00</ram:ValueAmount>'
        b"</ram:SpecifiedDocumentCharacteristic>"
        b"<ram:SpecifiedDocumentCharacteristic><ram:TypeCode>RAP</ram:TypeCode>"
        b'<ram:ValueAmount currencyID="EUR">60.00</ram:ValueAmount>'
        b"</ram:SpecifiedDocumentCharacteristic></ram:SpecifiedDocumentStatus>")
    [report] = parse_cdar(xml).reports
    assert [(c.type_code, c.amount) for c in report.characteristics] == [
        ("MEN", Decimal("100.00")), ("MPA", Decimal("40.00")), ("RAP", Decimal("60.00"))]
    assert report.men == ((Decimal("20.00"), Decimal("100.00")),)  # MEN only


def test_a_parsed_message_feeds_the_state_machine() -> None:
    platform = parse_cdar(status(213, reason_codes=("REJ_SEMAN",), type_code=PLATFORM_STATUS))
    assert platform.type_code == PLATFORM_STATUS
    assert derive(platform.events()).current == 213


def test_a_status_the_table_refuses_is_not_built() -> None:
    with pytest.raises(CdarNotBuilt, match="needs a reason code"):
        status(210)
    with pytest.raises(CdarNotBuilt, match="per VAT rate"):
        status(212)
    with pytest.raises(CdarNotBuilt, match="unknown status"):
        status(299)
    with pytest.raises(CdarNotBuilt, match="short codes"):
        status(204, invoice_number="F<1>")
    with pytest.raises(CdarNotBuilt, match="finite Decimals"):
        status(212, amounts=[(Decimal("20"), 12.5)])


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = b'<!ENTITY leak "reached">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> object:
    """A server that records whether the parser ever called out."""
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _wrapped(doctype: str, body: str) -> bytes:
    """A real CDAR with a DTD in front and `body` as the invoice number."""
    good = status(204).decode()
    good = good.replace("F2026-0042", body).replace(
        "<?xml version='1.0' encoding='UTF-8'?>", "")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n{good}'.encode()


def test_xxe_with_a_file_entity_is_refused_and_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    hostile = _wrapped(f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>', "&x;")
    with pytest.raises(CdarRefused) as refused:
        parse_cdar(hostile)
    assert refused.value.reason == "a DTD is not allowed"
    assert "TOP-SECRET" not in str(refused.value)


def test_xxe_with_an_http_entity_or_dtd_never_calls_out(listener: str) -> None:
    for hostile in (
            _wrapped(f'<!DOCTYPE r [<!ENTITY x SYSTEM "{listener}/entity">]>', "&x;"),
            _wrapped(f'<!DOCTYPE r SYSTEM "{listener}/dtd">', "F1"),
            _wrapped(f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{listener}/param"> %p;]>', "F1")):
        with pytest.raises(CdarRefused, match="DTD"):
            parse_cdar(hostile)
    assert _Recorder.hits == []


def test_billion_laughs_is_refused_quickly() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10))
    started = time.monotonic()
    with pytest.raises(CdarRefused, match="DTD"):
        parse_cdar(_wrapped(f"<!DOCTYPE r [{entities}]>", "&lol9;"))
    assert time.monotonic() - started < 1


def test_a_dtd_in_utf16_is_refused_too() -> None:
    hostile = _wrapped('<!DOCTYPE r [<!ENTITY x "boom">]>', "&x;").replace(
        b'encoding="UTF-8"', b'encoding="UTF-16"').decode().encode("utf-16")
    with pytest.raises(CdarRefused, match="DTD"):
        parse_cdar(hostile)


def test_an_entity_reference_without_a_dtd_is_not_read() -> None:
    with pytest.raises(CdarRefused):
        parse_cdar(status(204).replace(b"F2026-0042", b"&undefined;"))


def test_oversize_is_refused_before_parsing() -> None:
    padded = status(204).replace(b"<rsm:ExchangedDocumentContext>",
                                 b"<!--" + b"x" * MAX_CDAR_BYTES + b"-->"
                                 b"<rsm:ExchangedDocumentContext>")
    with pytest.raises(CdarRefused, match=f"larger than {MAX_CDAR_BYTES}"):
        parse_cdar(padded)


def test_wrong_root_and_malformed_xml_are_refused() -> None:
    with pytest.raises(CdarRefused, match="root is not"):
        parse_cdar(b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>')
    with pytest.raises(CdarRefused, match="not well-formed"):
        parse_cdar(b"<rsm:Cross")
    with pytest.raises(CdarRefused, match="is bytes"):
        parse_cdar("<text/>")  # type: ignore[arg-type]


def _without(xml: bytes, path: str) -> bytes:
    root = etree.fromstring(xml)
    for node in root.xpath(path, namespaces=NS):
        node.getparent().remove(node)
    data: bytes = etree.tostring(root)
    return data


@pytest.mark.parametrize("path,rule", [
    ("//rsm:ExchangedDocument/ram:ID", "ExchangedDocument.ID is missing"),
    ("//rsm:ExchangedDocument/ram:IssueDateTime", "ExchangedDocument.IssueDateTime is missing"),
    ("//rsm:AcknowledgementDocument/ram:TypeCode", "AcknowledgementDocument.TypeCode is missing"),
    ("//ram:ReferenceReferencedDocument", "ReferenceReferencedDocument is missing"),
    ("//ram:ReferenceReferencedDocument/ram:IssuerAssignedID",
     "ReferenceReferencedDocument.IssuerAssignedID is missing"),
    ("//ram:ReferenceReferencedDocument/ram:ProcessConditionCode",
     "ReferenceReferencedDocument.ProcessConditionCode is missing"),
    ("//ram:SpecifiedDocumentCharacteristic/ram:ValuePercent",
     "a MEN characteristic needs ValueAmount and ValuePercent"),
])
def test_a_missing_field_is_named(path: str, rule: str) -> None:
    xml = status(212, amounts=[(Decimal("20"), Decimal("10"))])
    with pytest.raises(CdarRefused) as refused:
        parse_cdar(_without(xml, path))
    assert refused.value.reason == rule


@pytest.mark.parametrize("old,new,rule", [
    (b">212<", b">299<", "not a known lifecycle status"),
    (b">23<", b">916<", "TypeCode must be 305 or 23"),
    (b">1200.00<", b">12e400<", "ValueAmount must be a decimal"),
    (b">1200.00<", b">NaN<", "ValueAmount must be a decimal"),
    (b'currencyID="EUR"', b'currencyID="euro"', "ISO 4217"),
    (b'format="204">20261208103005', b'format="204">2026-12-08', "format 204 or 102"),
])
def test_a_wrong_value_is_named_never_echoed(old: bytes, new: bytes, rule: str) -> None:
    xml = status(212, amounts=[(Decimal("20"), Decimal("1200"))])
    assert old in xml
    with pytest.raises(CdarRefused, match=rule) as refused:
        parse_cdar(xml.replace(old, new, 1))
    assert new.strip(b"<>").decode() not in refused.value.reason


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_cdar_is_read_or_refused_never_a_crash(data: st.DataObject) -> None:
    good = bytearray(status(212, amounts=[(Decimal("20"), Decimal("1200"))]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        at = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
        good[at:at + 1] = data.draw(st.binary(min_size=0, max_size=3))
    try:
        message = parse_cdar(bytes(good))
    except CdarRefused as refused:
        assert refused.reason and len(refused.reason) < 120
    else:
        assert all(isinstance(r.process_condition, int) for r in message.reports)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_are_refused_by_name(data: bytes) -> None:
    with pytest.raises(CdarRefused):
        parse_cdar(data)
