"""The OpenAPI 3.1 description of the HTTP API (`GET /openapi.json`), generated, never written.

Built from what the app itself runs on, so it cannot drift from it: the
routes and path parameters from app.py's Chalice route table; who may call
each route (session cookie, its CSRF header on writes, an API key and its
scope, or nobody) from access.route_table(); each body's bound (the 413) from
access.BODY_LIMITS; the request bodies from the pydantic models the routes
validate with (bodies.py, domain.invoice_draft) and, where a route checks its
body by hand, from the models below, which state that route's shape. What is
only here is the few facts no table holds: each route's success answers, its
query parameters, and which of 404 and 409 it can answer (`OPERATIONS`; a test
fails if a route has no entry).

Every error is one shape (`components/schemas/Error`, domain.errors.as_dict):
`error`, the violations (each a `field` and the `rule` it broke, at most
MAX_LISTED_VIOLATIONS) and `violation_count`; a fault of ours (5xx) says
`error` and `detail` instead, with Retry-After when a retry helps.

Built on the first request and cached: importing pydantic's models costs
about half a second, which no other route's cold start pays.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from chalice.app import Request, Response

from chalicelib.domain.errors import PayloadTooLarge
from chalicelib.entrypoints.access import Rule, bounded_body, public

if TYPE_CHECKING:
    from pydantic import BaseModel

public("openapi_description")

JSON = "application/json"
_SCHEMAS = "#/components/schemas/"
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Operation:
    """What no table of the app states about one route (by its view name)."""

    success: dict[int, str]  # status -> what it means
    body: str | None = None  # the request body's schema, a name in components/schemas
    query: str | None = None  # the query parameters, a model's name in _query_models()
    errors: frozenset[int] = frozenset()  # 404 / 409 beside the statuses every route shares
    idempotency_key: bool = False  # the Idempotency-Key header, required
    media: str = JSON  # the success answer's media type
    schema: str | None = None  # the success answer's schema name (None: an object)
    rate_limited: bool = False  # a public route with its own per-address limit (429)
    location: bool = False  # a 201 names what it made in Location


_ISSUE = {201: "issued now", 200: "issued before with this Idempotency-Key: the same invoice"}
OPERATIONS: dict[str, Operation] = {
    "openapi_description": Operation({200: "this description"}),
    "health": Operation({200: "every dependency answers",
                         503: "a dependency does not answer (named down)"}, schema="Health"),
    "signup": Operation({202: "a confirmation link was mailed, if the address can be used"},
                        body="SignUpBody", rate_limited=True, schema="SignUpAccepted"),
    "signup_confirm": Operation({201: "the new tenant's owner, logged in (session cookies)"},
                                body="ConfirmBody", rate_limited=True, errors=frozenset({404}),
                                schema="Principal"),
    "login": Operation({200: "logged in (session cookies)"}, body="LogInBody",
                       rate_limited=True, schema="Principal"),
    "logout": Operation({204: "the session ended"}),
    "password": Operation({204: "changed; every session of the user ended"},
                          body="ChangePasswordBody"),
    "me": Operation({200: "who the caller is, with the CSRF token"}, schema="Principal"),
    "totp_enrol": Operation({201: "a TOTP secret, pending its first code"},
                            body="SecondFactorBody", errors=frozenset({409}),
                            schema="TotpEnrolment"),
    "totp_confirm": Operation({200: "the second factor is on; recovery codes, shown once"},
                              body="CodeBody", errors=frozenset({404, 409}),
                              schema="RecoveryCodes"),
    "second_factor": Operation({200: "the second factor is passed for this session"},
                               body="SecondFactorBody", errors=frozenset({404, 409}),
                               schema="SecondFactorPassed"),
    "ledger_verify": Operation({200: "the chain's verdict, and where it breaks if it does"},
                               query="LedgerVerifyQuery", errors=frozenset({404})),
    "ledger_entries": Operation({200: "entries in order"}, query="LedgerEntriesQuery",
                                errors=frozenset({404}), schema="LedgerEntries"),
    "api_keys_create": Operation({201: "the key, with its secret shown this once"},
                                 body="ApiKeyBody", errors=frozenset({409}),
                                 schema="ApiKeyCreated"),
    "api_keys_list": Operation({200: "the tenant's keys, without secrets"},
                               schema="ApiKeyList"),
    "api_key_revoke": Operation({204: "revoked"}, errors=frozenset({404, 409})),
    "invoices_issue": Operation(_ISSUE, body="InvoiceDraft", errors=frozenset({404, 409}),
                                idempotency_key=True, location=True, schema="Invoice"),
    "invoices_list": Operation({200: "the newest invoices, or the one a key issued"},
                               query="InvoicesQuery", schema="InvoiceList"),
    "invoice_batches": Operation({202: "every draft is valid and queued"}, body="InvoiceBatch",
                                 schema="BatchQueued"),
    "invoice_get": Operation({200: "the invoice"}, errors=frozenset({404}), schema="Invoice"),
    "invoice_lifecycle": Operation({200: "the current status, the history and the anomalies"},
                                   errors=frozenset({404})),
    "invoice_pdf": Operation({200: "the archived Factur-X PDF"}, media="application/pdf",
                             errors=frozenset({404, 409})),
    "invoice_xml": Operation({200: "the archived CII XML"}, media="application/xml",
                             errors=frozenset({404, 409})),
    "credit_notes_issue": Operation(_ISSUE, body="CreditNoteDraft", idempotency_key=True,
                                    errors=frozenset({404, 409}), location=True,
                                    schema="Invoice"),
    "invoice_proof": Operation({200: "the entry, its inclusion and consistency proofs"},
                               errors=frozenset({404, 409})),
    "closings_seal": Operation({201: "sealed now", 200: "sealed before: the same closing"},
                               body="ClosingRequest", errors=frozenset({404, 409}),
                               location=True),
    "closings_list": Operation({200: "the newest closings"}),
    "closing_get": Operation({200: "the closing"}, errors=frozenset({404})),
    "quotes_create": Operation({201: "made now", 200: "made before with this Idempotency-Key"},
                               body="QuoteRequest", idempotency_key=True,
                               errors=frozenset({404, 409}), location=True, schema="Quote"),
    "quote_get": Operation({200: "the quote"}, errors=frozenset({404}), schema="Quote"),
    "quote_convert": Operation(_ISSUE, body="QuoteConversion", idempotency_key=True,
                               errors=frozenset({404, 409}), location=True, schema="Invoice"),
}

_ERRORS = {
    400: "a credential in the query string (it is never accepted there)",
    401: "no valid session or API key",
    403: "not allowed: role, API key scope, second factor or CSRF token (named in violations)",
    404: "no such resource in the caller's tenant",
    409: "conflicts with the current state (named in violations)",
    413: "the body is longer than this route's bound ({limit} bytes), refused unread",
    415: "a Content-Type other than application/json",
    422: "the request breaks a rule: each violation names the field and the rule",
    429: "too many attempts, or locked out after failures: retry after Retry-After seconds",
    500: "an unexpected fault of ours: nothing is said of it but that it happened",
    502: "the archived document does not match the checksum the ledger holds; not served",
    503: "a service this request needs cannot answer: nothing was done; retry after "
         "Retry-After seconds",
}
_RETRY = frozenset({429, 503})


def openapi_route(request: Request) -> Response:
    """The description; public (it says nothing of any tenant), bounded like every route."""
    try:
        bounded_body(request)
    except PayloadTooLarge as exc:
        return Response(body=exc.as_dict(), status_code=exc.status)
    return Response(body=description_text(), status_code=200, headers={"Content-Type": JSON})


@functools.cache
def description_text() -> str:
    return json.dumps(description(), sort_keys=True)


def description() -> dict[str, Any]:
    """The whole document, from the app's tables (see the module's docstring)."""
    from app import app
    from chalicelib.domain.errors import MAX_LISTED_VIOLATIONS
    from chalicelib.entrypoints.access import BODY_LIMITS, SMALL_BODY, route_table

    table = route_table()
    components = _schemas()
    queries = _query_models()
    paths: dict[str, Any] = {}
    for path, views in sorted(app.routes.items()):
        for method, entry in sorted(views.items()):
            operation = OPERATIONS[entry.view_name]
            limit = BODY_LIMITS.get(f"{method} {path}", SMALL_BODY)
            paths.setdefault(path, {})[method.lower()] = _operation(
                entry.view_name, _summary(entry.view_function), operation,
                table.rules.get(entry.view_name), _PARAMETER.findall(path),
                queries.get(operation.query or ""), limit)
    return {
        "openapi": "3.1.0",
        "info": {"title": "einvoice", "version": "1", "description": (
            "French e-invoicing: invoices, credit notes, quotes, the hash-chained ledger, "
            "sealed closings and their proofs. Generated from the app's route table and "
            "request models (chalicelib/entrypoints/openapi.py). Every error answers one "
            "shape, components/schemas/Error: a 4xx names each field and the rule it broke "
            f"(at most {MAX_LISTED_VIOLATIONS} violations, and violation_count, how many in "
            "all); a 5xx says "
            "what cannot be done, with Retry-After when a retry helps.")},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": _security_schemes()},
    }


def _summary(view: Any) -> str:
    doc = (view.__doc__ or "").strip()
    return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else view.__name__.replace("_", " ")


def _operation(view: str, summary: str, operation: Operation, rule: Rule | None,
               path_parameters: list[str], query: type[BaseModel] | None,
               limit: int) -> dict[str, Any]:
    described: dict[str, Any] = {"operationId": view, "summary": summary,
                                 "x-body-limit-bytes": limit}
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string", "format": "uuid"}} for name in path_parameters]
    if query is not None:
        schema = query.model_json_schema()
        parameters += [{"name": name, "in": "query",
                        "required": name in schema.get("required", []),
                        "schema": _plain(field)}
                       for name, field in schema["properties"].items()]
    if operation.idempotency_key:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": True,
                           "description": "a key of the caller's choice per request, reused "
                                          "on retry; not in a namespace of the service's "
                                          "own (quote:, ledger:)",
                           "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"}})
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": {
            JSON: {"schema": {"$ref": _SCHEMAS + operation.body}}}}
    statuses = {400, 413, 415, 500} | set(operation.errors)
    if view != "openapi_description":
        statuses |= {503}
    if operation.body is not None or query is not None or path_parameters \
            or operation.idempotency_key:
        statuses.add(422)
    if rule is None:
        described["security"] = []
        if operation.rate_limited:
            statuses |= {429}
        if view == "login":
            statuses |= {401}
    else:
        described["security"] = _security(rule)
        statuses |= {401, 403}
        if rule.writes:
            statuses.add(429)  # per-user writes limit, second-factor and password lock-outs
    if view in {"invoice_pdf", "invoice_xml"}:
        statuses.add(502)
    responses: dict[str, Any] = {str(status): _success(status, text, operation)
                                 for status, text in operation.success.items()}
    for status in sorted(statuses - set(operation.success)):
        responses[str(status)] = _error(status, limit)
    described["responses"] = responses
    return described


def _success(status: int, text: str, operation: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": text}
    if status == 204:
        return answer
    if operation.media == JSON:
        schema = {"$ref": _SCHEMAS + operation.schema} if operation.schema else {"type": "object"}
    else:
        schema = {"type": "string", "contentMediaType": operation.media}
    answer["content"] = {operation.media: {"schema": schema}}
    if operation.location and status in (200, 201):
        answer["headers"] = {"Location": {"required": True, "schema": {"type": "string"},
                                          "description": "the path of what was made"}}
    return answer


def _error(status: int, limit: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": _ERRORS[status].format(limit=limit),
                              "content": {JSON: {"schema": {"$ref": _SCHEMAS + (
                                  "Refusal" if status < 500 else "Fault")}}}}
    if status in _RETRY:
        answer["headers"] = {"Retry-After": {
            "required": True, "description": "seconds to wait before retrying",
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return answer


def _security(rule: Rule) -> list[dict[str, list[str]]]:
    """Either a session (with its CSRF token on a write) or, where the route
    names a scope, an API key holding it (OpenAPI 3.1: roles on any scheme)."""
    session: dict[str, list[str]] = {"session": [], "csrf": []} if rule.writes \
        else {"session": []}
    return [session, *([{"apiKey": [rule.api_scope]}] if rule.api_scope else [])]


def _security_schemes() -> dict[str, Any]:
    from chalicelib.entrypoints.guard import CSRF_COOKIE, SESSION_COOKIE

    return {
        "apiKey": {"type": "http", "scheme": "bearer", "description": (
            "Authorization: Bearer eik_…, an API key an owner made (POST /api-keys); it does "
            "only what its scopes name. Never in a query string (400).")},
        "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE, "description": (
            "the session cookie login sets (HttpOnly, Secure, SameSite=Strict); owners must "
            "pass their second factor (POST /mfa) before anything but the /mfa routes and "
            "logout")},
        "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token", "description": (
            f"on every write with a session: the {CSRF_COOKIE} cookie's value, or csrf_token "
            "from login or /me")},
    }


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A query field's schema without pydantic's title, nor its null (an
    optional parameter is left out, never sent empty)."""
    kept = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    base = {k: v for k, v in schema.items() if k not in ("title", "anyOf")
            and not (k == "default" and v is None)}
    return {**base, **kept[0]} if len(kept) == 1 else base


def _schemas() -> dict[str, Any]:
    """components/schemas: the request models (with every model they use),
    the answers that have a model, and the error shapes."""
    from pydantic.json_schema import models_json_schema

    models = _body_models()
    _, found = models_json_schema([(m, "validation") for m in models.values()],
                                  ref_template=_SCHEMAS + "{model}")
    schemas: dict[str, Any] = found["$defs"]
    draft = schemas["InvoiceDraft"]
    schemas["CreditNoteDraft"] = _without(draft, {"type_code", "preceding_invoice"}, (
        "an invoice draft without type_code and preceding_invoice: both are taken from the "
        "credited invoice"))
    schemas["QuoteDraft"] = _without(draft, {"issue_date", "due_date"}, (
        "an invoice draft without its dates: they are given when the quote becomes an invoice"))
    schemas["QuoteRequest"]["properties"]["invoice"] = {"$ref": _SCHEMAS + "QuoteDraft"}
    return {**schemas, **_error_schemas()}


def _without(schema: dict[str, Any], fields: set[str], text: str) -> dict[str, Any]:
    return {**schema, "title": text, "description": text,
            "properties": {k: v for k, v in schema["properties"].items() if k not in fields},
            "required": [k for k in schema.get("required", []) if k not in fields]}


def _error_schemas() -> dict[str, Any]:
    from chalicelib.domain.errors import MAX_LISTED_VIOLATIONS

    text = {"type": "string"}
    return {
        "Violation": {"type": "object", "required": ["field", "rule"],
                      "additionalProperties": False, "properties": {
                          "field": {**text, "description": "the field's dotted path "
                                    "(lines.2.vat_rate), or a header's name"},
                          "rule": {**text, "description": "the rule it broke, in words; "
                                   "never the value sent"}}},
        "Error": {
            "type": "object", "required": ["error"],
            "description": "The one shape of every error: a 4xx (Refusal) lists the "
                           "violations; a 5xx (Fault) says what cannot be done.",
            "properties": {
                "error": {**text, "description": "the kind of error (InvalidInput, "
                          "NotFound, ...)"},
                "violations": {"type": "array", "maxItems": MAX_LISTED_VIOLATIONS,
                               "items": {"$ref": _SCHEMAS + "Violation"},
                               "description": f"the first {MAX_LISTED_VIOLATIONS} broken rules"},
                "violation_count": {"type": "integer", "minimum": 0,
                                    "description": "how many rules were broken in all"},
                "detail": {**text, "description": "what cannot be done, and whether "
                           "to retry (5xx only)"}}},
        "Refusal": {"allOf": [{"$ref": _SCHEMAS + "Error"}],
                    "required": ["error", "violations", "violation_count"],
                    "description": "a 4xx: the request is at fault; each violation names "
                                   "a field and a rule"},
        "Fault": {"allOf": [{"$ref": _SCHEMAS + "Error"}], "required": ["error"],
                  "description": "a 5xx: a fault of ours; nothing is said of its cause"},
    }


def _body_models() -> dict[str, type[BaseModel]]:
    """The request body models by schema name: those the routes validate with,
    and the shapes of the bodies checked by hand (closings, quotes, batches)."""
    from pydantic import BaseModel, ConfigDict, Field

    from chalicelib.domain.closing import PERIOD_KINDS
    from chalicelib.domain.invoice_draft import InvoiceDraft
    from chalicelib.entrypoints import bodies
    from chalicelib.usecases.invoice_batches import MAX_BATCH

    class _Shape(BaseModel):
        model_config = ConfigDict(extra="forbid")

    kinds: Any = Literal[tuple(PERIOD_KINDS)]

    class ClosingRequest(_Shape):
        """POST /closings: the period to seal, e.g. {"kind": "day", "period": "2026-11-22"}."""

        kind: kinds
        period: str = Field(description="2026-11-22 (day), 2026-11 (month), 2026 (year)")

    class QuoteRequest(_Shape):
        """POST /quotes: the draft (without its dates) and the last day it is offered."""

        valid_until: date
        invoice: dict[str, Any]  # replaced by QuoteDraft in _schemas

    class QuoteConversion(_Shape):
        """POST /quotes/{quote_id}/invoice: the invoice's dates (issue date: today)."""

        issue_date: date | None = None
        due_date: date

    class BatchItem(_Shape):
        idempotency_key: str = Field(pattern="^[!-~]{1,200}$")
        invoice: InvoiceDraft

    class InvoiceBatch(_Shape):
        """POST /invoice-batches: drafts checked now, issued from a queue."""

        invoices: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)

    class Principal(BaseModel):
        """Who the caller is (an answer)."""

        user_id: str
        tenant_id: str
        role: str
        csrf_token: str

    class Health(BaseModel):
        """Each dependency up or down (an answer)."""

        status: Literal["ok", "degraded"]

    models: tuple[type[BaseModel], ...] = (
        bodies.SignUpBody, bodies.ConfirmBody, bodies.LogInBody, bodies.ChangePasswordBody,
        bodies.ApiKeyBody, bodies.CodeBody, bodies.SecondFactorBody, InvoiceDraft,
        ClosingRequest, QuoteRequest, QuoteConversion, InvoiceBatch, Principal, Health,
        *_answer_models())
    return {model.__name__: model for model in models}


def _answer_models() -> tuple[type[BaseModel], ...]:
    """The answers' shapes, as the route modules write them (a test checks
    real answers against them: test_openapi.py)."""
    from pydantic import BaseModel

    when = str | None  # an ISO 8601 moment, or null

    class SignUpAccepted(BaseModel):
        status: str
        detail: str

    class TotpEnrolment(BaseModel):
        secret: str
        otpauth_uri: str

    class RecoveryCodes(BaseModel):
        recovery_codes: list[str]

    class SecondFactorPassed(BaseModel):
        recovery_codes_left: int

    class ApiKey(BaseModel):
        id: str
        name: str
        scopes: list[str]
        created_by: str
        created_at: when
        expires_at: when
        last_used_at: when
        revoked_at: when

    class ApiKeyCreated(ApiKey):
        secret: str

    class ApiKeyList(BaseModel):
        api_keys: list[ApiKey]

    class LedgerEntry(BaseModel):
        seq: int
        kind: str
        payload: str  # the canonical JSON text the chain hashed (RFC 8785)
        prev_hash: str
        hash: str

    class LedgerEntries(BaseModel):
        entries: list[LedgerEntry]

    class Invoice(BaseModel):
        id: str
        invoice_number: str
        series: str
        number: int
        type_code: str  # "380" an invoice, "381" a credit note
        credited_invoice_id: str | None
        issue_date: str
        totals: dict[str, Any]
        pdf_sha256: str
        xml_sha256: str
        ledger_seq: int
        archive: dict[str, Any]  # the archive's receipt, or {"status": "pending"}
        links: dict[str, str]

    class InvoiceList(BaseModel):
        invoices: list[Invoice]

    class BatchQueued(BaseModel):
        queued: int
        idempotency_keys: list[str]
        results: str

    class Quote(BaseModel):
        id: str
        reference: str
        created_at: when
        valid_until: str
        totals: dict[str, Any]
        invoice: dict[str, Any]
        converted_invoice_id: str | None
        links: dict[str, str]

    return (SignUpAccepted, TotpEnrolment, RecoveryCodes, SecondFactorPassed, ApiKeyCreated,
            ApiKeyList, LedgerEntries, InvoiceList, BatchQueued, Quote)


def _query_models() -> dict[str, type[BaseModel]]:
    """The query parameters of the routes that read any, as models (read by
    the routes with bodies.query_int and path_uuid, within these bounds)."""
    from uuid import UUID

    from pydantic import BaseModel, Field

    class LedgerVerifyQuery(BaseModel):
        since_closing: UUID | None = None

    class LedgerEntriesQuery(BaseModel):
        after: int = Field(0, ge=0, le=2**62)
        limit: int = Field(100, ge=1, le=1000)

    class InvoicesQuery(BaseModel):
        idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    return {m.__name__: m for m in (LedgerVerifyQuery, LedgerEntriesQuery, InvoicesQuery)}
