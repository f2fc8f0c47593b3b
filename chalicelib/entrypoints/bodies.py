"""What a request carries: its JSON body (one strict reader for every route),
the body models of the account routes, and ids and numbers in its path or query.

Every route reads its body with `json_body`, within its route's bound in
access.BODY_LIMITS (413 beyond, before a byte is parsed; numbers as exact decimals, a
repeated key, NaN or nesting too deep refused, as domain.inputs does for
every edge), and a body model's errors name each field the same way
(domain.inputs.violations_from).
"""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from chalice.app import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.inputs import read_json, violations_from
from chalicelib.entrypoints.access import bounded_body


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignUpBody(_Body):
    email: str = Field(max_length=1000)


class ConfirmBody(_Body):
    token: str = Field(max_length=200)
    tenant_name: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class LogInBody(_Body):
    email: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class ChangePasswordBody(_Body):
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


class ApiKeyBody(_Body):
    name: str = Field(max_length=1000)
    scopes: list[str] = Field(max_length=20)
    expires_in_days: int = 90


class CodeBody(_Body):
    code: str = Field(max_length=100)


class SecondFactorBody(_Body):
    code: str | None = Field(default=None, max_length=100)
    recovery_code: str | None = Field(default=None, max_length=100)


Model = TypeVar("Model", bound=BaseModel)


def json_body(request: Request, *, empty: object = None,
              not_json: str = "must be a JSON object") -> Any:
    """The body as JSON, once within its route's bound (`bounded_body`);
    InvalidInput naming `body` (see domain.inputs.read_json)."""
    return read_json(bounded_body(request), empty=empty, not_json=not_json)


def parse(request: Request, model: type[Model]) -> Model:
    """The body as `model` (an empty body is `{}`); InvalidInput naming every broken field."""
    raw = json_body(request, empty={}, not_json="is not valid JSON (or nested too deeply)")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(violations_from(exc)) from None


def path_uuid(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise InvalidInput([Violation(field, "must be a UUID")]) from None


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    params = request.query_params
    raw = params.get(name) if params is not None else None
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and low <= int(raw) <= high):
        raise InvalidInput([Violation(name, f"must be a whole number from {low} to {high}")])
    return int(raw)
