"""An invoice's lifecycle (statuses 200-213 and 220), as a state machine.

Pure: standard library only. What comes in is the statuses a PA reports
(CDAR messages, documents/cdar.py), in whatever order and as many times as
the network delivers them; what comes out is the invoice's current status, the
statuses applied (each once) and the anomalies (recorded, never applied).

The codes, labels and which ones need a reason or MEN amounts are the issue's
researched table (issue 16, "Lifecycle statuses"). The TRANSITIONS below are
OUR READING of the cycle of life described there and in the DGFiP external
specifications (platform statuses 200-203 then 213 for a platform rejection;
the buyer's processing 204-210; payment 211-212; 220 a cancellation): no
normative transition table was reachable from here. docs/pa.md#lifecycle.

Ordering rules (why permutations and duplicates give one answer):
- A status is identified by its code: the same code again is a duplicate, no
  effect (a status is never re-entered; a second partial payment is the
  payments issue's matter).
- `derive` orders the statuses by when they happened (the message's own
  date, then the code), not by when they arrived, so any delivery order gives
  the same result.
- From the current status, a status reachable through allowed transitions is
  applied, even over missing steps (a lost 201 does not stop 202); one the
  current status is reachable from is "late": recorded, current unchanged;
  any other is an anomaly, recorded and not applied. A status missing its
  reason or its MEN amounts is an anomaly too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Literal

LABELS: dict[int, str] = {
    200: "Déposée",
    201: "Émise par la plateforme",
    202: "Reçue",
    203: "Mise à disposition",
    204: "Prise en charge",
    205: "Approuvée",
    206: "Approuvée partiellement",
    207: "En litige",
    208: "Suspendue",
    209: "Complétée",
    210: "Refusée",
    211: "Paiement transmis",
    212: "Encaissée",
    213: "Rejetée",
    220: "Annulée",
}
NEEDS_REASON = frozenset({206, 207, 208, 210, 213})
NEEDS_AMOUNTS = frozenset({212})  # MEN: the amount received, per VAT rate
# Mandatory for the tax administration (issue 16).
REPORTED_TO_ADMINISTRATION = frozenset({200, 210, 212, 213})
TERMINAL = frozenset({210, 212, 213, 220})
FIRST = 200

_BUYER_DECISIONS = frozenset({204, 205, 206, 207, 208, 210, 211, 212})
# status -> the statuses that may directly follow it (our reading, above).
TRANSITIONS: dict[int, frozenset[int]] = {
    200: frozenset({201, 213, 220}),
    201: frozenset({202, 213, 220}),
    202: frozenset({203, 213, 220}),
    203: _BUYER_DECISIONS | {220},
    204: _BUYER_DECISIONS - {204} | {220},
    205: frozenset({211, 212, 220}),
    206: frozenset({205, 207, 211, 212, 220}),
    207: frozenset({205, 206, 208, 210, 211, 212, 220}),
    208: frozenset({209, 210, 220}),
    209: _BUYER_DECISIONS | {220},
    211: frozenset({212}),
    210: frozenset(),
    212: frozenset(),
    213: frozenset(),
    220: frozenset(),
}


@cache
def reachable(source: int) -> frozenset[int]:
    """Every status reachable from `source` in one or more allowed steps."""
    seen: set[int] = set()
    todo = list(TRANSITIONS[source])
    while todo:
        code = todo.pop()
        if code not in seen:
            seen.add(code)
            todo.extend(TRANSITIONS[code])
    return frozenset(seen)


@dataclass(frozen=True)
class StatusEvent:
    """One reported status. `message_id` is the CDAR message's own id;
    `amounts` the MEN characteristics: (VAT rate %, amount) pairs."""

    code: int
    occurred_at: datetime
    message_id: str
    reason_codes: tuple[str, ...] = ()
    amounts: tuple[tuple[Decimal, Decimal], ...] = ()

    @property
    def label(self) -> str:
        return LABELS.get(self.code, "inconnu")


Verdict = Literal["applied", "late", "duplicate", "anomaly"]


@dataclass(frozen=True)
class Outcome:
    event: StatusEvent
    verdict: Verdict
    rule: str  # why, in words (for an anomaly: which rule it broke)


@dataclass(frozen=True)
class Lifecycle:
    current: int | None
    outcomes: tuple[Outcome, ...] = field(default=())

    @property
    def applied(self) -> tuple[StatusEvent, ...]:
        return tuple(o.event for o in self.outcomes if o.verdict == "applied")

    @property
    def anomalies(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.verdict == "anomaly")

    @property
    def rejected(self) -> bool:
        """213: the invoice number is consumed; the correction is a credit
        note and a new invoice, never the same number again."""
        return self.current == 213


def incomplete(event: StatusEvent) -> str | None:
    """What a status lacks, in words, or None."""
    if event.code not in LABELS:
        return "unknown status code"
    if event.code in NEEDS_REASON and not event.reason_codes:
        return f"status {event.code} needs a reason code"
    if event.code in NEEDS_AMOUNTS and not event.amounts:
        return f"status {event.code} needs the amounts received per VAT rate (MEN)"
    return None


def judge(current: int | None, history: Iterable[int], event: StatusEvent) -> Outcome:
    """What one more status does, given the current status and the codes
    already recorded (applied or late)."""
    if event.code in set(history):
        return Outcome(event, "duplicate", "this status is already recorded")
    missing = incomplete(event)
    if missing:
        return Outcome(event, "anomaly", missing)
    if current is None:
        if event.code == FIRST or event.code in reachable(FIRST):
            return Outcome(event, "applied", "first status known")
        return Outcome(event, "anomaly", "cannot be a first status")
    if event.code in reachable(current):
        return Outcome(event, "applied", f"allowed after {current}")
    if current in reachable(event.code):
        return Outcome(event, "late", f"precedes the current status {current}")
    return Outcome(event, "anomaly", f"not allowed after {current}")


def derive(events: Iterable[StatusEvent]) -> Lifecycle:
    """The lifecycle from every status recorded, in any order: ordered by
    when each happened, each code once (its earliest report)."""
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.code, e.message_id))
    current: int | None = None
    history: list[int] = []
    outcomes: list[Outcome] = []
    for event in ordered:
        outcome = judge(current, history, event)
        outcomes.append(outcome)
        if outcome.verdict == "applied":
            current = event.code
        if outcome.verdict in ("applied", "late"):
            history.append(event.code)
    return Lifecycle(current, tuple(outcomes))
