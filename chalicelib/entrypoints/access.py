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
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from chalicelib.domain.errors import Forbidden, Violation
from chalicelib.usecases.accounts import Principal
from chalicelib.usecases.api_keys import API_KEY_ROLE

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
                 "quotes")


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
