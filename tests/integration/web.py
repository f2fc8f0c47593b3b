"""Helpers for driving the HTTP API through Chalice's test client: sign-up,
login, sessions with their second factor, API keys, invoice calls."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import TYPE_CHECKING, Any

import pyotp

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.ports import Account
from tests.conftest import remember
from tests.fakes import FrozenClock

if TYPE_CHECKING:
    from chalicelib.adapters.postgres import Database

PASSWORD = "correct horse battery"
remember(PASSWORD)


def cookies(response: Any) -> dict[str, str]:
    values = response.headers.get("Set-Cookie", [])
    values = [values] if isinstance(values, str) else values
    found = {v.split("=", 1)[0]: v for v in values}
    remember(*(v.split(";", 1)[0].split("=", 1)[1] for v in found.values()))
    return found


def cookie_header(response: Any) -> str:
    return "; ".join(v.split(";", 1)[0] for v in cookies(response).values())


def post(client: Any, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, body=json.dumps(body) if not isinstance(body, str) else body,
                       headers={"Content-Type": "application/json", **headers})


def mails_to(email: str) -> list[EmailMessage]:
    """What the app mailed to `email` (the local outbox), oldest first."""
    folder = settings().mail_outbox_dir
    assert folder is not None
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = BytesParser(policy=default).parsebytes(path.read_bytes())
        if message["To"] == email:
            found.append(message)
    return found


def confirmation_token(email: str) -> str:
    """The token of the newest confirmation link mailed to `email`."""
    for message in reversed(mails_to(email)):
        part = message.get_body(("plain",))
        assert part is not None
        match = re.search(r"#token=([A-Za-z0-9_-]+)", part.get_content())
        if match:
            remember(match.group(1))
            return match.group(1)
    raise AssertionError("no confirmation link was mailed")


def request_signup(client: Any, email: str) -> Any:
    remember(email)
    return post(client, "/signup", {"email": email})


def confirm_signup(client: Any, token: str, password: str = PASSWORD,
                   tenant_name: str = "Atelier") -> Any:
    return post(client, "/signup/confirm", {"token": token, "tenant_name": tenant_name,
                                            "password": password})


def signup(client: Any) -> tuple[Any, str]:
    """A confirmed sign-up: the owner's session response, and the email."""
    email = f"owner.{uuid.uuid4().hex[:8]}@example.fr"
    assert request_signup(client, email).status_code == 202
    return confirm_signup(client, confirmation_token(email)), email


def member_of(tenant_id: str, role: str = "member") -> str:
    """A non-admin user in the tenant (invitations come later), returns its email."""
    email = f"{role}.{uuid.uuid4().hex[:8]}@example.fr"
    remember(email)
    tenant = uuid.UUID(tenant_id)
    with runtime.database().unit_of_work(tenant) as uow:
        uow.users.add(Account(uuid.uuid4(), tenant, role, runtime.passwords().hash(PASSWORD)),
                      email)
    return email


def login(client: Any, email: str) -> Any:
    return post(client, "/login", {"email": email, "password": PASSWORD})


def csrf_of(response: Any) -> str:
    return cookies(response)["__Host-csrf"].split(";", 1)[0].split("=", 1)[1]


class Session:
    def __init__(self, response: Any) -> None:
        self.jar = cookie_header(response)
        self.csrf = csrf_of(response)
        self.token = cookies(response)["__Host-session"].split(";", 1)[0].split("=", 1)[1]
        self.body = response.json_body

    def post(self, client: Any, path: str, body: Any) -> Any:
        return post(client, path, body, Cookie=self.jar, **{"X-CSRF-Token": self.csrf})

    def me(self, client: Any) -> Any:
        return client.get("/me", headers={"Cookie": self.jar})


def code(secret: str, clock: FrozenClock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * steps))


def enrolled_owner(client: Any, clock: FrozenClock) -> tuple[Session, str, str, list[str]]:
    """An owner who enrolled TOTP; returns (session, email, secret, recovery codes)."""
    response, email = signup(client)
    session = Session(response)
    enrolment = session.post(client, "/mfa/totp", {})
    assert enrolment.status_code == 201
    secret = enrolment.json_body["secret"]
    remember(secret, enrolment.json_body["otpauth_uri"])
    assert enrolment.json_body["otpauth_uri"].startswith("otpauth://totp/einvoice:")
    confirmed = session.post(client, "/mfa/totp/confirm", {"code": code(secret, clock)})
    assert confirmed.status_code == 200
    remember(*confirmed.json_body["recovery_codes"])
    return session, email, secret, confirmed.json_body["recovery_codes"]


def owner_with_key(client: Any, frozen: FrozenClock,
                   scopes: list[str] | None = None) -> tuple[Session, dict[str, Any]]:
    owner, _, _, _ = enrolled_owner(client, frozen)
    created = owner.post(client, "/api-keys", {"name": "Accounting sync",
                                               "scopes": scopes or ["ledger:read"]})
    assert created.status_code == 201, created.json_body
    remember(created.json_body["secret"])
    return owner, created.json_body


WRITE = ["invoices:write", "invoices:read"]


def issue(client: Any, secret: str, body: Any, key: str | None = "key-1",
          path: str = "/invoices") -> Any:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, headers=headers,
                       body=body if isinstance(body, str) else json.dumps(body))


def get(client: Any, secret: str, path: str) -> Any:
    """As curl does: Accept */* (the gateway serves binary bodies only to a
    client that accepts them)."""
    return client.get(path, headers={"Authorization": f"Bearer {secret}", "Accept": "*/*"})


def within_one_minute_window(database: Database) -> None:
    """Fixed windows roll over at whole minutes of the database's clock: start
    well inside one, so a test's few requests all land in one window."""
    with database.transaction(None) as conn:
        [[second]] = conn.run("SELECT extract(second FROM clock_timestamp())::float8")
    if second >= 45:
        time.sleep(60.5 - second)


def seal(client: Any, secret: str, body: Any) -> Any:
    return client.post("/closings", body=body if isinstance(body, str) else json.dumps(body),
                       headers={"Authorization": f"Bearer {secret}",
                                "Content-Type": "application/json"})


# ---------------------------------------------------------------- Scaleway's HTTP events

def _title_case(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def scaleway_event(method: str, path: str, headers: dict[str, str] | None = None,
                   body: bytes | str = b"", client: str = "127.0.0.1") -> dict[str, Any]:
    """The event Scaleway's Python runtime hands a function, as its local
    testing framework builds it (scaleway/serverless-functions-python,
    local/event.py and local/infra.py): header names as the front forwards
    them, one value per query name, the body as text flagged base64 when it
    reads as base64, an empty `resourcePath`, and the ingress headers. The
    front appends `client` to any X-Forwarded-For the caller sent."""
    import base64
    import binascii
    from urllib.parse import parse_qsl

    path, _, query = path.partition("?")
    sent = {_title_case(k): v for k, v in (headers or {}).items()}
    forwarded = sent.pop("X-Forwarded-For", None)
    sent.update({"Forwarded": f"for={client};proto=https", "X-Forwarded-Proto": "https",
                 "X-Forwarded-For": f"{forwarded}, {client}" if forwarded else client,
                 "X-Envoy-External-Address": client, "K-Proxy-Request": "activator",
                 "X-Request-Id": str(uuid.uuid4())})
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters.setdefault(name, value)
    event: dict[str, Any] = {
        "path": path, "httpMethod": method, "headers": sent, "multiValueHeaders": None,
        "queryStringParameters": parameters, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariable": {}, "body": text,
        "requestContext": {"accountId": "", "resourceId": "", "stage": "", "requestId": "",
                           "resourcePath": "", "authorizer": None, "httpMethod": method,
                           "apiId": ""}}
    try:
        base64.b64decode(text, validate=True).decode("utf-8")
        event["isBase64Encoded"] = True
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    return event


class ScalewayClient:
    """Chalice's test client's interface (get, post, ...; same answers),
    served by functions/api.py from Scaleway-shaped events, as if from
    `client` (the address Scaleway's front saw)."""

    def __init__(self, client: str = "127.0.0.1") -> None:
        self.client = client
        self.answers: list[dict[str, Any]] = []  # what the function returned, in order

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | str = b"") -> Any:
        import base64

        from chalice.test import HTTPResponse

        from functions.api import handle

        answer = handle(scaleway_event(method, path, headers, body, self.client),
                        {"memoryLimitInMb": 256, "functionName": "api", "functionVersion": ""})
        self.answers.append(answer)
        assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
        raw = base64.b64decode(answer["body"]) if answer["isBase64Encoded"] \
            else answer["body"].encode("utf-8")
        return HTTPResponse(body=raw, headers=dict(answer["headers"]),
                            status_code=answer["statusCode"])

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Any:
        return self.request("OPTIONS", path, **kwargs)
