"""The Flow Service adapter against the local PA stand-in, over real HTTP:
deposit, AlreadyExistingFlow, checksum mismatch, search paging by cursor,
the token cached and refreshed, a PA down or failing named as unavailable
(never its text), the directory, and lifecycles read back from CDAR flows."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import pytest
import urllib3

from chalicelib.adapters.pa import REFRESH_MARGIN, ClientCredentials, FlowServiceClient
from chalicelib.documents.cdar import parse_cdar
from chalicelib.domain.lifecycle import StatusEvent, derive
from chalicelib.domain.pa_flows import FlowInfo, InvalidPaRecord, SearchQuery
from chalicelib.ports import PaNotFound, PaRefused, PaUnavailable
from chalicelib.secret import Secret
from devstack.pa_standin import HAPPY_PATH, PaStandIn
from tests.conftest import remember
from tests.fakes import FrozenClock


def cii(number: str) -> bytes:
    return (
        '<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:'
        'CrossIndustryInvoice:100" xmlns:ram="urn:un:unece:uncefact:data:standard:'
        'ReusableAggregateBusinessInformationEntity:100"><rsm:ExchangedDocument>'
        f"<ram:ID>{number}</ram:ID></rsm:ExchangedDocument></rsm:CrossIndustryInvoice>"
    ).encode()


def info(tracking: str, content: bytes | None = None, **changes: str) -> FlowInfo:
    values = dict(tracking_id=tracking, name=f"{tracking}.xml", processing_rule="B2B",
                  flow_syntax="CII", flow_profile="CIUS",
                  sha256=hashlib.sha256(content).hexdigest() if content else None)
    values.update(changes)
    return FlowInfo(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def auth(pa: PaStandIn, clock: FrozenClock) -> ClientCredentials:
    return ClientCredentials(pa.token_url, pa.client_id, Secret(pa.client_secret), clock=clock)


@pytest.fixture
def client(pa: PaStandIn, auth: ClientCredentials) -> FlowServiceClient:
    return FlowServiceClient(pa.base_url, auth)


def lifecycle_of(client: FlowServiceClient, number: str) -> list[StatusEvent]:
    """Every status the PA sent for one invoice number, read from its CDAR flows."""
    events: list[StatusEvent] = []
    cursor = None
    while True:
        page = client.search(SearchQuery(updated_after=cursor, direction="In", limit=100))
        for flow in page.flows:
            if flow.flow_syntax == "CDAR":
                message = parse_cdar(client.fetch(flow.flow_id))
                events += [e for e, r in zip(message.events(), message.reports, strict=True)
                           if r.invoice_number == number]
        cursor = page.next_cursor
        if not page.more:
            return events


def test_a_deposit_is_multipart_with_its_checksum_and_pending_then_ok(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    content = cii("F2026-0001")
    ack = client.deposit(info("inv-0001", content), content)
    assert (ack.status, ack.reason_codes, ack.tracking_id) == ("Pending", (), "inv-0001")
    stored = pa.flow(ack.flow_id)
    assert stored["trackingId"] == "inv-0001" and stored["flowProfile"] == "CIUS"
    pa.advance()
    [flow] = client.search(SearchQuery(tracking_id="inv-0001")).flows
    assert (flow.flow_id, flow.ack_status, flow.direction) == (ack.flow_id, "Ok", "Out")
    assert client.fetch(ack.flow_id) == content


def test_the_same_tracking_id_again_is_already_existing_not_a_second_flow(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    content = cii("F2026-0002")
    first = client.deposit(info("inv-0002", content), content)
    again = client.deposit(info("inv-0002", content), content)  # a crash, then a retry
    assert again.already_existing and again.status == "Error"
    assert again.flow_id == first.flow_id
    assert len(client.search(SearchQuery(tracking_id="inv-0002")).flows) == 1


def test_a_wrong_checksum_is_refused_by_the_pa(client: FlowServiceClient) -> None:
    content = cii("F2026-0003")
    ack = client.deposit(info("inv-0003", sha256="0" * 64), content)
    assert (ack.status, ack.reason_codes) == ("Error", ("ChecksumMismatch",))
    assert not ack.already_existing


def test_flow_info_breaking_the_api_rules_never_leaves() -> None:
    with pytest.raises(InvalidPaRecord, match="tracking_id"):
        info("x" * 37)
    with pytest.raises(InvalidPaRecord, match="processing_rule"):
        info("inv", processing_rule="B2X")
    with pytest.raises(InvalidPaRecord, match="limit: 1 to 100"):
        SearchQuery(limit=101)


def test_search_pages_by_cursor_see_every_flow_once_in_order(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    received = {pa.receive_invoice(cii(f"S-{n}")) for n in range(230)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = client.search(SearchQuery(updated_after=cursor, direction="In", limit=100))
        pages += 1
        assert len(page.flows) <= 100
        assert [f.updated_at for f in page.flows] == sorted(f.updated_at for f in page.flows)
        seen += [f.flow_id for f in page.flows]
        cursor = page.next_cursor
        if not page.more:
            break
    assert pages == 3 and len(seen) == 230 and set(seen) == received
    later = pa.receive_invoice(cii("S-late"))
    assert [f.flow_id for f in client.search(
        SearchQuery(updated_after=cursor, direction="In")).flows] == [later]


def test_the_token_is_cached_until_shortly_before_it_expires(
        pa: PaStandIn, client: FlowServiceClient, clock: FrozenClock) -> None:
    for _ in range(3):
        client.search(SearchQuery(limit=1))
    assert pa.tokens_issued == 1
    clock.moment += timedelta(seconds=pa.token_lifetime) - REFRESH_MARGIN - timedelta(seconds=1)
    client.search(SearchQuery(limit=1))
    assert pa.tokens_issued == 1
    clock.moment += timedelta(seconds=2)
    client.search(SearchQuery(limit=1))
    assert pa.tokens_issued == 2


def test_a_401_fetches_a_fresh_token_once(pa: PaStandIn, client: FlowServiceClient,
                                          auth: ClientCredentials) -> None:
    client.search(SearchQuery(limit=1))
    pa.revoke_tokens()  # the PA forgot our token before its expiry
    client.search(SearchQuery(limit=1))
    assert pa.tokens_issued == 2
    pa.reject_tokens = True
    with pytest.raises(PaRefused) as refused:
        client.search(SearchQuery(limit=1))
    assert (refused.value.status, refused.value.reason) == (401, "HTTP 401 with a fresh token")
    assert pa.tokens_issued == 3  # once more, not a loop


def test_wrong_client_credentials_are_refused_without_the_secret(pa: PaStandIn) -> None:
    wrong = ClientCredentials(pa.token_url, pa.client_id, Secret("not-the-secret-at-all"))
    remember("not-the-secret-at-all")
    with pytest.raises(PaRefused) as refused:
        FlowServiceClient(pa.base_url, wrong).search(SearchQuery())
    assert refused.value.reason == "token refused: HTTP 401"
    assert "not-the-secret" not in repr(refused.value) and "not-the-secret" not in repr(wrong)


def test_a_pa_down_then_up_is_unavailable_then_works(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    content = cii("F2026-0004")
    pa.stop()
    with pytest.raises(PaUnavailable) as down:
        client.deposit(info("inv-0004", content), content)
    assert down.value.reason.startswith("connection failed: ")
    assert client.healthcheck() is False
    pa.start()  # same port
    assert client.healthcheck() is True
    assert client.deposit(info("inv-0004", content), content).status == "Pending"


def test_a_failing_pa_is_named_by_its_status_never_its_text(
        pa: PaStandIn, client: FlowServiceClient, auth: ClientCredentials) -> None:
    token = auth.token()
    remember(token)
    pa.failing = 503
    with pytest.raises(PaUnavailable) as failing:
        client.search(SearchQuery())
    assert failing.value.reason == "HTTP 503"
    assert "detail" not in str(failing.value) and token not in str(failing.value)
    pa.failing = 429
    with pytest.raises(PaUnavailable, match="HTTP 429"):
        client.fetch("any")
    pa.failing = 403
    with pytest.raises(PaRefused, match="HTTP 403"):
        client.siren("123456782")


def test_a_slow_pa_times_out_as_unavailable(pa: PaStandIn, auth: ClientCredentials) -> None:
    auth.token()
    impatient = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=0.2), retries=False)
    pa.delay_seconds = 1.0
    with pytest.raises(PaUnavailable, match=r"^timeout$"):
        FlowServiceClient(pa.base_url, auth, pool=impatient).search(SearchQuery())


def test_a_redirect_is_not_followed_so_the_token_stays_home(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    elsewhere = PaStandIn()  # another host, recording what reaches it
    with elsewhere:
        pa.redirect_to = elsewhere.url
        with pytest.raises(PaUnavailable, match="HTTP 307"):
            client.search(SearchQuery())
        with pytest.raises(PaUnavailable, match="HTTP 307"):
            client.fetch("any")
    assert elsewhere.requests == []


def test_an_answer_beyond_its_bound_is_refused_unread(
        pa: PaStandIn, client: FlowServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"x" * 5000
    ack = client.deposit(info("inv-big", content, flow_syntax="UBL"), content)
    monkeypatch.setattr("chalicelib.adapters.pa.MAX_ANSWER_BYTES", 4096)
    with pytest.raises(PaUnavailable, match="answer larger than 4096 bytes"):
        client.fetch(ack.flow_id)


FLOW = ('{"flowId": "f1", "trackingId": "t1", "flowDirection": "In", "flowSyntax": "CDAR", '
        '"updatedAt": "2026-12-08T10:00:00Z", "acknowledgement": {"status": "Ok"}}')


@pytest.mark.parametrize("garbage", [
    b"<html>not json</html>", b"[]", b'{"results": "many"}',
    b'{"results": [' + ",".join([FLOW] * 2).encode() + b"]}",  # more than asked
    FLOW.replace("2026-12-08T10:00:00Z", "yesterday").join(['{"results": [', "]}"]).encode(),
    FLOW.replace("2026-12-08T10:00:00Z", "2026-12-08T10:00:00").join(
        ['{"results": [', "]}"]).encode(),  # no zone
    FLOW.replace('"Ok"', '"Maybe"').join(['{"results": [', "]}"]).encode(),
    FLOW.replace('"In"', '"Sideways"').join(['{"results": [', "]}"]).encode(),
    FLOW.replace('"f1"', '""').join(['{"results": [', "]}"]).encode(),
    FLOW.replace('"t1"', "42").join(['{"results": [', "]}"]).encode(),
])
def test_a_search_answer_we_cannot_read_is_unavailable_never_a_crash(
        pa: PaStandIn, client: FlowServiceClient, garbage: bytes) -> None:
    pa.garbage = garbage
    with pytest.raises(PaUnavailable) as unreadable:
        client.search(SearchQuery(limit=1))
    assert unreadable.value.reason in {"answer is not JSON", "search answer unreadable",
                                       "answer unreadable: a date",
                                       "answer unreadable: a date without its zone"}


@pytest.mark.parametrize("garbage", [b"{}", b'{"acknowledgement": {"status": "Fine"}}',
                                     b'{"acknowledgement": {"status": "Ok", "details": 3}}',
                                     b'{"acknowledgement": {"status": "Error", "details": '
                                     b'[{"reasonCode": "<script>"}]}}'])
def test_a_deposit_answer_we_cannot_read_is_unavailable(
        pa: PaStandIn, client: FlowServiceClient, garbage: bytes) -> None:
    pa.garbage = garbage
    with pytest.raises(PaUnavailable, match="acknowledgement unreadable"):
        client.deposit(info("inv-x"), b"<x/>")


def test_plain_http_is_refused_off_loopback(auth: ClientCredentials) -> None:
    with pytest.raises(ValueError, match="https"):
        FlowServiceClient("http://pa.example.fr/flow-service", auth)
    with pytest.raises(ValueError, match="https"):
        ClientCredentials("http://pa.example.fr/oauth2/token", "id", Secret("x"))


def test_directory_lookups(client: FlowServiceClient) -> None:
    lines = client.siren("123456782")
    assert {line.addressing_id for line in lines} == {"123456782", "123456782_00011"}
    [facility] = client.siret("12345678200011")
    assert (facility.routing_code, facility.platform) == ("COMPTA", "0001")
    line = client.directory_line("987654321")
    assert line.valid_to is not None and not line.valid_on(line.valid_to + timedelta(days=1))
    with pytest.raises(PaNotFound):
        client.directory_line("000000000")
    with pytest.raises(ValueError, match="9 digits"):
        client.siren("12345678/../x")


def test_an_invoice_moves_from_200_to_212_as_cdar_flows(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    content = cii("F2026-0005")
    client.deposit(info("inv-0005", content), content)
    while pa.advance():
        pass
    events = lifecycle_of(client, "F2026-0005")
    assert [e.code for e in events] == list(HAPPY_PATH)
    result = derive(reversed(events))  # delivered in any order
    assert result.current == 212 and result.anomalies == ()
    assert result.applied[-1].amounts  # MEN per VAT rate


def test_a_late_213_and_doublon_on_the_resubmitted_number(
        pa: PaStandIn, client: FlowServiceClient) -> None:
    content = cii("F2026-0006")
    client.deposit(info("inv-0006", content), content)
    pa.script("inv-0006", [200, 201])
    while pa.advance():
        pass
    pa.emit("inv-0006", 213, ("REJ_SEMAN",))  # hours later
    assert derive(lifecycle_of(client, "F2026-0006")).rejected

    again = client.deposit(info("inv-0006-bis", content), content)  # same number
    assert again.status == "Pending"  # accepted for now: the refusal comes later
    while pa.advance():
        pass
    events = lifecycle_of(client, "F2026-0006")
    assert [(e.code, e.reason_codes) for e in events][-2:] == [(200, ()), (213, ("DOUBLON",))]


def _factur_x(xml: bytes) -> bytes:
    from io import BytesIO

    import facturx
    from reportlab.pdfgen import canvas

    page = BytesIO()
    drawing = canvas.Canvas(page)
    drawing.drawString(72, 720, "Facture")
    drawing.save()
    return bytes(facturx.generate_from_binary(page.getvalue(), xml, flavor="factur-x",
                                              level="en16931", check_xsd=False))


def test_a_factur_x_deposit_is_followed_by_its_invoice_number_on_a_timer() -> None:
    xml = (Path(__file__).parents[1] / "unit" / "samples" / "valid_en16931.xml").read_bytes()
    content = _factur_x(xml)
    ticking = PaStandIn(tick_seconds=0.02)
    with ticking:
        client = FlowServiceClient(ticking.base_url, ClientCredentials(
            ticking.token_url, ticking.client_id, Secret(ticking.client_secret)))
        client.deposit(info("inv-fx", content, flow_syntax="Factur-X",
                            flow_profile="Extended-CTC-FR"), content)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            codes = [e.code for e in lifecycle_of(client, "FA-2025-0001")]
            if codes[-1:] == [212]:
                break
            time.sleep(0.05)
    assert codes == list(HAPPY_PATH)  # the number read from the PDF's embedded CII
