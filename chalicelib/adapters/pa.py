"""The PA port's adapter: a Plateforme Agréée's Flow Service and Directory
(AFNOR XP Z12-013), with its OAuth2 client-credentials token.

- Transport: urllib3 (it comes with boto3), no retries of its own (the
  caller's outbox and poller retry), short timeouts, TLS verified; https
  only, plain http only to loopback (the local stand-in). The deposit's
  multipart/form-data body is built by urllib3's encode_multipart_formdata.
- Every failure becomes PaUnavailable (down, timeout, 5xx, 429, an answer we
  cannot read: try later) or PaRefused / PaNotFound (the PA said no), with a
  reason of ours: a status code or an exception type, never the PA's text,
  never the token. No log line here holds either.
- Auth: `ClientCredentials` asks the token URL for a bearer token
  (grant_type=client_credentials, client id and secret in HTTP Basic, RFC 6749
  §4.4), keeps it until `REFRESH_MARGIN` before it expires (by the injected
  clock), and the client asks once more after a 401 with a fresh token.

The JSON field names (flowInfo, trackingId, acknowledgement.details[].reasonCode,
search `where` / `results`, updatedAt...) follow the published XP Z12-013
OpenAPI models as SDKs generated from it show them: docs/pa.md#verified.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.filepost import encode_multipart_formdata

from chalicelib.domain.pa_flows import (
    DOC_TYPES,
    Acknowledgement,
    DirectoryLine,
    DocType,
    FlowInfo,
    FlowPage,
    FlowSummary,
    InvalidPaRecord,
    SearchQuery,
)
from chalicelib.ports import Clock, PaNotFound, PaRefused, PaUnavailable, SystemClock
from chalicelib.secret import Secret

CONNECT_SECONDS = 3.0
READ_SECONDS = 10.0
MAX_ANSWER_BYTES = 10 * 1024 * 1024  # a fetched invoice (Factur-X) or a page of flows
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
REFRESH_MARGIN = timedelta(seconds=60)
USER_AGENT = "einvoice-pa-client"


def checked_url(url: str, name: str) -> str:
    """An https URL (http only on loopback), no credentials, query or fragment."""
    parts = urlsplit(url)
    loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if (parts.scheme != "https" and not (parts.scheme == "http" and loopback)) \
            or not parts.hostname or parts.username or parts.password or parts.query \
            or parts.fragment:
        raise ValueError(f"{name} must be an https URL (http only on localhost; "
                         "no credentials, query or fragment)")
    return url.rstrip("/")


def _pool() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_SECONDS, read=READ_SECONDS),
        retries=False, headers={"User-Agent": USER_AGENT})


def _failure(exc: BaseException) -> PaUnavailable:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    # urllib3's NewConnectionError (refused, no route) is a ConnectTimeoutError too
    if isinstance(exc, urllib3.exceptions.TimeoutError) \
            and not isinstance(exc, urllib3.exceptions.NewConnectionError):
        return PaUnavailable("timeout")
    return PaUnavailable(f"connection failed: {type(exc).__name__[:60]}")


def _read(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    """The body, refused beyond `limit` bytes (read in pieces, never whole first)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        response.close()  # not drained: the rest stays unread
        raise PaUnavailable(f"answer larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.stream(64 * 1024):
        size += len(chunk)
        if size > limit:
            response.close()  # not drained: the rest stays unread
            raise PaUnavailable(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PaUnavailable("answer is not JSON") from None


class ClientCredentials:
    """A bearer token from an OAuth2 token URL, cached until shortly before it
    expires. Thread-safe: one refresh at a time."""

    def __init__(self, token_url: str, client_id: str, client_secret: Secret, *,
                 clock: Clock | None = None, scope: str | None = None,
                 pool: urllib3.PoolManager | None = None) -> None:
        self._url = checked_url(token_url, "pa_token_url")
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._clock = clock or SystemClock()
        self._pool = pool or _pool()
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._until: datetime | None = None

    def token(self) -> str:
        with self._lock:
            now = self._clock.now()
            if self._token is None or self._until is None or now >= self._until:
                self._token, lifetime = self._fetch()
                self._until = now + max(lifetime - REFRESH_MARGIN, timedelta(0))
            return self._token.get_secret_value()

    def invalidate(self) -> None:
        """Forget the token (after a 401): the next call asks for another."""
        with self._lock:
            self._token = self._until = None

    def _fetch(self) -> tuple[Secret, timedelta]:
        fields = {"grant_type": "client_credentials"}
        if self._scope:
            fields["scope"] = self._scope
        headers = urllib3.make_headers(
            basic_auth=f"{quote(self._client_id, safe='')}:"
                       f"{quote(self._secret.get_secret_value(), safe='')}")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Accept"] = "application/json"
        try:
            response = self._pool.request(
                "POST", self._url, body=urlencode(fields),
                headers=headers, preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise _failure(exc) from None
        try:
            body = _read(response, MAX_TOKEN_ANSWER_BYTES)
        finally:
            response.release_conn()
        if response.status in (400, 401, 403):
            raise PaRefused(f"token refused: HTTP {response.status}", response.status)
        if response.status != 200:
            raise PaUnavailable(f"token: HTTP {response.status}")
        answer = _json(body)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        kind = answer.get("token_type", "Bearer") if isinstance(answer, dict) else None
        expires = answer.get("expires_in", 300) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or not isinstance(kind, str) \
                or kind.lower() != "bearer" or not isinstance(expires, int) \
                or isinstance(expires, bool) or not 0 < expires <= 86400 \
                or any(c in token for c in "\r\n "):
            raise PaUnavailable("token answer unreadable")
        return Secret(token), timedelta(seconds=expires)


class FlowServiceClient:
    """PaClient over HTTP: `base_url` is https://{host}/flow-service; the
    Directory is on `directory_url` (by default the same base)."""

    def __init__(self, base_url: str, auth: ClientCredentials, *,
                 directory_url: str | None = None,
                 pool: urllib3.PoolManager | None = None) -> None:
        self._base = checked_url(base_url, "pa_base_url")
        self._directory = checked_url(directory_url, "pa_directory_url") \
            if directory_url else self._base
        self._auth = auth
        self._pool = pool or _pool()

    # -- the port ---------------------------------------------------------------------------

    def deposit(self, flow: FlowInfo, content: bytes) -> Acknowledgement:
        info = {"trackingId": flow.tracking_id, "name": flow.name,
                "processingRule": flow.processing_rule, "flowSyntax": flow.flow_syntax,
                "flowProfile": flow.flow_profile}
        if flow.sha256:
            info["sha256"] = flow.sha256
        body, content_type = encode_multipart_formdata({
            "flowInfo": ("flowInfo.json", json.dumps(info).encode(), "application/json"),
            "file": (flow.name, content, _media_type(flow.flow_syntax)),
        })
        status, answer = self._call("POST", f"{self._base}/v1/flows", body=body,
                                    content_type=content_type, refused_bodies=True)
        try:
            return _acknowledgement(_json(answer), flow.tracking_id)
        except PaUnavailable:
            if 400 <= status < 500:
                raise PaRefused(f"deposit refused: HTTP {status}", status) from None
            raise

    def search(self, query: SearchQuery) -> FlowPage:
        where: dict[str, Any] = {}
        if query.updated_after is not None:
            where["updatedAfter"] = _instant(query.updated_after)
        if query.direction is not None:
            where["flowDirection"] = [query.direction]
        if query.tracking_id is not None:
            where["trackingId"] = query.tracking_id
        if query.flow_syntax is not None:
            where["flowSyntax"] = [query.flow_syntax]
        _, answer = self._call("POST", f"{self._base}/v1/flows/search",
                               body=json.dumps({"limit": query.limit, "where": where}).encode(),
                               content_type="application/json")
        data = _json(answer)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) > query.limit:
            raise PaUnavailable("search answer unreadable")
        flows = tuple(sorted((_summary(item) for item in results),
                             key=lambda f: (f.updated_at, f.flow_id)))
        return FlowPage(flows, flows[-1].updated_at if flows else query.updated_after,
                        more=len(flows) == query.limit)

    def fetch(self, flow_id: str, doc_type: DocType = "Original") -> bytes:
        if doc_type not in DOC_TYPES:
            raise ValueError("doc_type: Metadata, Original, Converted or ReadableView")
        _, answer = self._call(
            "GET", f"{self._base}/v1/flows/{quote(flow_id, safe='')}?docType={doc_type}")
        return answer

    def siren(self, siren: str) -> tuple[DirectoryLine, ...]:
        return self._lines(f"{self._directory}/v1/siren/code-insee:{_digits(siren, 9)}")

    def siret(self, siret: str) -> tuple[DirectoryLine, ...]:
        return self._lines(f"{self._directory}/v1/siret/code-insee:{_digits(siret, 14)}")

    def directory_line(self, addressing_id: str) -> DirectoryLine:
        _, answer = self._call(
            "GET", f"{self._directory}/v1/directory-line/code:{quote(addressing_id, safe='')}")
        return _line(_json(answer))

    def healthcheck(self) -> bool:
        try:
            response = self._pool.request("GET", f"{self._base}/v1/healthcheck",
                                          preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError:
            return False
        try:
            _read(response, MAX_TOKEN_ANSWER_BYTES)
        except PaUnavailable:
            return False
        finally:
            response.release_conn()
        return response.status == 200

    # -- HTTP -------------------------------------------------------------------------------

    def _lines(self, url: str) -> tuple[DirectoryLine, ...]:
        _, answer = self._call("GET", url)
        data = _json(answer)
        items = data.get("results", data.get("lines")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise PaUnavailable("directory answer unreadable")
        return tuple(_line(item) for item in items)

    def _call(self, method: str, url: str, *, body: bytes | None = None,
              content_type: str | None = None,
              refused_bodies: bool = False) -> tuple[int, bytes]:
        """(status, body) of a 2xx answer (or of a 4xx one if `refused_bodies`:
        a deposit's refusal carries its acknowledgement); else a named error.
        A 401 is tried once more with a fresh token."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._auth.token()}",
                       "Accept": "application/json, */*"}
            if content_type:
                headers["Content-Type"] = content_type
            try:
                response = self._pool.request(method, url, body=body, headers=headers,
                                              preload_content=False, redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                raise _failure(exc) from None
            try:
                status = response.status
                if status == 401:
                    response.close()  # not drained: the rest stays unread
                    if attempt == 1:
                        self._auth.invalidate()
                        continue
                    raise PaRefused("HTTP 401 with a fresh token", 401)
                answer = _read(response, MAX_ANSWER_BYTES)
            finally:
                response.release_conn()
            if 200 <= status < 300:
                return status, answer
            if status == 404:
                raise PaNotFound("HTTP 404", 404)
            if status == 429 or status >= 500:
                raise PaUnavailable(f"HTTP {status}")
            if 400 <= status < 500 and refused_bodies:
                return status, answer
            if 400 <= status < 500:
                raise PaRefused(f"HTTP {status}", status)
            raise PaUnavailable(f"HTTP {status}")
        raise AssertionError("unreachable")  # pragma: no cover


def _media_type(syntax: str) -> str:
    return {"Factur-X": "application/pdf"}.get(syntax, "application/xml")


def _digits(value: str, count: int) -> str:
    if len(value) != count or not value.isdigit():
        raise ValueError(f"must be {count} digits")
    return value


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PaUnavailable("answer unreadable: a date")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PaUnavailable("answer unreadable: a date") from None
    if moment.tzinfo is None:
        raise PaUnavailable("answer unreadable: a date without its zone")
    return moment


def _reasons(ack: Mapping[str, Any]) -> tuple[str, ...]:
    details = ack.get("details") or []
    if not isinstance(details, list):
        raise PaUnavailable("acknowledgement unreadable")
    codes = [d.get("reasonCode") for d in details if isinstance(d, dict)]
    return tuple(c for c in codes if isinstance(c, str))


def _acknowledgement(data: Any, tracking_id: str) -> Acknowledgement:
    if not isinstance(data, dict) or not isinstance(data.get("acknowledgement"), dict):
        raise PaUnavailable("acknowledgement unreadable")
    ack = data["acknowledgement"]
    try:
        return Acknowledgement(flow_id=str(data.get("flowId") or ""),
                               tracking_id=str(data.get("trackingId") or tracking_id),
                               status=ack.get("status"), reason_codes=_reasons(ack))
    except InvalidPaRecord:
        raise PaUnavailable("acknowledgement unreadable") from None


def _summary(item: Any) -> FlowSummary:
    if not isinstance(item, dict) or not isinstance(item.get("acknowledgement"), dict):
        raise PaUnavailable("search answer unreadable")
    try:
        return FlowSummary(flow_id=str(item["flowId"]), tracking_id=item.get("trackingId"),
                           direction=item["flowDirection"],
                           flow_syntax=item["flowSyntax"],
                           ack_status=item["acknowledgement"].get("status"),
                           updated_at=_moment(item.get("updatedAt")),
                           reason_codes=_reasons(item["acknowledgement"]))
    except (KeyError, InvalidPaRecord):
        raise PaUnavailable("search answer unreadable") from None


def _line(item: Any) -> DirectoryLine:
    if not isinstance(item, dict):
        raise PaUnavailable("directory answer unreadable")
    try:
        return DirectoryLine(
            addressing_id=str(item["addressingIdentifier"]), siren=str(item["siren"]),
            siret=item.get("siret"), routing_code=item.get("routingCode"),
            platform=str(item["platform"]),
            valid_from=date.fromisoformat(item["validFrom"]),
            valid_to=date.fromisoformat(item["validTo"]) if item.get("validTo") else None)
    except (KeyError, TypeError, ValueError):
        raise PaUnavailable("directory answer unreadable") from None
