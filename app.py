"""einvoice: the table of contents of the system, one trigger per use case."""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice, Response, SQSEvent

from chalicelib.config import settings

app = Chalice(app_name="einvoice")


@app.route("/health", methods=["GET"])
def health() -> Response:
    """Whether the database and the object store answer (no tenant data)."""
    from chalicelib.runtime import health_probes
    from chalicelib.usecases.health import check_health

    status, body = check_health(health_probes())
    return Response(body=body, status_code=status)


@app.on_sqs_message(queue=settings().ledger_queue, batch_size=10)
def append_ledger_entries(event: SQSEvent) -> Any:
    """Append ledger entries from the queue, reporting failed messages so only
    they are retried. The deployment must enable ReportBatchItemFailures on
    the event source mapping (Chalice does not; infra/ is not written yet):
    without it a failed message would be deleted with its batch."""
    from chalicelib.entrypoints.ledger_queue import handle_ledger_batch
    from chalicelib.runtime import append_entry

    return handle_ledger_batch(event.to_dict(), append_entry).response
