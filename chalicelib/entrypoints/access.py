"""Who may call what: the roles, each route's rule, and the check of a caller against it.

Each route module declares its routes where they are, by the view name app.py
gives them: `protect` with the route's rule, or `public`. Nothing else lists
them; `route_table` gathers every declaration so a test can check that each
Chalice route is declared exactly once, and a new route that forgets its
rule cannot slip in silently public.

Owners and platform admins (and anyone who enrolled one) must pass their
second factor in each session before anything but enrolling it, passing it,
or logging out. An API key does only what its scopes name, and only on the
routes that say which scope they need.

Beside the rules, BODY_LIMITS bounds the body of every route.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.domain.errors import Forbidden, PayloadTooLarge, Violation
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.api_keys import API_KEY_ROLE

if TYPE_CHECKING:
    from chalice.app import Request

EVERYONE = frozenset({"owner", "accountant", "member", "platform_admin"})
OWNERS = frozenset({"owner"})
# Who may issue invoices and credit notes: not the accountant, who reads.
ISSUERS = frozenset({"owner", "member"})
# Who may seal a period: the owner and the accountant, whose act it is.
SEALERS = frozenset({"owner", "accountant"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    writes: bool = False  # state-changing: CSRF token required, rate-limited per user
    before_mfa: bool = False  # reachable before an owner/admin has passed TOTP
    # Each route has its own per-user bucket; logging out is never limited, so
    # a stolen session cannot keep its victim from ending it.
    rate_limited: bool = True
    # The scope an API key needs here; None: people only (cookie session).
    api_scope: str | None = None


@dataclass(frozen=True)
class Protected:
    """A route that needs a caller: its view name (its rate-limit bucket too) and rule."""

    view: str
    rule: Rule


# Every declaration in the order the route modules made them; a name declared
# twice stays twice, for the route table's test to see.
_declared: list[tuple[str, Rule | None]] = []


def protect(view: str, rule: Rule) -> Protected:
    """Declare the rule of the route app.py names `view`; its guard is given the result."""
    _declared.append((view, rule))
    return Protected(view, rule)


def public(view: str) -> None:
    """Declare the route app.py names `view` open to anyone, no session needed."""
    _declared.append((view, None))


# The modules that declare routes (all of chalicelib/entrypoints/ that serve one).
ROUTE_MODULES = ("accounts", "api_keys", "closings", "health", "invoices", "ledger", "mfa",
                 "openapi", "quotes")


KIB = 1024
MIB = 1024 * KIB
# The most bytes each route reads, by "METHOD /template" as app.py names it:
# a longer body is a 413 naming the bound, after the attempt is counted and
# before a byte is parsed (parsing costs about a microsecond a byte). Small
# for credentials and codes (16 KiB: every field escaped as \uXXXX still
# fits); 1 MiB for one invoice or quote (1,000 lines fill about 170 KB); 6 MiB
# for a batch of up to MAX_BATCH (100) invoices: what Lambda and Scaleway's
# functions accept in a request anyway (6 MB, 6 MiB). A route that reads no
# body takes the small bound too. test_edge_limits.py fails if a route of
# app.py has no bound here, or a bound no route.
SMALL_BODY = 16 * KIB
BODY_LIMITS: dict[str, int] = {
    "GET /health": SMALL_BODY,
    "GET /openapi.json": SMALL_BODY,
    "POST /signup": SMALL_BODY,
    "POST /signup/confirm": SMALL_BODY,
    "POST /login": SMALL_BODY,
    "POST /logout": SMALL_BODY,
    "POST /password": SMALL_BODY,
    "GET /me": SMALL_BODY,
    "POST /mfa/totp": SMALL_BODY,
    "POST /mfa/totp/confirm": SMALL_BODY,
    "POST /mfa": SMALL_BODY,
    "GET /ledger/verify": SMALL_BODY,
    "GET /ledger/entries": SMALL_BODY,
    "POST /api-keys": SMALL_BODY,
    "GET /api-keys": SMALL_BODY,
    "DELETE /api-keys/{key_id}": SMALL_BODY,
    "POST /invoices": 1 * MIB,
    "GET /invoices": SMALL_BODY,
    "POST /invoice-batches": 6 * MIB,
    "GET /invoices/{invoice_id}": SMALL_BODY,
    "GET /invoices/{invoice_id}/lifecycle": SMALL_BODY,
    "GET /invoices/{invoice_id}/pdf": SMALL_BODY,
    "GET /invoices/{invoice_id}/xml": SMALL_BODY,
    "POST /invoices/{invoice_id}/credit-notes": 1 * MIB,
    "GET /invoices/{invoice_id}/proof": SMALL_BODY,
    "POST /closings": SMALL_BODY,
    "GET /closings": SMALL_BODY,
    "GET /closings/{closing_id}": SMALL_BODY,
    "POST /quotes": 1 * MIB,
    "GET /quotes/{quote_id}": SMALL_BODY,
    "POST /quotes/{quote_id}/invoice": 1 * MIB,
}


def body_limit(request: Request) -> tuple[str, int]:
    """The route ("METHOD /template") and the most bytes its body may hold
    (access.BODY_LIMITS; a route missing there gets the small bound)."""
    route = f"{request.method} {(request.context or {}).get('resourcePath') or '?'}"
    return route, BODY_LIMITS.get(route, SMALL_BODY)


def bounded_body(request: Request) -> bytes | str:
    """The raw body, or PayloadTooLarge (413) naming the route's bound when it
    is longer: measured, never parsed. Callers count the attempt first."""
    raw = request.raw_body or b""
    route, limit = body_limit(request)
    if len(raw) > limit:
        raise PayloadTooLarge([Violation("body", f"must be at most {limit} bytes on {route}")])
    return raw


@dataclass(frozen=True)
class RouteTable:
    rules: dict[str, Rule]
    public: frozenset[str]
    declared: tuple[str, ...]  # every declaration's view name, repeats kept


def route_table() -> RouteTable:
    """Every route's declaration. Imports every route module, which app.py
    itself never does at once (each route imports its own on first call)."""
    for module in ROUTE_MODULES:
        importlib.import_module(f"chalicelib.entrypoints.{module}")
    return RouteTable(rules={view: rule for view, rule in _declared if rule is not None},
                      public=frozenset(view for view, rule in _declared if rule is None),
                      declared=tuple(view for view, _ in _declared))


def authorize(rule: Rule, principal: Principal) -> None:
    if principal.role == API_KEY_ROLE:
        if rule.api_scope is None:
            raise Forbidden([Violation("Authorization", "API keys may not do this: "
                                       "people only")])
        if rule.api_scope not in principal.scopes:
            raise Forbidden([Violation("scope", f"this API key lacks {rule.api_scope}")])
        return
    if principal.role not in rule.roles:
        raise Forbidden([Violation("role", f"{principal.role} may not do this")])
    if principal.needs_second_factor and not rule.before_mfa:
        if principal.has_second_factor:
            raise Forbidden([Violation("totp", "pass your second factor first: POST /mfa")])
        raise Forbidden([Violation("totp", "owners and admins must enrol a second factor "
                                   "first: POST /mfa/totp, then POST /mfa/totp/confirm")])
