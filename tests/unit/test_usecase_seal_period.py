"""Sealing's branch logic on fakes: a period not over, sealed twice, out of
order, smaller periods first, the schedule over many tenants. The engine's
own checks of a closing (its entry, the chain, the Merkle tree) are in
tests/integration/test_closings.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest

from chalicelib.domain.closing import Period, signed_by
from chalicelib.domain.errors import Conflict
from chalicelib.usecases.seal_period import ClosingPorts, seal_all_due, seal_due, seal_period
from tests.builders import append_entry, at, sale
from tests.fakes import FakeDatabase, FakeSigner, FrozenClock


@dataclass
class Sealing:
    database: FakeDatabase
    signer: FakeSigner
    clock: FrozenClock
    tenant: UUID

    @property
    def ports(self) -> ClosingPorts:
        return ClosingPorts(self.database.unit_of_work, self.signer, self.clock)

    def record(self, when: datetime, kind: str = "invoice.issued",
               data: dict[str, Any] | None = None, tenant: UUID | None = None) -> None:
        append_entry(self.database.unit_of_work, tenant or self.tenant, when, kind,
                     data or {"n": 1})

    def kinds(self, tenant: UUID | None = None) -> list[str]:
        return [e.kind for e in self.database.records(tenant or self.tenant).entries]


@pytest.fixture
def sealing() -> Sealing:
    clock = FrozenClock(datetime(2026, 11, 25, 9, tzinfo=UTC))
    database = FakeDatabase(clock)
    return Sealing(database, FakeSigner(), clock, database.add_tenant())


def day(n: int, month: int = 11) -> Period:
    return Period("day", date(2026, month, n))


def test_a_period_not_over_yet_is_not_sealed(sealing: Sealing) -> None:
    sealing.record(at(25, 8))
    with pytest.raises(Conflict) as refused:
        seal_period(sealing.tenant, day(25), sealing.ports)
    assert "not over yet" in refused.value.violations[0].rule
    assert sealing.database.transactions == 1  # the entry only: no transaction opened


def test_a_day_is_sealed_once_and_sealing_again_returns_it(sealing: Sealing) -> None:
    sealing.record(at(20), data=sale("F-1", "100.00"))
    sealing.record(at(20, 15), data=sale("F-2", "50.00", "5.5"))
    first = seal_period(sealing.tenant, day(20), sealing.ports)

    assert first.created
    closing = first.closing
    assert (closing.first_seq, closing.last_seq, closing.entry_seq) == (1, 2, 3)
    assert closing.key_id == sealing.signer.key_id
    assert signed_by(sealing.signer.public_key, closing.signature, closing.text)
    body = json.loads(closing.text)
    assert body["totals"]["entries"] == {"invoice.issued": 2}
    assert body["totals"]["invoice.issued"]["tax_exclusive"] == "150.00"
    assert body["totals"]["invoice.issued"]["by_rate"] == {
        "S 20.00": {"taxable": "100.00", "tax": "20.00"},
        "S 5.5": {"taxable": "50.00", "tax": "2.75"}}
    assert body["previous_closing_sha256"] is None

    again = seal_period(sealing.tenant, day(20), sealing.ports)
    assert not again.created and again.closing == closing
    assert sealing.kinds() == ["invoice.issued", "invoice.issued", "closing.sealed"]


def test_grand_totals_carry_on_from_the_previous_closing(sealing: Sealing) -> None:
    sealing.record(at(20), data=sale("F-1", "100.00"))
    seal_period(sealing.tenant, day(20), sealing.ports)
    sealing.record(at(21), data=sale("F-2", "10.00"))
    second = json.loads(seal_period(sealing.tenant, day(21), sealing.ports).closing.text)
    assert second["totals"]["invoice.issued"]["tax_exclusive"] == "10.00"
    assert second["grand_totals"]["invoice.issued"]["tax_exclusive"] == "110.00"
    assert second["grand_totals"]["invoice.issued"]["count"] == 2
    assert second["previous_closing_sha256"] is not None


def test_a_day_before_one_already_sealed_can_no_longer_be(sealing: Sealing) -> None:
    sealing.record(at(22))
    seal_period(sealing.tenant, day(22), sealing.ports)
    with pytest.raises(Conflict) as refused:
        seal_period(sealing.tenant, day(21), sealing.ports)
    assert "already sealed" in refused.value.violations[0].rule


def test_an_earlier_day_with_activity_is_sealed_first(sealing: Sealing) -> None:
    sealing.record(at(20))
    sealing.record(at(21))
    with pytest.raises(Conflict) as refused:
        seal_period(sealing.tenant, day(21), sealing.ports)
    assert "2026-11-20 has entries not yet sealed" in refused.value.violations[0].rule
    assert sealing.kinds() == ["invoice.issued", "invoice.issued"]
    assert seal_period(sealing.tenant, day(20), sealing.ports).created
    assert seal_period(sealing.tenant, day(21), sealing.ports).created


def test_a_month_waits_for_its_days(sealing: Sealing) -> None:
    sealing.record(at(3))
    sealing.clock.moment = datetime(2026, 12, 2, tzinfo=UTC)
    november = Period("month", date(2026, 11, 1))
    with pytest.raises(Conflict) as refused:
        seal_period(sealing.tenant, november, sealing.ports)
    assert "day 2026-11-03 must be sealed before the month" in refused.value.violations[0].rule
    seal_period(sealing.tenant, day(3), sealing.ports)
    month = seal_period(sealing.tenant, november, sealing.ports)
    # The day's closing entry was recorded on 2 December: it goes with the next month.
    assert month.created and (month.closing.first_seq, month.closing.last_seq) == (1, 1)


def test_the_schedule_seals_every_due_period_in_order_then_nothing(sealing: Sealing) -> None:
    sealing.record(at(20))
    sealing.record(at(21))
    sealing.record(at(29))
    sealing.clock.moment = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)  # 01:05 in Paris

    done = seal_due(sealing.tenant, sealing.ports)
    assert [(s.closing.period_kind, s.closing.period_start.isoformat()) for s in done] == [
        ("day", "2026-11-20"), ("day", "2026-11-21"), ("day", "2026-11-29"),
        ("month", "2026-11-01")]
    assert all(s.created for s in done)
    # Closing entries alone call for no closing: an idle tenant is left alone.
    assert seal_due(sealing.tenant, sealing.ports) == []


def test_the_schedule_leaves_the_current_day(sealing: Sealing) -> None:
    sealing.record(at(25, 8))
    assert seal_due(sealing.tenant, sealing.ports) == []


def test_the_schedule_goes_on_past_a_failing_tenant(sealing: Sealing) -> None:
    broken = sealing.database.add_tenant("Broken")
    last = sealing.database.add_tenant("Last")
    for tenant in (sealing.tenant, broken, last):
        sealing.record(at(20), tenant=tenant)
    sealing.database.broken.add(broken)

    outcome = seal_all_due([sealing.tenant, broken, last], sealing.ports)

    assert outcome == {"tenants": 3, "sealed": 2, "failed": 1}
    assert sealing.kinds() == sealing.kinds(last) == ["invoice.issued", "closing.sealed"]
    assert sealing.kinds(broken) == ["invoice.issued"]
