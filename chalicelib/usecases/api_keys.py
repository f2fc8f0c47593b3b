"""API keys: how machines (a frontend's server, an integration) call us.

A key belongs to one tenant, carries scopes, expires within a year, and can be
revoked. Its secret (256 random bits, prefixed `eik_` so leaked keys are easy
to spot) is shown once at creation; only its SHA-256 is kept, which is enough
for a secret that cannot be guessed. A key is never a person: it cannot reach
people-only routes (sessions, passwords, second factor, key management).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from uuid import UUID

from chalicelib.domain.errors import InvalidInput, NotFound, Unauthorized, Violation
from chalicelib.domain.text import text_problem
from chalicelib.ports import ApiKey, ApiKeyDirectory, Clock, UnitOfWorkFactory
from chalicelib.usecases.accounts import Principal

SCOPES = frozenset({"ledger:read", "invoices:read", "invoices:write", "closings:write"})
PREFIX = "eik_"
API_KEY_ROLE = "api_key"


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(b"einvoice-api-key-v1|" + secret.encode("utf-8")).digest()


def create_api_key(principal: Principal, name: str, scopes: list[str], days: int,
                   unit_of_work: UnitOfWorkFactory, clock: Clock) -> tuple[ApiKey, str]:
    """The stored key and its secret (the only time the secret is seen)."""
    violations = []
    name = name.strip()
    problem = text_problem(name)
    if problem or not 1 <= len(name) <= 100:
        violations.append(Violation("name", problem or "must be 1 to 100 characters"))
    unknown = sorted(set(scopes) - SCOPES)
    if not scopes or unknown:
        violations.append(Violation("scopes", f"must be one or more of {sorted(SCOPES)}"
                                    + (f"; unknown: {unknown}" if unknown else "")))
    if not 1 <= days <= 365:
        violations.append(Violation("expires_in_days", "must be 1 to 365"))
    if violations:
        raise InvalidInput(violations)
    secret = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(uuid.uuid4(), name, tuple(sorted(set(scopes))), principal.user_id, None,
                 clock.now() + timedelta(days=days))
    with unit_of_work(principal.tenant_id) as uow:
        stored = uow.api_keys.add(key, secret_hash(secret))
    return stored, secret


def list_api_keys(principal: Principal, unit_of_work: UnitOfWorkFactory) -> list[ApiKey]:
    with unit_of_work(principal.tenant_id) as uow:
        return uow.api_keys.list()


def revoke_api_key(principal: Principal, key_id: UUID, unit_of_work: UnitOfWorkFactory) -> None:
    """Not found whether the key is another tenant's, unknown or revoked already."""
    with unit_of_work(principal.tenant_id) as uow:
        if not uow.api_keys.revoke(key_id):
            raise NotFound([Violation("key_id", "no such live key in this tenant")])


def authenticate_api_key(authorization: str, directory: ApiKeyDirectory) -> Principal:
    """`Authorization: Bearer eik_...` to the key's principal, or one uniform 401."""
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    found = None
    if (scheme.lower() == "bearer" and secret.startswith(PREFIX) and len(secret) <= 128
            and secret.isascii()):
        found = directory.find(secret_hash(secret))
    if found is None:
        raise Unauthorized([Violation("Authorization", "missing, unknown, expired or revoked "
                                      "API key")])
    key_id, tenant_id, scopes = found
    return Principal(key_id, tenant_id, API_KEY_ROLE, scopes=frozenset(scopes))
