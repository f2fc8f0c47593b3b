"""What every invocation shares, whatever its trigger: a correlation id on
each log line it writes, cleared when it ends, and its metrics flushed then
(one EMF line on stdout, chalicelib/metrics.py).

Where the correlation id comes from (Powertools Logger's `correlation_id`):

- an HTTP request: its request id (the gateway's, or Scaleway's X-Request-Id,
  else a new one), bound by access_log.py and answered in X-Request-Id;
- a queue message: the producer's id when the message carries one (an SQS
  message attribute `correlation_id`, or the `correlation_id` field
  POST /invoice-batches writes into each message with its request id), else
  the SQS message id; on Scaleway's one-message path, with no message id,
  the X-Request-Id of the trigger's call, else a new one. Bound per message,
  with `message_id`, and cleared after it;
- a schedule: the CloudWatch event id on AWS; on Scaleway the X-Request-Id of
  the CRON call, else a new one;
- the migration job: the Lambda request id, or as a schedule on Scaleway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from chalicelib import metrics
from chalicelib.logs import logger

CORRELATION_ID = "correlation_id"  # the SQS message attribute and message field


def usable_id(value: object) -> str | None:
    """An id fit for a log line: printable ASCII, 1 to 100 characters; else None."""
    if isinstance(value, str) and 1 <= len(value) <= 100 and value.isascii() \
            and value.isprintable():
        return value
    return None


@contextmanager
def invocation(correlation_id: str | None = None) -> Iterator[None]:
    """One invocation: `correlation_id` on every line (None: whatever binds
    one later, e.g. per message), and nothing of it left for the next one."""
    logger.set_correlation_id(correlation_id)  # also drops what a crashed one left
    try:
        yield
    finally:
        metrics.flush()
        logger.set_correlation_id(None)
        logger.remove_keys(["message_id"])


@contextmanager
def correlated(correlation_id: str, **keys: str) -> Iterator[None]:
    """One message inside an invocation: its id and `keys` on every line,
    the invocation's own restored after it."""
    previous = logger.get_correlation_id()
    logger.set_correlation_id(correlation_id)
    logger.append_keys(**keys)
    try:
        yield
    finally:
        logger.remove_keys(list(keys))
        logger.set_correlation_id(previous)


def current_correlation_id() -> str | None:
    """The id the current request or message is logged under."""
    return usable_id(logger.get_correlation_id())


def message_correlation_id(raw_record: dict[str, Any]) -> str | None:
    """The producer's id an SQS record carries as a message attribute, if any
    (Lambda's shape: {"stringValue": ..., "dataType": "String"})."""
    attributes = raw_record.get("messageAttributes") or {}
    attribute = attributes.get(CORRELATION_ID) if isinstance(attributes, dict) else None
    if isinstance(attribute, dict):
        return usable_id(attribute.get("stringValue"))
    return None


def body_correlation_id(body: str) -> str | None:
    """The producer's id in a message body that is a JSON object with a
    `correlation_id` field (what POST /invoice-batches writes); else None."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    return usable_id(raw.get(CORRELATION_ID)) if isinstance(raw, dict) else None


def scaleway_call_id(event: dict[str, Any]) -> str:
    """The id of a Scaleway trigger's call: its X-Request-Id, else a new one."""
    headers = event.get("headers") or {}
    given = None
    if isinstance(headers, dict):
        given = next((value for name, value in headers.items()
                      if str(name).lower() == "x-request-id"), None)
    return usable_id(given) or str(uuid4())
