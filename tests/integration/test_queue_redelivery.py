"""A failed queue message is never lost: proof on the real moto SQS server.

Each test has its own queue whose redrive policy sends a message to its
dead-letter queue after 2 receives, with a 1-second visibility timeout. The
app's SQS handler is driven the way Lambda's poller does it with
ReportBatchItemFailures (devstack.dispatcher.poll_step, the step bin/run's
dispatcher runs): receive, invoke, delete only what batchItemFailures does not
list. On Scaleway's one-message path the proof is the status: 300 or more
makes the trigger deliver the message again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib import runtime
from chalicelib.adapters.aws import sqs_client
from chalicelib.adapters.postgres import Database
from chalicelib.config import Settings
from devstack.dispatcher import poll_step
from devstack.objectstore import create_queue_with_dead_letters
from devstack.stack import LOCAL_REGION, LocalStack
from tests.builders import recent

MAX_RECEIVES = 2
VISIBILITY = 1


class Queue:
    def __init__(self, app_settings: Settings) -> None:
        self.sqs = sqs_client(app_settings)
        name = f"redrive-{uuid.uuid4().hex[:12]}"
        self.url = create_queue_with_dead_letters(self.sqs, name, max_receives=MAX_RECEIVES,
                                                  visibility_seconds=VISIBILITY)
        self.arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=[
            "QueueArn"])["Attributes"]["QueueArn"]
        self.dead = self.sqs.get_queue_url(QueueName=f"{name}-dead-letters")["QueueUrl"]

    def send(self, body: str) -> str:
        message_id: str = self.sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]
        return message_id

    def poll(self, handler: Callable[..., Any]) -> tuple[int, set[str]]:
        return poll_step(self.sqs, self.url, self.arn, LOCAL_REGION, handler, batch_size=10,
                         function_name="append_ledger_entries")

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) in the queue itself."""
        found = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])[
            "Attributes"]
        return (int(found["ApproximateNumberOfMessages"]),
                int(found["ApproximateNumberOfMessagesNotVisible"]))

    def dead_letters(self) -> dict[str, str]:
        """Message id -> body of everything parked in the dead-letter queue."""
        found = self.sqs.receive_message(QueueUrl=self.dead, MaxNumberOfMessages=10,
                                         AttributeNames=["All"])
        return {m["MessageId"]: m["Body"] for m in found.get("Messages", [])}


@pytest.fixture
def queue(app_settings: Settings) -> Queue:
    return Queue(app_settings)


def after_visibility_timeout() -> None:
    time.sleep(VISIBILITY + 0.5)


def ledger_message(tenant: uuid.UUID, payload: dict[str, Any]) -> str:
    return json.dumps({"tenant_id": str(tenant), "kind": "note.added", "payload": payload})


def entries(database: Database, tenant: uuid.UUID) -> list[dict[str, Any]]:
    with database.unit_of_work(tenant) as uow:
        return [json.loads(e.payload)["data"] for e in uow.ledger.entries()]


@pytest.fixture
def internal_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Appending a payload marked {"fail": "internal"} hits a database fault
    (a serialization failure: not the message's fault, so retried)."""
    real = runtime.append_entry

    def append(request: Any) -> Any:
        if request.payload.get("fail") == "internal":
            raise DatabaseError({"C": "40001", "M": "could not serialize access"})
        return real(request)

    monkeypatch.setattr(runtime, "append_entry", append)


def test_good_messages_are_deleted_failed_ones_redelivered_then_dead_lettered(
        stack: LocalStack, database: Database, tenant: uuid.UUID, queue: Queue,
        internal_failure: None) -> None:
    import app as app_module

    good = [queue.send(ledger_message(tenant, {"n": n})) for n in (1, 2, 3)]
    bad = queue.send(ledger_message(tenant, {"total": 12.5}))  # float money: refused
    internal = queue.send(ledger_message(tenant, {"fail": "internal"}))

    received, failed = queue.poll(app_module.append_ledger_entries)
    assert received == 5 and failed == {bad, internal}
    assert sorted(e["n"] for e in entries(database, tenant)) == [1, 2, 3]
    assert queue.counts() == (0, 2)  # the good ones deleted; the failed ones in flight
    assert queue.poll(app_module.append_ledger_entries) == (0, set())  # not visible yet

    after_visibility_timeout()
    received, failed = queue.poll(app_module.append_ledger_entries)  # 2nd receive
    assert received == 2 and failed == {bad, internal}

    after_visibility_timeout()
    assert queue.poll(app_module.append_ledger_entries) == (0, set())  # 3rd: redriven
    assert queue.counts() == (0, 0)
    parked = queue.dead_letters()
    assert set(parked) == {bad, internal}
    assert json.loads(parked[bad])["payload"] == {"total": 12.5}
    assert not set(good) & set(parked)
    # Redelivery appended nothing twice: each good message is in the chain once.
    assert sorted(e["n"] for e in entries(database, tenant)) == [1, 2, 3]


def test_a_batch_where_every_message_fails_keeps_them_all(
        stack: LocalStack, tenant: uuid.UUID, queue: Queue, internal_failure: None) -> None:
    """raise_on_entire_batch_failure=False: the handler answers every id in
    batchItemFailures (no function error), and the poller deletes none."""
    import app as app_module

    sent = {queue.send("{not json"), queue.send(ledger_message(tenant, {"fail": "internal"}))}
    received, failed = queue.poll(app_module.append_ledger_entries)
    assert received == 2 and failed == sent
    after_visibility_timeout()
    received, failed = queue.poll(app_module.append_ledger_entries)
    assert received == 2 and failed == sent  # both back: none was deleted
    after_visibility_timeout()
    assert queue.poll(app_module.append_ledger_entries) == (0, set())
    assert set(queue.dead_letters()) == sent


def test_a_handler_that_crashes_deletes_nothing(stack: LocalStack, tenant: uuid.UUID,
                                                queue: Queue) -> None:
    """A function error (the invocation itself fails): the whole batch comes
    back, as on Lambda."""
    for n in (1, 2):
        queue.send(ledger_message(tenant, {"n": n}))

    def crashes(event: dict[str, Any], context: Any) -> Any:
        raise MemoryError("the function ran out of memory")

    with pytest.raises(MemoryError):
        queue.poll(crashes)
    after_visibility_timeout()
    received, _ = queue.poll(lambda event, context: {"batchItemFailures": []})
    assert received == 2 and queue.counts() == (0, 0)
    assert queue.dead_letters() == {}


def test_on_scaleway_a_failing_message_answers_300_or_more_a_good_one_200(
        stack: LocalStack, database: Database, tenant: uuid.UUID,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.append_ledger import handle as append
    from functions.issue_invoice import handle as issue

    def body(**payload: Any) -> dict[str, Any]:
        return {"body": json.dumps({"tenant_id": str(tenant), "kind": "note.added",
                                    "idempotency_key": f"scw-{uuid.uuid4()}",
                                    "payload": payload})}

    assert append(body(n=1), None)["statusCode"] == 200
    assert append(body(total=12.5), None)["statusCode"] == 422  # the message's fault
    assert append({"body": "{not json"}, None)["statusCode"] == 422

    real = runtime.append_entry

    def faulty(request: Any) -> Any:
        raise DatabaseError({"C": "40001", "M": "could not serialize access"})

    monkeypatch.setattr("functions.append_ledger.append_entry", faulty)
    assert append(body(n=2), None)["statusCode"] == 500  # ours: retried
    monkeypatch.setattr("functions.append_ledger.append_entry", real)
    assert [e.get("n") for e in entries(database, tenant)] == [1]

    invoice = {"tenant_id": str(tenant), "idempotency_key": "scw-invoice-1",
               "invoice": recent()}
    first = issue({"body": json.dumps(invoice)}, None)
    assert first["statusCode"] == 201, first["body"]
    assert issue({"body": json.dumps(invoice)}, None)["statusCode"] == 200  # redelivered
    assert issue({"body": json.dumps({**invoice, "invoice": {}})}, None)["statusCode"] == 422
    monkeypatch.setattr("functions.issue_invoice.issue_from_queue",
                        lambda *_: (_ for _ in ()).throw(OSError("archive down")))
    assert issue({"body": json.dumps(invoice)}, None)["statusCode"] == 500
