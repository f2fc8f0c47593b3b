"""The lifecycle state machine: duplicates and out-of-order deliveries give
one effect per status, disallowed transitions are anomalies never applied."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import lifecycle, pa_flows
from chalicelib.domain.lifecycle import (
    LABELS,
    NEEDS_REASON,
    TERMINAL,
    TRANSITIONS,
    StatusEvent,
    derive,
    judge,
    reachable,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MEN = ((Decimal("20"), Decimal("120.00")),)


def event(code: int, minute: int, message: str | None = None) -> StatusEvent:
    return StatusEvent(code=code, occurred_at=T0 + timedelta(minutes=minute),
                       message_id=message or f"m{code}-{minute}",
                       reason_codes=("CMD_ERR",) if code in NEEDS_REASON else (),
                       amounts=MEN if code == 212 else ())


HAPPY = (200, 201, 202, 203, 204, 205, 211, 212)


def test_the_table_covers_every_status_and_terminals_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(LABELS)
    assert all(target in LABELS for targets in TRANSITIONS.values() for target in targets)
    assert all(not TRANSITIONS[code] for code in TERMINAL)
    assert set(range(200, 214)) | {220} == set(LABELS)


def test_the_happy_path_ends_encaissee() -> None:
    result = derive(event(code, i) for i, code in enumerate(HAPPY))
    assert result.current == 212
    assert [e.code for e in result.applied] == list(HAPPY)
    assert result.anomalies == ()


def test_a_missing_step_does_not_stop_the_next_one() -> None:
    result = derive([event(200, 0), event(202, 2), event(203, 3)])  # 201 lost
    assert result.current == 203 and result.anomalies == ()


def test_an_earlier_status_arriving_late_is_recorded_not_applied() -> None:
    current = 203
    outcome = judge(current, [203], event(201, 1))
    assert outcome.verdict == "late"


def test_a_status_after_a_terminal_one_is_an_anomaly_not_applied() -> None:
    result = derive([event(200, 0), event(210, 1), event(212, 2)])
    assert result.current == 210
    assert [(o.event.code, o.rule) for o in result.anomalies] == [(212, "not allowed after 210")]


def test_a_late_213_rejects_and_nothing_moves_it_after() -> None:
    result = derive([event(200, 0), event(201, 1), event(213, 600), event(202, 601),
                     event(205, 602)])
    assert result.current == 213 and result.rejected
    # 202 precedes 213 in the table: late, recorded; 205 cannot follow it: an anomaly
    assert [(o.event.code, o.verdict) for o in result.outcomes[3:]] == [
        (202, "late"), (205, "anomaly")]


def test_reasons_and_amounts_are_required_where_the_table_says() -> None:
    bare = StatusEvent(code=210, occurred_at=T0, message_id="x")
    assert judge(203, [203], bare).verdict == "anomaly"
    unpaid = StatusEvent(code=212, occurred_at=T0, message_id="y")
    assert judge(205, [205], unpaid).rule.endswith("(MEN)")
    unknown = StatusEvent(code=299, occurred_at=T0, message_id="z")
    assert judge(None, [], unknown).rule == "unknown status code"


def test_a_repeated_status_has_no_effect() -> None:
    assert judge(201, [200, 201], event(201, 9, "another message")).verdict == "duplicate"


def test_every_status_is_reachable_from_the_first() -> None:
    assert reachable(200) | {200} == set(LABELS)


@settings(max_examples=200, deadline=None)
@given(path_length=st.integers(min_value=1, max_value=len(HAPPY)),
       deliveries=st.lists(st.integers(min_value=0, max_value=len(HAPPY) - 1),
                           min_size=100, max_size=100),
       order=st.randoms(use_true_random=False))
def test_100_deliveries_with_duplicates_and_permutations_give_one_effect_per_status(
        path_length: int, deliveries: list[int], order: object) -> None:
    path = HAPPY[:path_length]
    # each delivery is one of the path's statuses (a duplicate carries another message id)
    events = [event(path[i % path_length], HAPPY.index(path[i % path_length]),
                    f"delivery-{n}") for n, i in enumerate(deliveries)]
    events += [event(code, HAPPY.index(code)) for code in path]  # each at least once
    order.shuffle(events)  # type: ignore[attr-defined]

    # incremental: as a poller would, judging each arrival against what is recorded
    recorded: list[StatusEvent] = []
    effects: dict[int, int] = {}
    for arrival in events:
        known = derive(recorded)
        history = [o.event.code for o in known.outcomes if o.verdict in ("applied", "late")]
        if judge(known.current, history, arrival).verdict in ("applied", "late"):
            recorded.append(arrival)
            effects[arrival.code] = effects.get(arrival.code, 0) + 1
    assert effects == dict.fromkeys(path, 1)

    final = derive(recorded)
    assert final.current == path[-1]
    assert derive(events).current == path[-1]  # the whole delivery stream, any order
    assert final.anomalies == ()


@pytest.mark.parametrize("module", [lifecycle, pa_flows])
def test_the_module_is_pure(module: ModuleType) -> None:
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "decimal",
                        "functools", "re", "typing"}
