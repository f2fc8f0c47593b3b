"""Runs the non-HTTP triggers locally, the way the cloud would.

`chalice local` serves HTTP only. This polls the local SQS queues (moto) of
every `@app.on_sqs_message` handler, hands each batch to the same handler the
Lambda runtime would call, deletes what succeeded and leaves the reported
failures to be redelivered (and dead-lettered after the redrive limit): one
`poll_step` is what Lambda's event source mapping does with
ReportBatchItemFailures on.
`ScheduleRunner` calls every `@app.schedule` handler at start and then every
`interval` seconds (locally; the cloud follows each handler's Cron).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chalice.app import ScheduledEventConfig, SQSEventConfig

from chalicelib.adapters.aws import sqs_client
from chalicelib.config import Settings


@dataclass
class LocalContext:
    """The few Lambda context attributes our handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-3:000000000000:function:local"
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _lambda_attribute(attribute: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda's SQS event spells it (lower camel case)."""
    return {"stringValue": attribute.get("StringValue"),
            "binaryValue": attribute.get("BinaryValue"),
            "stringListValues": attribute.get("StringListValues", []),
            "binaryListValues": attribute.get("BinaryListValues", []),
            "dataType": attribute.get("DataType", "String")}


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda hands a function for messages received from SQS."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {name: _lambda_attribute(value)
                              for name, value in m.get("MessageAttributes", {}).items()},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    } for m in messages]}


def poll_step(sqs: Any, url: str, arn: str, region: str, handler: Any, *, batch_size: int,
              function_name: str, wait_seconds: int = 0) -> tuple[int, set[str]]:
    """One poll of Lambda's SQS event source mapping with ReportBatchItemFailures:
    receive up to `batch_size` messages, invoke `handler` with the Lambda event,
    delete every message except those listed in batchItemFailures. A handler
    that raises deletes nothing: the whole batch comes back after the
    visibility timeout, as on Lambda. Returns (received, failed message ids)."""
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=min(batch_size, 10), WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
    if not received:
        return 0, set()
    context = LocalContext(function_name, str(uuid.uuid4()), deadline=time.monotonic() + 60)
    response = handler(sqs_event(received, arn, region), context) or {}
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    done = [m for m in received if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
    return len(received), failed


class QueueDispatcher:
    def __init__(self, app_module: ModuleType, settings: Settings) -> None:
        self._sqs = sqs_client(settings)
        self._region = settings.s3_region
        self._routes: list[tuple[str, str, Any, SQSEventConfig]] = []
        for source in app_module.app.event_sources:
            if isinstance(source, SQSEventConfig) and source.queue:
                url = self._sqs.get_queue_url(QueueName=source.queue)["QueueUrl"]
                arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                    "Attributes"]["QueueArn"]
                handler = getattr(app_module, source.handler_string.split(".")[-1])
                self._routes.append((url, arn, handler, source))

    @property
    def queues(self) -> list[str]:
        return [source.queue or "" for _, _, _, source in self._routes]

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive per queue; returns how many messages were handled."""
        handled = 0
        for url, arn, handler, source in self._routes:
            received, _ = poll_step(self._sqs, url, arn, self._region, handler,
                                    batch_size=source.batch_size, function_name=source.name,
                                    wait_seconds=wait_seconds)
            handled += received
        return handled

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.poll_once(wait_seconds=1):
                    stop.wait(0.2)
            except Exception as exc:  # noqa: BLE001 - keep the local loop alive, say why
                if not stop.is_set():  # on Ctrl-C, moto may go first: not worth a word
                    print(f"dispatcher: {type(exc).__name__}: {exc}")
                stop.wait(1)


def scheduled_event(name: str, region: str) -> dict[str, Any]:
    """What EventBridge hands a scheduled function."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": region,
            "resources": [f"arn:aws:events:{region}:000000000000:rule/{name}"], "detail": {}}


class ScheduleRunner:
    def __init__(self, app_module: ModuleType, settings: Settings, interval: float) -> None:
        self._region = settings.s3_region
        self._interval = interval
        self._jobs = [(source.name, getattr(app_module, source.handler_string.split(".")[-1]))
                      for source in app_module.app.event_sources
                      if isinstance(source, ScheduledEventConfig)]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._jobs]

    def run_once(self) -> dict[str, Any]:
        results = {}
        for name, handler in self._jobs:
            context = LocalContext(name, str(uuid.uuid4()), deadline=time.monotonic() + 300)
            results[name] = handler(scheduled_event(name, self._region), context)
        return results

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - keep the local loop alive, say why
                if not stop.is_set():
                    print(f"schedule: {type(exc).__name__}: {exc}")
            stop.wait(self._interval)
