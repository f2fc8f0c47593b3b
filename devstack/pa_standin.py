"""A local Plateforme Agréée on 127.0.0.1, speaking the Flow Service API
(AFNOR XP Z12-013) as chalicelib/adapters/pa.py calls it, for the tests and,
later, the local run command.

- `POST /oauth2/token`: OAuth2 client credentials (HTTP Basic), bearer
  tokens of `token_lifetime` seconds; every other route but the healthcheck
  needs one (401 otherwise; `revoke_tokens()` makes the current ones fail).
- `POST /flow-service/v1/flows`: multipart/form-data (flowInfo JSON + file),
  read with the standard library's email parser. 202 with an acknowledgement
  Pending; a wrong sha256 answers 202 with Error ChecksumMismatch; a
  trackingId seen before answers 409 with Error AlreadyExistingFlow and the
  first flow's id; a malformed flowInfo 400 with Error InvalidSchema.
- `advance()` (the PA's asynchronous work, called by a test or by the
  `tick_seconds` timer): Pending acknowledgements become Ok, then each
  deposited invoice moves one step along its script (by default 200, 201,
  202, 203, 204, 205, 211, 212), each status an inbound CDAR flow
  (documents/cdar.py) carrying the deposit's trackingId. `emit()` sends one
  status now (a late 213), `deliver()` any bytes as a status flow; an
  invoice number already rejected gets 213 DOUBLON when deposited again.
- `receive_invoice()`: an inbound invoice flow (a supplier's).
- `POST /flow-service/v1/flows/search` (updatedAfter exclusive, limit <= 100,
  oldest first), `GET /flow-service/v1/flows/{id}?docType=...`,
  `GET /flow-service/v1/healthcheck`, and the Directory:
  `GET /flow-service/v1/siren/code-insee:{siren}`, `.../siret/code-insee:{siret}`,
  `.../directory-line/code:{id}`.
- `stop()` / `start()` on the same port (down, then up); `failing = 503`
  makes every route answer that status while it stays set; `delay_seconds`
  slows every answer; `reject_tokens` refuses every bearer token;
  `redirect_to` answers every route with a 307 there; `garbage` answers
  every authorized route 200 with those bytes (a PA answering nonsense).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from chalicelib.documents.cdar import PARTY_STATUS, PLATFORM_STATUS, Party, build_status
from chalicelib.domain.pa_flows import (
    DOC_TYPES,
    FLOW_PROFILES,
    FLOW_SYNTAXES,
    MAX_SEARCH_LIMIT,
    MAX_TRACKING_ID,
    PROCESSING_RULES,
)
from devstack.anchor_standins import _Quiet, _Server

PREFIX = "/flow-service"
HAPPY_PATH = (200, 201, 202, 203, 204, 205, 211, 212)
PLATFORM_CODES = frozenset({200, 201, 202, 203, 213})
MAX_DEPOSIT_BYTES = 20 * 1024 * 1024
PLATFORM_SIREN = "999999999"
LOCAL_CLIENT_SECRET = "local-secret"  # a stand-in's test credential


@dataclass
class _Flow:
    flow_id: str
    tracking_id: str | None
    direction: str
    syntax: str
    profile: str
    rule: str
    name: str
    content: bytes
    ack: str
    updated_at: datetime
    submitted_at: datetime
    reasons: tuple[str, ...] = ()
    invoice_number: str | None = None
    script: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "flowId": self.flow_id, "trackingId": self.tracking_id,
            "flowDirection": self.direction, "flowSyntax": self.syntax,
            "flowProfile": self.profile, "processingRule": self.rule, "name": self.name,
            "submittedAt": _instant(self.submitted_at), "updatedAt": _instant(self.updated_at),
            "acknowledgement": {"status": self.ack,
                                "details": [{"level": "Error", "reasonCode": code}
                                            for code in self.reasons]},
        }


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


DEFAULT_DIRECTORY = (
    {"addressingIdentifier": "123456782", "siren": "123456782", "siret": None,
     "routingCode": None, "platform": "0001", "validFrom": "2026-09-01", "validTo": None},
    {"addressingIdentifier": "123456782_00011", "siren": "123456782",
     "siret": "12345678200011", "routingCode": "COMPTA", "platform": "0001",
     "validFrom": "2026-09-01", "validTo": None},
    {"addressingIdentifier": "987654321", "siren": "987654321", "siret": None,
     "routingCode": None, "platform": "0002", "validFrom": "2026-09-01",
     "validTo": "2027-12-31"},
)


class PaStandIn(_Server):
    def __init__(self, port: int = 0, *, client_id: str = "einvoice-local",
                 client_secret: str = LOCAL_CLIENT_SECRET, token_lifetime: int = 1800,
                 tick_seconds: float | None = None) -> None:
        super().__init__(port)
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.failing: int | None = None
        self.delay_seconds = 0.0  # every answer waits this long (a slow PA)
        self.reject_tokens = False  # every bearer token is refused (401)
        self.redirect_to: str | None = None  # every route answers 307 to this URL
        self.garbage: bytes | None = None  # every authorized route answers 200 with this
        self.tokens_issued = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for tests
        self.directory = [dict(line) for line in DEFAULT_DIRECTORY]
        self._lock = threading.RLock()
        self._tokens: dict[str, datetime] = {}
        self._flows: dict[str, _Flow] = {}
        self._by_tracking: dict[str, str] = {}
        self._rejected_numbers: set[str] = set()
        self._last = datetime(2026, 1, 1, tzinfo=UTC)
        self._tick = tick_seconds
        self._ticker: threading.Timer | None = None

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def base_url(self) -> str:
        return f"{self.url}{PREFIX}"

    # -- control (tests, the local run) -----------------------------------------------------

    def start(self) -> None:
        super().start()
        if self._tick and self._ticker is None:
            self._schedule()

    def stop(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
        super().stop()

    def _schedule(self) -> None:
        def tick() -> None:
            self.advance()
            if self._ticker is not None:
                self._schedule()
        self._ticker = threading.Timer(self._tick or 1.0, tick)
        self._ticker.daemon = True
        self._ticker.start()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def flow(self, flow_id: str) -> dict[str, Any]:
        with self._lock:
            return self._flows[flow_id].as_json()

    def flow_of(self, tracking_id: str) -> dict[str, Any]:
        with self._lock:
            return self._flows[self._by_tracking[tracking_id]].as_json()

    def script(self, tracking_id: str, codes: list[int]) -> None:
        """The statuses `advance()` will send for this invoice, in order."""
        with self._lock:
            self._flows[self._by_tracking[tracking_id]].script = list(codes)

    def advance(self) -> int:
        """One step of the PA's asynchronous work; how many changes it made."""
        changes = 0
        with self._lock:
            for flow in list(self._flows.values()):
                if flow.direction != "Out" or flow.ack == "Error":
                    continue
                if flow.ack == "Pending":
                    flow.ack, flow.updated_at = "Ok", self._now()
                    changes += 1
                    continue
                if flow.script:
                    code = flow.script.pop(0)
                    reasons = ("DOUBLON",) if code == 213 else ()
                    self._status(flow, code, reasons)
                    changes += 1
        return changes

    def emit(self, tracking_id: str, code: int, reasons: tuple[str, ...] = (),
             amounts: tuple[tuple[Decimal, Decimal], ...] = ()) -> str:
        """Send one status for a deposited invoice now; the CDAR flow's id."""
        with self._lock:
            flow = self._flows[self._by_tracking[tracking_id]]
            return self._status(flow, code, reasons, amounts)

    def receive_invoice(self, content: bytes, *, syntax: str = "CII",
                        name: str = "invoice.xml") -> str:
        """An invoice a supplier sent us: an inbound flow; its id."""
        with self._lock:
            return self._add(None, "In", syntax, "Basic", "B2B", name, content, "Ok").flow_id

    def deliver(self, content: bytes, tracking_id: str | None = None) -> str:
        """An inbound CDAR flow of exactly these bytes (the same message again,
        a hostile one); its id."""
        with self._lock:
            return self._add(tracking_id, "In", "CDAR", "Basic", "NotApplicable",
                             "status.xml", content, "Ok").flow_id

    # -- the PA's behaviour -----------------------------------------------------------------

    def _now(self) -> datetime:
        """Strictly increasing update times: a cursor never sees two flows in
        one instant (a real PA may; the client copes, docs/pa.md)."""
        moment = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        self._last = moment
        return moment

    def _add(self, tracking_id: str | None, direction: str, syntax: str, profile: str,
             rule: str, name: str, content: bytes, ack: str,
             reasons: tuple[str, ...] = ()) -> _Flow:
        now = self._now()
        flow = _Flow(str(uuid.uuid4()), tracking_id, direction, syntax, profile, rule, name,
                     content, ack, now, now, reasons)
        self._flows[flow.flow_id] = flow
        if tracking_id is not None:
            self._by_tracking.setdefault(tracking_id, flow.flow_id)
        return flow

    def _status(self, flow: _Flow, code: int, reasons: tuple[str, ...] = (),
                amounts: tuple[tuple[Decimal, Decimal], ...] = ()) -> str:
        number = flow.invoice_number or flow.tracking_id or flow.flow_id
        if code == 212 and not amounts:
            amounts = ((Decimal("20.00"), Decimal("120.00")),)
        if code in (206, 207, 208, 210) and not reasons:
            reasons = ("CMD_ERR",)
        if code == 213:
            self._rejected_numbers.add(number)
            flow.script = []
        moment = self._now()
        cdar = build_status(
            message_id=f"CDV-{uuid.uuid4().hex[:20]}", issued_at=moment,
            invoice_number=number, invoice_date=moment.date(), code=code,
            issuer=Party(PLATFORM_SIREN, "WK"), recipients=[Party(PLATFORM_SIREN, "SE")],
            reason_codes=reasons, amounts=amounts,
            type_code=PLATFORM_STATUS if code in PLATFORM_CODES else PARTY_STATUS)
        # The status flow carries the deposit's trackingId (our invoice id).
        return self._add(flow.tracking_id, "In", "CDAR", "Basic", "NotApplicable",
                         f"{number}-{code}.xml", cdar, "Ok").flow_id

    def _deposit(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = _multipart(headers.get("Content-Type", ""), body)
        info_part, file_part = parts.get("flowInfo"), parts.get("file")
        try:
            info = json.loads(info_part or b"")
            tracking = info["trackingId"]
            checks: tuple[bool, ...] = (
                      isinstance(tracking, str) and 0 < len(tracking) <= MAX_TRACKING_ID,
                      info.get("processingRule") in PROCESSING_RULES,
                      info.get("flowSyntax") in FLOW_SYNTAXES,
                      info.get("flowProfile") in FLOW_PROFILES,
                      isinstance(info.get("name"), str), file_part is not None)
        except (ValueError, KeyError, TypeError):
            checks = (False,)
        if not all(checks):
            return 400, {"acknowledgement": {"status": "Error", "details": [
                {"level": "Error", "reasonCode": "InvalidSchema"}]}}
        assert file_part is not None
        with self._lock:
            if tracking in self._by_tracking:
                first = self._flows[self._by_tracking[tracking]]
                return 409, {"flowId": first.flow_id, "trackingId": tracking,
                             "acknowledgement": {"status": "Error", "details": [
                                 {"level": "Error", "reasonCode": "AlreadyExistingFlow"}]}}
            given = info.get("sha256")
            if given is not None and given != hashlib.sha256(file_part).hexdigest():
                flow = self._add(tracking, "Out", info["flowSyntax"], info["flowProfile"],
                                 info["processingRule"], info["name"], file_part, "Error",
                                 ("ChecksumMismatch",))
                return 202, flow.as_json()
            flow = self._add(tracking, "Out", info["flowSyntax"], info["flowProfile"],
                             info["processingRule"], info["name"], file_part, "Pending")
            flow.invoice_number = _invoice_number(file_part, info["flowSyntax"])
            if flow.invoice_number in self._rejected_numbers:
                flow.script = [200, 213]
            elif flow.syntax != "CDAR":
                flow.script = list(HAPPY_PATH)
            return 202, flow.as_json()

    def _search(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body or b"{}")
            limit = int(request.get("limit", 25))
            where = request.get("where") or {}
            after = where.get("updatedAfter")
            after_moment = datetime.fromisoformat(after.replace("Z", "+00:00")) \
                if after else None
        except (ValueError, TypeError, AttributeError):
            return 400, {"error": "bad search"}
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            return 400, {"error": "limit must be 1 to 100"}
        with self._lock:
            flows = sorted(self._flows.values(), key=lambda f: f.updated_at)
            chosen = [f for f in flows
                      if (after_moment is None or f.updated_at > after_moment)
                      and (not where.get("flowDirection")
                           or f.direction in where["flowDirection"])
                      and (not where.get("flowSyntax") or f.syntax in where["flowSyntax"])
                      and (not where.get("trackingId") or f.tracking_id == where["trackingId"])
                      and (not where.get("ackStatus") or f.ack == where["ackStatus"])]
            return 200, {"limit": limit, "filters": where,
                         "results": [f.as_json() for f in chosen[:limit]]}

    def _token(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        form = parse_qs(body.decode("ascii", "replace"))
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        if headers.get("Authorization", "") != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        token = base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
        with self._lock:
            self._tokens[token] = datetime.now(UTC) + timedelta(seconds=self.token_lifetime)
            self.tokens_issued += 1
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": self.token_lifetime}

    def _authorized(self, headers: Any) -> bool:
        value = headers.get("Authorization", "")
        if self.reject_tokens or not value.startswith("Bearer "):
            return False
        with self._lock:
            until = self._tokens.get(value.removeprefix("Bearer "))
        return until is not None and datetime.now(UTC) < until

    def _directory_lines(self, path: str) -> tuple[int, Any]:
        for prefix, key in (("/v1/siren/code-insee:", "siren"),
                            ("/v1/siret/code-insee:", "siret")):
            if path.startswith(prefix):
                value = path.removeprefix(prefix)
                lines = [line for line in self.directory if line[key] == value]
                return (200, {"results": lines}) if lines else (404, {"error": "not found"})
        if path.startswith("/v1/directory-line/code:"):
            value = path.removeprefix("/v1/directory-line/code:")
            for line in self.directory:
                if line["addressingIdentifier"] == value:
                    return 200, line
        return 404, {"error": "not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(_Quiet):
            def _json(self, status: int, value: Any) -> None:
                self._answer(status, json.dumps(value).encode(), "application/json")

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                stand_in.requests.append((method, url.path))
                body = self._body(MAX_DEPOSIT_BYTES) if method == "POST" else b""
                if body is None:
                    return
                if stand_in.delay_seconds:
                    time.sleep(stand_in.delay_seconds)
                if stand_in.failing:
                    self._json(stand_in.failing, {"error": "unavailable <b>detail</b>"})
                    return
                if stand_in.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", stand_in.redirect_to + url.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if method == "POST" and url.path == "/oauth2/token":
                    self._json(*stand_in._token(self.headers, body))
                    return
                if not url.path.startswith(PREFIX):
                    self._json(404, {"error": "not found"})
                    return
                path = url.path.removeprefix(PREFIX)
                if method == "GET" and path == "/v1/healthcheck":
                    self._json(200, {"status": "UP"})
                    return
                if not stand_in._authorized(self.headers):
                    self._json(401, {"error": "invalid_token"})
                    return
                if stand_in.garbage is not None:
                    self._answer(200, stand_in.garbage, "application/json")
                    return
                if method == "POST" and path == "/v1/flows":
                    self._json(*stand_in._deposit(self.headers, body))
                elif method == "POST" and path == "/v1/flows/search":
                    self._json(*stand_in._search(body))
                elif method == "GET" and path.startswith("/v1/flows/"):
                    self._fetch(path.removeprefix("/v1/flows/"),
                                parse_qs(url.query).get("docType", ["Original"])[0])
                elif method == "GET":
                    self._json(*stand_in._directory_lines(path))
                else:
                    self._json(404, {"error": "not found"})

            def _fetch(self, flow_id: str, doc_type: str) -> None:
                with stand_in._lock:
                    flow = stand_in._flows.get(flow_id)
                    flow = replace(flow) if flow is not None else None
                if flow is None or doc_type not in DOC_TYPES:
                    self._json(404, {"error": "not found"})
                elif doc_type == "Metadata":
                    self._json(200, flow.as_json())
                elif doc_type == "Original":
                    self._answer(200, flow.content, "application/octet-stream")
                else:
                    self._json(404, {"error": "no such rendition"})

            def do_POST(self) -> None:
                self._route("POST")

            def do_GET(self) -> None:
                self._route("GET")

        return Handler


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The named parts of a multipart/form-data body (standard library email)."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    return parts


def _invoice_number(content: bytes, syntax: str) -> str | None:
    """The invoice number (BT-1) in a CII or Factur-X deposit, for DOUBLON."""
    try:
        if syntax == "Factur-X":
            from facturx import get_xml_from_pdf
            _, content = get_xml_from_pdf(content, check_xsd=False)
        root = etree.fromstring(content, parser=etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False))
    except Exception:  # noqa: BLE001 (a stand-in: no number, no DOUBLON)
        return None
    found = root.find("{*}ExchangedDocument/{*}ID")
    return found.text.strip() if found is not None and found.text else None
