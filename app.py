"""einvoice: the table of contents of the system, one trigger per use case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Cron, Request, Response, SQSEvent

from chalicelib.config import settings
from chalicelib.entrypoints.cors import frontend_cors

# configure_logs=False: Chalice would otherwise take over the "einvoice" logger
# (plain-text handler, level ERROR), next to the service's redacting one.
app = Chalice(app_name="einvoice", configure_logs=False)
# Every route below: CORS for the configured frontend origin only (or none).
app.api.cors = frontend_cors(settings().frontend_origin)
app.api.binary_types.append("application/pdf")


def _request() -> Request:
    request = app.current_request
    if request is None:  # only outside a request, never in a route
        raise RuntimeError("no current request")
    return request


@app.middleware("all")
def one_invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Every invocation, whatever its trigger: its metrics flushed as one EMF
    line when it ends and its correlation id cleared; a schedule's run is
    correlated by its CloudWatch event id (HTTP requests and queue messages
    bind their own, in the access log and per message)."""
    from chalicelib.entrypoints.invocation import invocation, usable_id

    run_id = usable_id(event.event_id) if isinstance(event, CloudWatchEvent) else None
    with invocation(run_id):
        return get_response(event)


@app.middleware("http")
def access_log_and_headers(event: Request, get_response: Callable[[Request], Response]
                           ) -> Response:
    """Every request: a request id, security headers on the response (HSTS,
    no-sniff, frame deny, strict CSP, no-store), and a row in the access log."""
    from chalicelib.entrypoints.access_log import logged

    return logged(event, get_response)


@app.route("/health", methods=["GET"])
def health() -> Response:
    """Whether the database and the object store answer (no tenant data)."""
    from chalicelib.entrypoints.health import health_route

    return health_route(_request())


@app.route("/openapi.json", methods=["GET"])
def openapi_description() -> Response:
    """This API's OpenAPI 3.1 description, generated from the route table and request models."""
    from chalicelib.entrypoints.openapi import openapi_route

    return openapi_route(_request())


@app.route("/signup", methods=["POST"])
def signup() -> Response:
    """Mails a confirmation link (or, for a taken address, a notice); 202 either way."""
    from chalicelib.entrypoints.accounts import sign_up_route

    return sign_up_route(_request())


@app.route("/signup/confirm", methods=["POST"])
def signup_confirm() -> Response:
    """The link's token: a new tenant and its owner, with the session cookies."""
    from chalicelib.entrypoints.accounts import sign_up_confirm_route

    return sign_up_confirm_route(_request())


@app.route("/login", methods=["POST"])
def login() -> Response:
    from chalicelib.entrypoints.accounts import log_in_route

    return log_in_route(_request())


@app.route("/logout", methods=["POST"])
def logout() -> Response:
    from chalicelib.entrypoints.accounts import log_out_route

    return log_out_route(_request())


@app.route("/password", methods=["POST"])
def password() -> Response:
    """Change one's password; ends every session of the user."""
    from chalicelib.entrypoints.accounts import change_password_route

    return change_password_route(_request())


@app.route("/me", methods=["GET"])
def me() -> Response:
    from chalicelib.entrypoints.accounts import me_route

    return me_route(_request())


@app.route("/mfa/totp", methods=["POST"])
def totp_enrol() -> Response:
    """A new TOTP secret, pending until its first code confirms it."""
    from chalicelib.entrypoints.mfa import totp_enrol_route

    return totp_enrol_route(_request())


@app.route("/mfa/totp/confirm", methods=["POST"])
def totp_confirm() -> Response:
    """The first code: the secret becomes the second factor; recovery codes, once."""
    from chalicelib.entrypoints.mfa import totp_confirm_route

    return totp_confirm_route(_request())


@app.route("/mfa", methods=["POST"])
def second_factor() -> Response:
    """Pass the second factor for this session (TOTP code or recovery code)."""
    from chalicelib.entrypoints.mfa import second_factor_route

    return second_factor_route(_request())


@app.route("/ledger/verify", methods=["GET"])
def ledger_verify() -> Response:
    """Recompute the caller's tenant chain and say where it breaks, if it does."""
    from chalicelib.entrypoints.ledger import ledger_verify_route

    return ledger_verify_route(_request())


@app.route("/ledger/entries", methods=["GET"])
def ledger_entries() -> Response:
    from chalicelib.entrypoints.ledger import ledger_entries_route

    return ledger_entries_route(_request())


@app.route("/api-keys", methods=["POST"])
def api_keys_create() -> Response:
    """A key for a machine caller, with scopes; its secret is shown once."""
    from chalicelib.entrypoints.api_keys import api_keys_create_route

    return api_keys_create_route(_request())


@app.route("/api-keys", methods=["GET"])
def api_keys_list() -> Response:
    from chalicelib.entrypoints.api_keys import api_keys_list_route

    return api_keys_list_route(_request())


@app.route("/api-keys/{key_id}", methods=["DELETE"])
def api_key_revoke(key_id: str) -> Response:
    from chalicelib.entrypoints.api_keys import api_key_revoke_route

    return api_key_revoke_route(_request(), key_id)


@app.route("/invoices", methods=["POST"])
def invoices_issue() -> Response:
    """Issue an invoice (Idempotency-Key header): numbered, Factur-X, chained, archived."""
    from chalicelib.entrypoints.invoices import issue_invoice_route

    return issue_invoice_route(_request())


@app.route("/invoices", methods=["GET"])
def invoices_list() -> Response:
    """The newest invoices, or the one a given Idempotency-Key issued."""
    from chalicelib.entrypoints.invoices import list_invoices_route

    return list_invoices_route(_request())


@app.route("/invoice-batches", methods=["POST"])
def invoice_batches() -> Response:
    """Bulk issuing: up to 100 drafts checked now, issued from a queue (202)."""
    from chalicelib.entrypoints.invoices import queue_invoices_route

    return queue_invoices_route(_request())


@app.route("/invoices/{invoice_id}", methods=["GET"])
def invoice_get(invoice_id: str) -> Response:
    from chalicelib.entrypoints.invoices import get_invoice_route

    return get_invoice_route(_request(), invoice_id)


@app.route("/invoices/{invoice_id}/lifecycle", methods=["GET"])
def invoice_lifecycle(invoice_id: str) -> Response:
    """The statuses the PA reported (200 Déposée ... 212 Encaissée, 213 Rejetée),
    the current one derived by the state machine, and the anomalies."""
    from chalicelib.entrypoints.invoices import invoice_lifecycle_route

    return invoice_lifecycle_route(_request(), invoice_id)


@app.route("/invoices/{invoice_id}/pdf", methods=["GET"])
def invoice_pdf(invoice_id: str) -> Response:
    """The Factur-X PDF from the archive, checked against the ledger's SHA-256."""
    from chalicelib.entrypoints.invoices import invoice_document_route

    return invoice_document_route(_request(), invoice_id, "pdf")


@app.route("/invoices/{invoice_id}/xml", methods=["GET"])
def invoice_xml(invoice_id: str) -> Response:
    from chalicelib.entrypoints.invoices import invoice_document_route

    return invoice_document_route(_request(), invoice_id, "xml")


@app.route("/invoices/{invoice_id}/credit-notes", methods=["POST"])
def credit_notes_issue(invoice_id: str) -> Response:
    """A credit note (381) referencing this invoice, which itself never changes."""
    from chalicelib.entrypoints.invoices import issue_credit_note_route

    return issue_credit_note_route(_request(), invoice_id)


@app.route("/invoices/{invoice_id}/proof", methods=["GET"])
def invoice_proof(invoice_id: str) -> Response:
    """The invoice's ledger entry, its inclusion proof into the closing that
    covers it, that closing signed, and its consistency with the latest one."""
    from chalicelib.entrypoints.closings import invoice_proof_route

    return invoice_proof_route(_request(), invoice_id)


@app.route("/closings", methods=["POST"])
def closings_seal() -> Response:
    """Seal a day, month or year: a signed closing appended to the chain."""
    from chalicelib.entrypoints.closings import seal_route

    return seal_route(_request())


@app.route("/closings", methods=["GET"])
def closings_list() -> Response:
    from chalicelib.entrypoints.closings import list_closings_route

    return list_closings_route(_request())


@app.route("/closings/{closing_id}", methods=["GET"])
def closing_get(closing_id: str) -> Response:
    from chalicelib.entrypoints.closings import get_closing_route

    return get_closing_route(_request(), closing_id)


@app.route("/quotes", methods=["POST"])
def quotes_create() -> Response:
    """A quote (Idempotency-Key header): D-000001... from its own counter, no invoice number."""
    from chalicelib.entrypoints.quotes import create_quote_route

    return create_quote_route(_request())


@app.route("/quotes/{quote_id}", methods=["GET"])
def quote_get(quote_id: str) -> Response:
    from chalicelib.entrypoints.quotes import get_quote_route

    return get_quote_route(_request(), quote_id)


@app.route("/quotes/{quote_id}/invoice", methods=["POST"])
def quote_convert(quote_id: str) -> Response:
    """The accepted quote becomes one invoice, issued as POST /invoices issues one."""
    from chalicelib.entrypoints.quotes import convert_quote_route

    return convert_quote_route(_request(), quote_id)


@app.on_sqs_message(queue=settings().ledger_queue, batch_size=10)
def append_ledger_entries(event: SQSEvent) -> Any:
    """Append ledger entries from the queue, reporting failed messages so only
    they are retried. The deployment enables ReportBatchItemFailures on the
    event source mapping (infra/aws/; Chalice's own packaging does not):
    without it a failed message would be deleted with its batch."""
    from chalicelib.entrypoints.ledger_queue import handle_ledger_batch
    from chalicelib.runtime import append_entry

    return handle_ledger_batch(event.to_dict(), append_entry).response


@app.on_sqs_message(queue=settings().invoice_queue, batch_size=5)
def issue_queued_invoices(event: SQSEvent) -> Any:
    """Issue the invoices POST /invoice-batches queued, reporting failed messages
    so only they are retried (ReportBatchItemFailures: see the ledger queue)."""
    from chalicelib.entrypoints.invoice_queue import handle_invoice_batch
    from chalicelib.runtime import issue_from_queue

    return handle_invoice_batch(event.to_dict(), issue_from_queue).response


@app.schedule(Cron(17, 3, "*", "*", "?", "*"))  # daily, 03:17 UTC
def retention_purge(event: CloudWatchEvent) -> dict[str, int]:
    """Delete personal data whose retention period has ended (access logs: a year)."""
    from chalicelib.entrypoints.schedules import purge_retention

    return purge_retention()


@app.schedule(Cron(5, "*", "*", "*", "?", "*"))  # hourly at :05 UTC
def scheduled_closings(event: CloudWatchEvent) -> dict[str, int]:
    """Seal every period that is over (days, then months, then years) for every
    tenant with activity, each tenant on its own, and witness its closings and
    chain head in the Object Lock bucket. Hourly, because Paris
    midnight is 22:00 or 23:00 UTC, and a failed tenant is retried an hour later."""
    from chalicelib.entrypoints.schedules import seal_due_closings

    return seal_due_closings()


@app.schedule(Cron("7/15", "*", "*", "*", "?", "*"))  # every 15 minutes from :07 UTC
def anchor_retries(event: CloudWatchEvent) -> dict[str, int]:
    """Best-effort anchoring: retry pending anchors and upgrade pending
    OpenTimestamps proofs, then anchor the closings the hourly schedule sealed
    (the last 7 days). Each anchor on its own; no new work is started once the
    function's time is nearly spent (the next run goes on)."""
    from chalicelib.entrypoints.schedules import retry_anchoring

    return retry_anchoring(event.context)


@app.schedule(Cron("0/10", "*", "*", "*", "?", "*"))  # every 10 minutes
def archive_sweep(event: CloudWatchEvent) -> dict[str, int]:
    """Archive the invoices whose archiving a crash interrupted (older than 5 minutes)."""
    from chalicelib.entrypoints.schedules import sweep_archive

    return sweep_archive()
