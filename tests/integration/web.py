"""Helpers for driving the HTTP API through Chalice's test client."""

from __future__ import annotations

import json
import uuid
from typing import Any

from chalicelib import runtime
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


def signup(client: Any) -> tuple[Any, str]:
    email = f"owner.{uuid.uuid4().hex[:8]}@example.fr"
    remember(email)
    return post(client, "/signup", {"tenant_name": "Atelier", "email": email,
                                    "password": PASSWORD}), email


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
