"""The lifecycle poller against the real stack and the PA stand-in over HTTP:
an invoice issued here, deposited on the stand-in with trackingId = its id,
its statuses polled from the stored cursor into `status.changed` entries, each
once, and GET /invoices/{id}/lifecycle derived from them (docs/pa.md#the-poller)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pg8000.native
import pytest

from chalicelib import runtime
from chalicelib.adapters.pa import ClientCredentials, FlowServiceClient
from chalicelib.documents.cdar import PARTY_STATUS, PLATFORM_STATUS, Party, build_status
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.pa_flows import FlowInfo
from chalicelib.entrypoints.schedules import poll_pa
from chalicelib.secret import Secret
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.pa_lifecycle import poll_tenant
from devstack.pa_standin import HAPPY_PATH, PaStandIn
from tests.builders import recent
from tests.conftest import Connect
from tests.fakes import FrozenClock
from tests.integration.web import get, issue, owner_with_key

SCOPES = ["invoices:write", "invoices:read", "ledger:read"]


@pytest.fixture
def pa_client(pa: PaStandIn, monkeypatch: pytest.MonkeyPatch) -> FlowServiceClient:
    auth = ClientCredentials(pa.token_url, pa.client_id, Secret(pa.client_secret),
                             clock=FrozenClock())
    client = FlowServiceClient(pa.base_url, auth)
    monkeypatch.setattr(runtime, "pa_client", lambda: client)
    return client


class Seller:
    """A tenant with an API key, and its invoices deposited on the stand-in."""

    def __init__(self, client: Any, frozen: FrozenClock) -> None:
        owner, key = owner_with_key(client, frozen, SCOPES)
        self.client, self.secret = client, key["secret"]
        self.tenant = uuid.UUID(owner.body["tenant_id"])

    def invoice(self, pa_client: FlowServiceClient) -> dict[str, Any]:
        """Issued over HTTP and deposited with trackingId = its id."""
        issued = issue(self.client, self.secret, recent(), key=uuid.uuid4().hex)
        assert issued.status_code == 201, issued.json_body
        body: dict[str, Any] = issued.json_body
        content = cii(body["invoice_number"])
        ack = pa_client.deposit(FlowInfo(body["id"], f"{body['invoice_number']}.xml", "B2B",
                                         "CII", "CIUS", hashlib.sha256(content).hexdigest()),
                                content)
        assert ack.status == "Pending"
        return body

    def lifecycle(self, invoice_id: str) -> Any:
        return get(self.client, self.secret, f"/invoices/{invoice_id}/lifecycle")

    def poll(self, pa_client: FlowServiceClient, **options: Any) -> dict[str, int]:
        return poll_tenant(self.tenant, pa_client, runtime.pa_lifecycle_units(),
                           FrozenClock(), **options)


def cii(number: str) -> bytes:
    return (
        '<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:'
        'CrossIndustryInvoice:100" xmlns:ram="urn:un:unece:uncefact:data:standard:'
        'ReusableAggregateBusinessInformationEntity:100"><rsm:ExchangedDocument>'
        f"<ram:ID>{number}</ram:ID></rsm:ExchangedDocument></rsm:CrossIndustryInvoice>"
    ).encode()


def status(number: str, code: int, at: datetime, message_id: str | None = None) -> bytes:
    """A CDAR as a PA sends it, for one of our invoice numbers."""
    return build_status(
        message_id=message_id or f"CDV-{uuid.uuid4().hex[:20]}", issued_at=at,
        invoice_number=number, invoice_date=at.date(), code=code,
        issuer=Party("999999999", "WK"), recipients=[Party("999999999", "SE")],
        reason_codes=("CMD_ERR",) if code in (206, 207, 208, 210, 213) else (),
        amounts=((Decimal("20.00"), Decimal("120.00")),) if code == 212 else (),
        type_code=PLATFORM_STATUS if code in (200, 201, 202, 203, 213) else PARTY_STATUS)


def run_script(pa: PaStandIn) -> None:
    while pa.advance():
        pass


def status_entries(superuser: Connect, tenant: uuid.UUID, invoice_id: str) -> list[Any]:
    conn = superuser()
    try:
        return [json.loads(p)["data"] for [p] in conn.run(
            "SELECT payload FROM ledger_entries WHERE tenant_id = :t AND kind = "
            "'status.changed' AND payload::jsonb -> 'data' ->> 'invoice_id' = :i ORDER BY seq",
            t=str(tenant), i=invoice_id)]
    finally:
        conn.close()


def messages(superuser: Connect, tenant: uuid.UUID) -> list[tuple[str, str, str | None]]:
    conn = superuser()
    try:
        return [tuple(r) for r in conn.run(
            "SELECT verdict, rule, message_id FROM pa_status_messages WHERE tenant_id = :t "
            "ORDER BY received_at, flow_id, position", t=str(tenant))]
    finally:
        conn.close()


def test_statuses_200_to_212_come_back_in_order_each_in_the_ledger_and_the_chain_verifies(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient,
        superuser: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    assert seller.lifecycle(invoice["id"]).json_body["status"] is None
    run_script(pa)

    bystander = Seller(client, frozen)  # issued, never deposited: nothing of it on the PA
    assert issue(client, bystander.secret, recent(), key="b").status_code == 201
    tenants = runtime.pa_tenants()
    assert {seller.tenant, bystander.tenant} <= set(tenants)  # every tenant that issued
    other = bystander.tenant
    # (Only two of the test database's tenants, so the run fits its budget.)
    monkeypatch.setattr(runtime, "pa_tenants", lambda: [other, seller.tenant])
    result = poll_pa(None)
    assert result["tenants"] == 2 and result["applied"] == len(HAPPY_PATH)

    answer = seller.lifecycle(invoice["id"])
    assert answer.status_code == 200, answer.json_body
    body = answer.json_body
    assert body["status"] == {"code": 212, "label": "Encaissée"}
    assert [h["code"] for h in body["history"]] == list(HAPPY_PATH)
    assert body["history"][0]["label"] == "Déposée"
    assert body["history"][-1]["amounts"] == [{"vat_rate": "20.00", "amount": "120.00"}]
    assert body["anomalies"] == [] and body["rejected"] is False
    entries = status_entries(superuser, seller.tenant, invoice["id"])
    assert [e["code"] for e in entries] == list(HAPPY_PATH)
    assert all(len(e["message_sha256"]) == 64 and e["flow_id"] for e in entries)
    assert [h["ledger_seq"] for h in body["history"]] == sorted(h["ledger_seq"]
                                                                for h in body["history"])
    verified = get(client, seller.secret, "/ledger/verify")
    assert verified.status_code == 200 and verified.json_body["ok"] is True

    # The cursor is stored: a second poll takes nothing again.
    assert seller.poll(pa_client)["flows"] == 0
    assert len(status_entries(superuser, seller.tenant, invoice["id"])) == len(HAPPY_PATH)


def test_100_deliveries_duplicated_and_out_of_order_give_one_effect_per_status(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient,
        superuser: Connect) -> None:
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    pa.script(invoice["id"], [])
    number, start = invoice["invoice_number"], datetime(2026, 12, 1, 9, tzinfo=UTC)
    # Each status of the path once as its own message, then again: the same
    # message (same bytes, another flow) and the same status under another id.
    first = [status(number, code, start + timedelta(minutes=i))
             for i, code in enumerate(HAPPY_PATH)]
    again = [status(number, code, start + timedelta(minutes=i, seconds=30))
             for i, code in enumerate(HAPPY_PATH)]
    deliveries = first + again + [random.Random(16).choice(first + again) for _ in range(84)]
    random.Random(3).shuffle(deliveries)
    assert len(deliveries) == 100
    for content in deliveries:
        pa.deliver(content, tracking_id=invoice["id"])
    seller.poll(pa_client)
    seller.poll(pa_client)  # nothing left: every flow taken once

    body = seller.lifecycle(invoice["id"]).json_body
    assert body["status"]["code"] == 212 and body["anomalies"] == []
    assert [h["code"] for h in body["history"]] == list(HAPPY_PATH)
    entries = status_entries(superuser, seller.tenant, invoice["id"])
    assert sorted(e["code"] for e in entries) == sorted(HAPPY_PATH)  # one entry per status
    verdicts = [v for v, _, _ in messages(superuser, seller.tenant)]
    assert len(verdicts) == 100 and verdicts.count("duplicate") == 100 - len(HAPPY_PATH)


def test_a_late_213_after_200_leaves_the_number_consumed_with_the_correction_path(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient) -> None:
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    pa.script(invoice["id"], [200])
    run_script(pa)
    seller.poll(pa_client)
    assert seller.lifecycle(invoice["id"]).json_body["status"]["code"] == 200

    pa.emit(invoice["id"], 213, ("DOUBLON",))  # hours later
    seller.poll(pa_client)
    body = seller.lifecycle(invoice["id"]).json_body
    assert body["status"] == {"code": 213, "label": "Rejetée"}
    assert body["rejected"] is True and body["number_consumed"] is True
    assert body["history"][-1]["reason_codes"] == ["DOUBLON"]
    assert "credit note" in body["correction"] and "never deposit this number again" in body[
        "correction"]


def test_a_disallowed_transition_is_recorded_as_an_anomaly_and_not_applied(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient,
        superuser: Connect) -> None:
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    pa.script(invoice["id"], [200, 201, 202, 203, 210])
    run_script(pa)
    pa.emit(invoice["id"], 212)  # paid after a refusal: the table does not allow it
    seller.poll(pa_client)

    body = seller.lifecycle(invoice["id"]).json_body
    assert body["status"]["code"] == 210
    assert [h["code"] for h in body["history"]] == [200, 201, 202, 203, 210]
    [anomaly] = body["anomalies"]
    assert anomaly["code"] == 212 and anomaly["rule"] == "not allowed after 210"
    assert [v for v, _, _ in messages(superuser, seller.tenant)][-1] == "anomaly"


@pytest.mark.parametrize("hostile", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;">]><l>&c;</l>',
    b"<r>" + b"a" * (300 * 1024) + b"</r>",
    b"not xml at all",
], ids=["xxe", "billion-laughs", "oversize", "garbage"])
def test_a_hostile_cdar_is_refused_and_recorded_and_other_flows_still_processed(
        hostile: bytes, client: Any, frozen: FrozenClock, pa: PaStandIn,
        pa_client: FlowServiceClient, superuser: Connect) -> None:
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    pa.script(invoice["id"], [200])
    run_script(pa)
    pa.deliver(hostile, tracking_id=invoice["id"])
    pa.emit(invoice["id"], 201)

    counts = seller.poll(pa_client)
    assert counts["refused"] == 1
    [refused] = [m for m in messages(superuser, seller.tenant) if m[0] == "refused"]
    assert refused[1].startswith("CDAR refused: ") and refused[2] is None
    assert "passwd" not in refused[1]
    assert seller.lifecycle(invoice["id"]).json_body["status"]["code"] == 201


def test_another_tenants_flows_cursor_and_lifecycle_are_invisible(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient,
        superuser: Connect, as_app: Connect) -> None:
    victim, attacker = Seller(client, frozen), Seller(client, frozen)
    victims = victim.invoice(pa_client)
    own = attacker.invoice(pa_client)
    assert own["invoice_number"] == victims["invoice_number"]  # each series starts at 1
    run_script(pa)
    # A status flow with no trackingId naming the shared number: matched by
    # no one while the PA is shared (by_number off).
    pa.deliver(status(victims["invoice_number"], 213, datetime.now(UTC)))
    attacker.poll(pa_client)
    victim.poll(pa_client)

    assert attacker.lifecycle(victims["id"]).status_code == 404
    mine = attacker.lifecycle(own["id"]).json_body
    assert [h["code"] for h in mine["history"]] == list(HAPPY_PATH)  # its own, not the victim's
    assert not any(m[0] == "anomaly" for m in messages(superuser, victim.tenant))
    victims_messages = {m for _, _, m in messages(superuser, victim.tenant)}
    assert victims_messages.isdisjoint(m for _, _, m in messages(superuser, attacker.tenant))
    assert victim.lifecycle(victims["id"]).json_body["status"]["code"] == 212

    conn = as_app()
    try:
        conn.run("BEGIN")
        conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(attacker.tenant))
        for table in ("pa_cursors", "pa_status_messages"):
            tenants = {str(t) for [t] in conn.run(f"SELECT DISTINCT tenant_id FROM {table}")}
            assert tenants == {str(attacker.tenant)}, table
        with pytest.raises(pg8000.native.DatabaseError):
            conn.run("INSERT INTO pa_cursors (tenant_id, updated_after) VALUES (:t, now())",
                     t=str(victim.tenant))
        conn.run("ROLLBACK")
    finally:
        conn.close()


def test_the_schedule_without_a_pa_does_nothing() -> None:
    with pytest.raises(runtime.PaNotConfigured):  # the test stack's: no PA
        runtime.pa_client()
    assert poll_pa(None) == {"tenants": 0, "flows": 0, "applied": 0, "anomaly": 0,
                             "refused": 0}


def test_the_generic_queue_and_the_engine_refuse_status_changed(
        client: Any, frozen: FrozenClock, superuser: Connect) -> None:
    seller = Seller(client, frozen)
    with pytest.raises(ValueError, match="written only by the service"):
        AppendRequest(tenant_id=seller.tenant, kind="status.changed", payload={"code": 212})
    with pytest.raises(ValueError, match="written only by the service"):
        AppendRequest(tenant_id=seller.tenant, kind="status.invented", payload={})
    # Past the queue's check, the engine: a status for no invoice of the tenant.
    request = AppendRequest.model_construct(
        tenant_id=seller.tenant, kind="status.changed", idempotency_key=None,
        payload={"invoice_id": str(uuid.uuid4()), "invoice_number": "F-1", "code": 212})
    with pytest.raises((pg8000.native.DatabaseError, InvalidInput)) as refused:
        append_ledger(request, runtime.database().unit_of_work, FrozenClock())
    assert "EL006" in str(refused.value)
    request = AppendRequest.model_construct(tenant_id=seller.tenant, kind="status.invented",
                                            idempotency_key=None, payload={})
    with pytest.raises((pg8000.native.DatabaseError, InvalidInput)) as invented:
        append_ledger(request, runtime.database().unit_of_work, FrozenClock())
    assert "23514" in str(invented.value)


def test_received_status_messages_cannot_be_changed_nor_deleted(
        client: Any, frozen: FrozenClock, pa: PaStandIn, pa_client: FlowServiceClient,
        as_owner: Connect, as_app: Connect) -> None:
    """The record of what the PA said is kept as received, even by the owner."""
    seller = Seller(client, frozen)
    invoice = seller.invoice(pa_client)
    pa.script(invoice["id"], [200])
    run_script(pa)
    seller.poll(pa_client)
    for connect, statement in itertools.product((as_owner, as_app), (
            "UPDATE pa_status_messages SET verdict = 'anomaly'",
            "DELETE FROM pa_status_messages", "TRUNCATE pa_status_messages")):
        conn = connect()
        try:
            conn.run("BEGIN")
            conn.run("SELECT set_config('app.tenant_id', :t, true)", t=str(seller.tenant))
            with pytest.raises(pg8000.native.DatabaseError):
                conn.run(statement)
            conn.run("ROLLBACK")
        finally:
            conn.close()
    assert seller.lifecycle(invoice["id"]).json_body["status"]["code"] == 200
