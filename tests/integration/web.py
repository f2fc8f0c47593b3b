"""Helpers for driving the HTTP API through Chalice's test client."""

from __future__ import annotations

import json
import re
import uuid
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any

from chalicelib import runtime
from chalicelib.config import settings
from chalicelib.ports import Account
from tests.conftest import remember

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
