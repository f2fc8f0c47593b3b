"""Bulk issuing through a real SQS queue (moto): every draft checked before
anything is queued, each message issued by the same use case as POST
/invoices, a redelivery issuing nothing twice, a failing message parked."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chalicelib.adapters.aws import sqs_client
from chalicelib.config import Settings
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, Session, get, owner_with_key


@pytest.fixture
def writer(client: Any, frozen: FrozenClock) -> tuple[Session, str]:
    owner, key = owner_with_key(client, frozen, WRITE)
    return owner, key["secret"]


def post_batch(client: Any, secret: str, body: Any) -> Any:
    return client.post("/invoice-batches", body=json.dumps(body), headers={
        "Authorization": f"Bearer {secret}", "Content-Type": "application/json"})


def drain(app_settings: Settings, rounds: int = 6) -> None:
    """What bin/run's dispatcher does: poll the queue, call the same handler."""
    import app as app_module
    from devstack.dispatcher import QueueDispatcher

    dispatcher = QueueDispatcher(app_module, app_settings)
    for _ in range(rounds):
        dispatcher.poll_once()


def empty(sqs: Any, url: str) -> None:
    """Delete what a previous test left (PurgeQueue is allowed once a minute)."""
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=30).get("Messages", []):
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def queue(app_settings: Settings) -> Any:
    sqs = sqs_client(app_settings)
    url = sqs.get_queue_url(QueueName=app_settings.invoice_queue)["QueueUrl"]
    empty(sqs, url)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    yield sqs, url
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30"})


def test_a_batch_is_checked_queued_and_issued_once(
        client: Any, writer: tuple[Session, str], app_settings: Settings, queue: Any) -> None:
    _, secret = writer
    keys = [f"bulk-{i}" for i in range(3)]
    answer = post_batch(client, secret, {"invoices": [
        {"idempotency_key": k, "invoice": recent()} for k in keys]})
    assert answer.status_code == 202, answer.body
    assert answer.json_body["idempotency_keys"] == keys
    drain(app_settings)

    found = {k: get(client, secret, f"/invoices?idempotency_key={k}").json_body["invoices"]
             for k in keys}
    assert all(len(v) == 1 for v in found.values()), found
    assert sorted(v[0]["invoice_number"] for v in found.values()) == [
        "F-000001", "F-000002", "F-000003"]
    assert all(v[0]["archive"].get("objects") for v in found.values())
    listed = get(client, secret, "/invoices").json_body["invoices"]
    assert len(listed) == 3

    # The same batch again (a client retry): nothing new is issued.
    assert post_batch(client, secret, {"invoices": [
        {"idempotency_key": k, "invoice": recent()} for k in keys]}).status_code == 202
    drain(app_settings)
    assert len(get(client, secret, "/invoices").json_body["invoices"]) == 3


def test_one_bad_draft_refuses_the_whole_batch_naming_each_item(
        client: Any, writer: tuple[Session, str], app_settings: Settings, queue: Any) -> None:
    _, secret = writer
    sqs, url = queue
    bad = recent(lines=[{"description": "x", "quantity": "1", "unit_price": "1",
                         "vat_category": "S", "vat_rate": "19.6"}])
    answer = post_batch(client, secret, {"invoices": [
        {"idempotency_key": "ok", "invoice": recent()},
        {"idempotency_key": "bad", "invoice": bad},
        {"idempotency_key": "ok", "invoice": recent(issue_date="2030-01-01",
                                                    due_date="2030-02-01")},
        {"idempotency_key": "x y", "invoice": recent()},
        {"invoice": recent()}]})
    assert answer.status_code == 422
    fields = [v["field"] for v in answer.json_body["violations"]]
    assert fields == ["invoices.1.invoice.lines.0.vat_rate", "invoices.2.idempotency_key",
                      "invoices.2.invoice.issue_date", "invoices.3.idempotency_key",
                      "invoices.4"], fields
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"

    bodies: list[dict[str, Any]] = [
        {}, {"invoices": []}, {"invoices": [{}] * 101}, {"invoices": "x"},
        {"invoices": [{"idempotency_key": "a", "invoice": recent()}], "tenant_id": "x"}]
    for body in bodies:
        assert post_batch(client, secret, body).status_code == 422, body


def test_redelivery_issues_once_and_a_failing_message_is_parked(
        stack: Any, tenant: uuid.UUID, app_settings: Settings, queue: Any) -> None:
    from chalice.test import Client

    import app as app_module
    from chalicelib import runtime

    body = json.dumps({"tenant_id": str(tenant), "idempotency_key": "q-1",
                       "invoice": recent()})
    with Client(app_module.app) as test_client:
        event = test_client.events.generate_sqs_event(message_bodies=[body, body])
        answer = test_client.lambda_.invoke("issue_queued_invoices", event).payload
        assert answer == {"batchItemFailures": []}
    with runtime.database().unit_of_work(tenant) as uow:
        assert [i.invoice_number for i in uow.invoices.latest(10)] == ["F-000001"]

    sqs, url = queue
    dlq = sqs.get_queue_url(QueueName=f"{app_settings.invoice_queue}-dead-letters")["QueueUrl"]
    empty(sqs, dlq)
    unknown = json.dumps({"tenant_id": str(uuid.uuid4()), "idempotency_key": "q-2",
                          "invoice": recent()})
    sqs.send_message(QueueUrl=url, MessageBody=unknown)
    drain(app_settings, rounds=8)
    parked = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["idempotency_key"] for m in parked] == ["q-2"]


def test_scaleway_shaped_trigger_issues_the_message(stack: Any, tenant: uuid.UUID) -> None:
    from functions.issue_invoice import handler

    body = json.dumps({"tenant_id": str(tenant), "idempotency_key": "scw-1",
                       "invoice": recent()})
    first = handler({"httpMethod": "POST", "body": body, "isBase64Encoded": False}, None)
    again = handler({"httpMethod": "POST", "body": body, "isBase64Encoded": False}, None)
    assert (first["statusCode"], again["statusCode"]) == (201, 200)
    assert json.loads(first["body"])["id"] == json.loads(again["body"])["id"]
    refused = handler({"httpMethod": "POST", "body": "{}", "isBase64Encoded": False}, None)
    assert refused["statusCode"] == 422
