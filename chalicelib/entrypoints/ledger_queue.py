"""SQS batch -> append ledger, one message at a time, partial failures reported.

A bad message (bad JSON, unknown tenant, a payload that is not canonical JSON)
fails alone: the batch response lists it so SQS redelivers only it (and parks
it in the dead-letter queue after the redrive limit); the rest are appended.
Reasons are logged with the message id, never with the payload; every line a
message causes carries its correlation id (chalicelib/entrypoints/invocation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from chalicelib import runtime
from chalicelib.domain.errors import DomainError, InvalidInput, Violation
from chalicelib.domain.inputs import violations_from
from chalicelib.domain.ledger import JSONFormatError, LedgerEntry, normalise_data, strict_json
from chalicelib.entrypoints.invocation import correlated, message_correlation_id
from chalicelib.logs import logger
from chalicelib.usecases.append_ledger import AppendRequest
from chalicelib.usecases.idempotency import QUEUE_KEYS

Append = Callable[[AppendRequest], LedgerEntry]


def parse_message(body: str) -> AppendRequest:
    """The message body as an AppendRequest, or InvalidInput naming every
    broken rule: the envelope's fields and the payload's values together.

    Read with domain.ledger.strict_json, not the edge's common reader: the
    ledger refuses a float by its path in the payload (money there is a
    decimal string), and words its refusals its own way."""
    try:
        raw = strict_json(body, floats=True)  # floats are refused below, by path
    except JSONFormatError as exc:
        raise InvalidInput([Violation("body", str(exc))]) from None
    except ValueError:
        raise InvalidInput([Violation("body", "is not valid JSON")]) from None
    try:
        return AppendRequest.model_validate(raw)
    except ValidationError as exc:
        violations = violations_from(exc)
        payload = raw.get("payload") if isinstance(raw, dict) else None
        if isinstance(payload, dict):
            try:
                normalise_data(payload)
            except InvalidInput as payload_errors:
                violations += payload_errors.violations
        raise InvalidInput(violations) from None


class InternalError(Exception):
    """A fault that is not the message's: retried. Carries no server text,
    which may quote the payload."""


def sanitised(exc: Exception) -> Exception:
    if isinstance(exc, DomainError):
        return exc
    state = runtime.fault_code(exc)
    return InternalError(f"{type(exc).__name__}" + (f", SQLSTATE {state}" if state else ""))


def reason(exc: BaseException) -> str:
    if isinstance(exc, DomainError):
        return f"{type(exc).__name__}: {exc}"
    return f"internal error ({exc}); will be retried"


class Processor(BatchProcessor):
    """Powertools' BatchProcessor, keeping a clear reason per failed message
    and logging each message under its correlation id (invocation.py).

    raise_on_entire_batch_failure=False: a batch where every message failed
    is answered like any other, every id in batchItemFailures, so SQS keeps
    them all (redelivered after the visibility timeout, dead-lettered after
    the redrive limit) without the invocation counting as a function error."""

    def __init__(self, what: str = "ledger message") -> None:
        super().__init__(EventType.SQS, raise_on_entire_batch_failure=False)
        self.reasons: dict[str, str] = {}
        self._what = what

    def each_message(self, handler: Callable[[SQSRecord], None],
                     producer_id: Callable[[SQSRecord], str | None] = lambda _: None
                     ) -> Callable[[SQSRecord], None]:
        """`handler` run with the message's correlation id bound (the producer's
        as an SQS attribute, else `producer_id`'s from the body, else the
        message id) and `message_id` on every line, its refusal logged under
        them; both cleared after the message."""

        def run(record: SQSRecord) -> None:
            correlation = message_correlation_id(record.raw_event) or producer_id(record) \
                or record.message_id
            with correlated(correlation, message_id=record.message_id):
                try:
                    handler(record)
                except Exception as exc:  # logged here, then failed as Powertools does
                    self._refused(record.message_id, exc)
                    raise

        return run

    def _refused(self, message_id: str, exc: BaseException) -> None:
        why = reason(exc)
        self.reasons[message_id] = why
        logger.warning(f"{self._what} refused", extra={"message_id": message_id,
                                                       "reason": why})

    def failure_handler(self, record: Any, exception: Any) -> Any:
        if record.message_id not in self.reasons:  # failed before `run` could say why
            self._refused(record.message_id, exception[1])
        return super().failure_handler(record, exception)


@dataclass
class BatchReport:
    response: PartialItemFailureResponse
    failures: dict[str, str]  # message id -> reason


def handle_ledger_batch(event: dict[str, Any], append: Append) -> BatchReport:
    processor = Processor()

    def record_handler(record: SQSRecord) -> None:
        request = parse_message(record.body)
        if request.idempotency_key is None:
            # A redelivery of the same message must not append twice.
            request = request.model_copy(
                update={"idempotency_key": f"{QUEUE_KEYS}{record.message_id}"})
        try:
            entry = append(request)
        except Exception as exc:  # noqa: BLE001 - re-raised without server text
            raise sanitised(exc) from None
        logger.info("ledger entry appended", extra={"message_id": record.message_id,
                                                    "seq": entry.seq, "kind": entry.kind})

    with processor(records=event.get("Records", []), handler=processor.each_message(
            record_handler)):
        processor.process()
    return BatchReport(processor.response(), dict(processor.reasons))
