"""A correlation id on every trigger: the structured log lines each one
writes carry it, and nothing of it is left for the next invocation or message.

The lines are captured as printed (Powertools' JSON, through the service's
formatter), so what is asserted is what an operator searches.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.aws import sqs_client
from chalicelib.config import Settings
from chalicelib.logs import logger
from devstack.dispatcher import LocalContext, poll_step, scheduled_event
from devstack.objectstore import create_queue_with_dead_letters
from devstack.stack import LOCAL_REGION, LocalStack
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, owner_with_key


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def saying(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["message"] == message]


@pytest.fixture
def logs() -> Iterator[_Lines]:
    handler = _Lines()
    handler.setFormatter(logger.registered_formatter)  # exactly what is printed
    logging.getLogger("einvoice").addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger("einvoice").removeHandler(handler)


def nothing_left() -> None:
    """No id and no message key survive an invocation."""
    assert logger.get_correlation_id() is None
    assert "message_id" not in logger.get_current_keys()


@pytest.fixture
def queue(app_settings: Settings) -> tuple[Any, str, str]:
    """A queue of this test's own (its dead-letter queue too), short visibility."""
    sqs = sqs_client(app_settings)
    url = create_queue_with_dead_letters(sqs, f"correlation-{uuid.uuid4().hex[:12]}",
                                         visibility_seconds=1)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return sqs, url, arn


def ledger_message(tenant: uuid.UUID, **payload: Any) -> str:
    return json.dumps({"tenant_id": str(tenant), "kind": "note.added",
                       "payload": payload or {"n": 1}})


def test_a_ledger_message_is_logged_under_its_producers_id_else_its_own(
        stack: LocalStack, tenant: uuid.UUID, queue: tuple[Any, str, str],
        logs: _Lines) -> None:
    import app as app_module

    sqs, url, arn = queue
    sqs.send_message(QueueUrl=url, MessageBody=ledger_message(tenant, n=1), MessageAttributes={
        "correlation_id": {"DataType": "String", "StringValue": "producer-42"}})
    plain = sqs.send_message(QueueUrl=url, MessageBody=ledger_message(tenant, n=2))["MessageId"]
    bad = sqs.send_message(QueueUrl=url, MessageBody="{not json")["MessageId"]
    received, failed = poll_step(sqs, url, arn, LOCAL_REGION, app_module.append_ledger_entries,
                                 batch_size=10, function_name="append_ledger_entries")
    assert received == 3 and failed == {bad}
    appended = {line["seq"]: line for line in logs.saying("ledger entry appended")}
    assert appended[1]["correlation_id"] == "producer-42"
    assert appended[1]["message_id"] != "producer-42"
    assert appended[2]["correlation_id"] == plain == appended[2]["message_id"]
    [refused] = logs.saying("ledger message refused")
    assert refused["correlation_id"] == bad == refused["message_id"]
    nothing_left()


@pytest.fixture
def invoice_queue(app_settings: Settings) -> Iterator[tuple[Any, str, str]]:
    sqs = sqs_client(app_settings)
    url = sqs.get_queue_url(QueueName=app_settings.invoice_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=30).get("Messages", []):
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    yield sqs, url, arn


def test_the_batch_request_id_follows_each_queued_invoice_into_the_consumer(
        client: Any, frozen: FrozenClock, invoice_queue: tuple[Any, str, str],
        logs: _Lines) -> None:
    import app as app_module

    sqs, url, arn = invoice_queue
    _, key = owner_with_key(client, frozen, WRITE)
    answer = client.post("/invoice-batches", headers={
        "Authorization": f"Bearer {key['secret']}", "Content-Type": "application/json"},
        body=json.dumps({"invoices": [{"idempotency_key": f"corr-{i}", "invoice": recent()}
                                      for i in range(2)]}))
    assert answer.status_code == 202, answer.body
    request_id = answer.headers["X-Request-Id"]
    nothing_left()  # the request's id ended with the request

    peeked = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)[
        "Messages"]
    assert [json.loads(m["Body"])["correlation_id"] for m in peeked] == [request_id] * 2
    received, failed = poll_step(sqs, url, arn, LOCAL_REGION, app_module.issue_queued_invoices,
                                 batch_size=5, function_name="issue_queued_invoices")
    assert received == 2 and failed == set()
    issued = logs.saying("invoice issued from the queue")
    assert [line["correlation_id"] for line in issued] == [request_id] * 2
    assert {line["message_id"] for line in issued} == {m["MessageId"] for m in peeked}
    nothing_left()


def test_scaleways_one_message_path_binds_the_producer_or_the_call_id(
        stack: LocalStack, tenant: uuid.UUID, logs: _Lines,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.append_ledger import handle as append
    from functions.issue_invoice import handle as issue

    body = json.dumps({"tenant_id": str(tenant), "kind": "note.added",
                       "idempotency_key": f"scw-{uuid.uuid4()}", "payload": {"n": 1}})
    assert append({"body": body, "headers": {"X-Request-Id": "scw-call-1"}},
                  None)["statusCode"] == 200
    nothing_left()

    def failing(*_: Any) -> Any:
        raise OSError("the archive is down")

    monkeypatch.setattr("functions.issue_invoice.issue_from_queue", failing)
    message = {"tenant_id": str(tenant), "idempotency_key": "k", "invoice": recent()}
    with_id = issue({"body": json.dumps({**message, "correlation_id": "batch-request-7"}),
                     "headers": {"X-Request-Id": "scw-call-2"}}, None)
    without = issue({"body": json.dumps(message), "headers": {"X-Request-Id": "scw-call-3"}},
                    None)
    assert with_id["statusCode"] == without["statusCode"] == 500
    assert [line["correlation_id"] for line in logs.saying("queued invoice failed")] == [
        "batch-request-7", "scw-call-3"]
    nothing_left()


def test_a_schedule_run_is_correlated_by_its_event_id_on_aws(stack: LocalStack,
                                                             logs: _Lines) -> None:
    import app as app_module

    event = scheduled_event("retention_purge", LOCAL_REGION)
    app_module.retention_purge(event, LocalContext("retention_purge", "req-1",
                                                   deadline=time.monotonic() + 30))
    [line] = logs.saying("retention purge")
    assert line["correlation_id"] == event["id"]
    nothing_left()


def test_a_schedule_run_on_scaleway_has_the_call_id_else_a_fresh_one(stack: LocalStack,
                                                                     logs: _Lines) -> None:
    from functions.retention_purge import handle

    assert handle({"body": "", "headers": {"X-Request-Id": "cron-run-1"}},
                  None)["statusCode"] == 200
    handle({"body": ""}, None)
    handle({"body": ""}, None)
    ids = [line["correlation_id"] for line in logs.saying("retention purge")]
    assert ids[0] == "cron-run-1"
    assert len(set(ids)) == 3 and all(uuid.UUID(i) for i in ids[1:])
    nothing_left()


def test_an_id_that_would_spoil_a_log_line_is_not_taken(stack: LocalStack,
                                                        logs: _Lines) -> None:
    from functions.retention_purge import handle

    handle({"body": "", "headers": {"x-request-id": "bad\nid" + "x" * 200}}, None)
    [line] = logs.saying("retention purge")
    assert uuid.UUID(line["correlation_id"])
