"""The append-ledger queue trigger: Chalice handler + Powertools BatchProcessor,
driven with real-shaped events, and end to end through moto's SQS over HTTP."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.aws import sqs_client
from chalicelib.adapters.postgres import Database
from chalicelib.config import Settings
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.verify_ledger import verify_ledger
from devstack.stack import LocalStack

EVENTS = Path(__file__).resolve().parents[2] / "events"


def message(tenant: uuid.UUID | str, **overrides: Any) -> str:
    body = {"tenant_id": str(tenant), "kind": "note.added",
            "payload": {"number": "F-1", "total": "120.00"}}
    body.update(overrides)
    return json.dumps(body)


def invoke(bodies: list[str], stack: LocalStack) -> tuple[dict[str, Any], list[str]]:
    import app as app_module

    with Client(app_module.app) as client:
        event = client.events.generate_sqs_event(message_bodies=bodies,
                                                 queue_name="einvoice-ledger-append")
        ids = [str(uuid.uuid4()) for _ in bodies]
        for record, message_id in zip(event["Records"], ids, strict=True):
            record["messageId"] = message_id
        response = client.lambda_.invoke("append_ledger_entries", event)
    return response.payload, ids


def entries(database: Database, tenant: uuid.UUID) -> list[dict[str, Any]]:
    with database.unit_of_work(tenant) as uow:
        return [json.loads(e.payload)["data"] for e in uow.ledger.entries()]


def test_bad_messages_fail_alone_with_reasons(stack: LocalStack, database: Database,
                                              tenant: uuid.UUID,
                                              service_logs: pytest.LogCaptureFixture) -> None:
    bodies = [
        message(tenant, payload={"number": "F-1"}),
        "{not json",
        message(uuid.uuid4()),                                  # unknown tenant
        message(tenant, payload={"total": 12.5}),               # float money
        message(tenant, kind="Invoice"),                        # bad kind
        json.dumps({"tenant_id": str(tenant), "payload": {}}),  # kind missing
        message(tenant, payload={"note": "a\u0000b"}),          # NUL: PostgreSQL cannot store it
        message(tenant, idempotency_key="é" * 150),             # key outside visible ASCII
        message(tenant).replace('"number": "F-1"', '"x": 1, "x": 2'),  # repeated key
        message(tenant).replace('"F-1"', 'NaN'),                          # not JSON
        message(tenant, payload={"number": "F-2"}),
    ]
    payload, ids = invoke(bodies, stack)
    failed = [f["itemIdentifier"] for f in payload["batchItemFailures"]]
    assert failed == ids[1:10]
    assert entries(database, tenant) == [{"number": "F-1"}, {"number": "F-2"}]
    refused = {r.__dict__["message_id"]: r.__dict__["reason"] for r in service_logs.records
               if r.getMessage() == "ledger message refused"}
    assert set(refused) == set(ids[1:10])
    assert not any("internal error" in why for why in refused.values())
    assert refused[ids[2]] == "NotFound: tenant_id: no such tenant"
    assert "payload.total" in refused[ids[3]] and "decimal strings" in refused[ids[3]]
    assert refused[ids[4]].startswith("InvalidInput: kind:")
    assert "kind: is required" in refused[ids[5]]
    assert "payload.note: must not contain the NUL character" in refused[ids[6]]
    assert refused[ids[7]].startswith("InvalidInput: idempotency_key:")
    assert "repeats the key 'x'" in refused[ids[8]]
    assert "body: NaN is not JSON" in refused[ids[9]]
    assert refused[ids[1]] == "InvalidInput: body: is not valid JSON"


@pytest.mark.parametrize("kind", ["invoice.issued", "credit_note.issued", "invoice.archived",
                                  "closing.sealed", "quote.created", "payment.received"])
def test_the_queue_never_writes_the_services_kinds(stack: LocalStack, database: Database,
                                                    tenant: uuid.UUID, kind: str,
                                                    service_logs: pytest.LogCaptureFixture
                                                    ) -> None:
    """The forged million: a message naming a fiscal kind (or any kind of the
    service's own namespaces) fails alone, by its `kind`, and nothing is
    appended; the engine would refuse a fiscal one anyway
    (test_ledger_entry_rules.py)."""
    forged = message(tenant, kind=kind, payload={"invoice_number": "F-9", "totals": {
        "tax_exclusive_amount": "1000000.00", "tax_total": "0.00",
        "tax_inclusive_amount": "1000000.00"}})
    payload, ids = invoke([forged, message(tenant)], stack)
    assert [f["itemIdentifier"] for f in payload["batchItemFailures"]] == [ids[0]]
    assert entries(database, tenant) == [{"number": "F-1", "total": "120.00"}]
    [why] = [r.__dict__["reason"] for r in service_logs.records
             if r.getMessage() == "ledger message refused"]
    assert why.startswith(f"InvalidInput: kind: {kind} is written only by the service's own "
                          "use cases")
    assert "this queue takes only other kinds" in why


def test_a_batch_where_everything_fails_is_reported_not_raised(stack: LocalStack) -> None:
    payload, ids = invoke(["[]", "null"], stack)
    assert [f["itemIdentifier"] for f in payload["batchItemFailures"]] == ids


def test_redelivery_of_the_same_message_appends_once(stack: LocalStack, database: Database,
                                                     tenant: uuid.UUID) -> None:
    import app as app_module

    body = message(tenant)
    with Client(app_module.app) as client:
        event = client.events.generate_sqs_event(message_bodies=[body])
        event["Records"][0]["messageId"] = str(uuid.uuid4())
        for _ in range(3):
            response = client.lambda_.invoke("append_ledger_entries", event)
            assert response.payload == {"batchItemFailures": []}
    assert len(entries(database, tenant)) == 1


def test_idempotency_key_reused_with_other_content_is_refused(
        stack: LocalStack, database: Database, tenant: uuid.UUID) -> None:
    first = message(tenant, idempotency_key="invoice:F-1")
    same = message(tenant, idempotency_key="invoice:F-1")
    other = message(tenant, idempotency_key="invoice:F-1", payload={"number": "F-9"})
    payload, ids = invoke([first, same, other], stack)
    assert [f["itemIdentifier"] for f in payload["batchItemFailures"]] == [ids[2]]
    assert entries(database, tenant) == [{"number": "F-1", "total": "120.00"}]


def test_sample_event_is_accepted(stack: LocalStack, database: Database) -> None:
    import app as app_module

    event = json.loads((EVENTS / "sqs_append_ledger.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    tenant = create_tenant("Sample", database.unit_of_work)
    body["tenant_id"] = str(tenant)
    event["Records"][0]["body"] = json.dumps(body)
    with Client(app_module.app) as client:
        response = client.lambda_.invoke("append_ledger_entries", event)
    assert response.payload == {"batchItemFailures": []}
    assert entries(database, tenant) == [body["payload"]]


def test_through_real_sqs_with_dispatcher_and_dead_letters(
        stack: LocalStack, app_settings: Settings, database: Database,
        tenant: uuid.UUID) -> None:
    import app as app_module
    from devstack.dispatcher import QueueDispatcher

    sqs = sqs_client(app_settings)
    url = sqs.get_queue_url(QueueName=app_settings.ledger_queue)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"{app_settings.ledger_queue}-dead-letters")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    try:
        sqs.send_message(QueueUrl=url, MessageBody=message(tenant, payload={"n": 1}))
        sqs.send_message(QueueUrl=url, MessageBody=message(tenant, payload={"x": 0.1}))
        sqs.send_message(QueueUrl=url, MessageBody=message(tenant, payload={"n": 2}))
        dispatcher = QueueDispatcher(app_module, app_settings)
        for _ in range(12):
            dispatcher.poll_once()
        assert sorted(e["n"] for e in entries(database, tenant)) == [1, 2]
        parked = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
        assert [json.loads(m["Body"])["payload"] for m in parked] == [{"x": 0.1}]
        left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert left["ApproximateNumberOfMessages"] == "0"
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "10"})
    assert verify_ledger(tenant, database.snapshot).ok


def test_plain_function_handler_scaleway_shape(stack: LocalStack, database: Database) -> None:
    from functions.append_ledger import handler

    tenant = create_tenant("Scaleway SAS", database.unit_of_work)
    event = json.loads((EVENTS / "scaleway_queue_append_ledger.json").read_text())
    body = json.loads(event["body"])
    body["tenant_id"] = str(tenant)
    event["body"] = json.dumps(body)
    ok = handler(event, None)
    assert ok["statusCode"] == 200 and json.loads(ok["body"])["seq"] == 1
    assert handler(event, None)["statusCode"] == 200  # retried delivery: same entry
    assert len(entries(database, tenant)) == 1

    bad = dict(event, body=json.dumps({**body, "payload": {"total": 1.5}, "kind": "x"}))
    refused = handler(bad, None)
    assert refused["statusCode"] == 422
    fields = {v["field"] for v in json.loads(refused["body"])["violations"]}
    assert fields == {"kind", "payload.total"}  # every broken rule, not just the first

    fiscal = handler(dict(event, body=json.dumps({**body, "kind": "invoice.issued"})), None)
    assert fiscal["statusCode"] == 422
    assert [v["field"] for v in json.loads(fiscal["body"])["violations"]] == ["kind"]

    unknown = dict(event, body=json.dumps({**body, "tenant_id": str(uuid.uuid4())}))
    assert handler(unknown, None)["statusCode"] == 404

    keyless = {k: v for k, v in body.items() if k != "idempotency_key"}
    no_key = handler(dict(event, body=json.dumps(keyless)), None)
    assert no_key["statusCode"] == 422
    assert json.loads(no_key["body"])["violations"][0]["field"] == "idempotency_key"
    assert len(entries(database, tenant)) == 1


def test_plain_function_hides_server_errors(stack: LocalStack, database: Database,
                                            monkeypatch: pytest.MonkeyPatch,
                                            service_logs: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A fault answers 500 and is logged by type and SQLSTATE only: the
    payload (here an IBAN) never reaches the logs or the response."""
    from functions.append_ledger import handler

    tenant = create_tenant("Faulty SAS", database.unit_of_work)
    body = {"tenant_id": str(tenant), "kind": "note.added", "idempotency_key": "p-1",
            "payload": {"iban": "FR7630006000011234567890189"}}

    from pg8000.exceptions import DatabaseError

    def failing(request: Any) -> Any:
        raise DatabaseError({"C": "XX000", "M": "boom near FR7630006000011234567890189"})

    monkeypatch.setattr("functions.append_ledger.append_entry", failing)
    response = handler({"body": json.dumps(body)}, None)
    out = capsys.readouterr()
    logged = [(r.getMessage(), getattr(r, "reason", "")) for r in service_logs.records]
    assert response["statusCode"] == 500
    assert ("ledger append failed", "DatabaseError, SQLSTATE XX000") in logged
    everything = response["body"] + out.out + out.err + service_logs.text + repr(logged)
    assert "FR76" not in everything


def test_plain_function_handler_accepts_an_sqs_batch(stack: LocalStack,
                                                     database: Database) -> None:
    from functions.append_ledger import handler

    tenant = create_tenant("Batch SAS", database.unit_of_work)
    event = json.loads((EVENTS / "sqs_append_ledger.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, "tenant_id": str(tenant)})
    assert handler(event, None) == {"batchItemFailures": []}
    assert entries(database, tenant) == [body["payload"]]
