"""Sealing periods against the real PostgreSQL: signed closings appended to the
chain, perpetual totals, the engine's Merkle tree and its checks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres import Database
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.domain import merkle
from chalicelib.domain.closing import Period, closing_sha256, empty_money, key_id_for
from chalicelib.domain.errors import Conflict
from chalicelib.usecases.proofs import closing_view
from chalicelib.usecases.seal_period import ClosingPorts, seal_due, seal_period
from chalicelib.usecases.verify_ledger import verify_ledger
from tests.builders import at, closing_ports, pinned, record, sale
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock

INTRUDER = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key().public_bytes_raw()


@pytest.fixture
def signer(tmp_path: Path) -> LocalSigningKey:
    path = tmp_path / "closing-key.pem"
    LocalSigningKey.create(path)
    return LocalSigningKey(path)


def entries(database: Database, tenant: uuid.UUID) -> list[Any]:
    with database.snapshot(tenant) as uow:
        return list(uow.ledger.entries())


def test_sealing_a_day_writes_a_signed_closing_into_the_chain(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> None:
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "100.00"))
    record(database, tenant, at(20, 15), "invoice.issued", sale("F-2", "50.00", "5.5"))
    record(database, tenant, at(21), "invoice.issued", sale("F-3", "10.00"))

    sealed = seal_period(tenant, Period.parse("day", "2026-11-20"),
                         closing_ports(database, signer, at(21, 12)))
    assert sealed.created
    closing = sealed.closing
    body = json.loads(closing.text)
    assert (closing.first_seq, closing.last_seq, body["count"]) == (1, 2, 2)
    assert body["period"] == {"kind": "day", "start": "2026-11-20", "end": "2026-11-20"}
    issued = body["totals"]["invoice.issued"]
    assert issued["count"] == 2 and Decimal(issued["tax_exclusive"]) == Decimal("150.00")
    assert Decimal(issued["by_rate"]["S 5.5"]["tax"]) == Decimal("2.75")
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(
        closing.signature, closing.text.encode())

    chain = entries(database, tenant)
    assert chain[-1].kind == "closing.sealed" and chain[-1].seq == closing.entry_seq == 4
    data = json.loads(chain[-1].payload)["data"]
    assert data == {"closing": closing.text, "signature": closing.signature.hex(),
                    "key_id": signer.key_id}
    assert body["last_entry_hash"] == chain[1].hash.hex()
    frontier = merkle.Frontier()
    for entry in chain[:2]:
        frontier.append(entry.hash)
    assert body["merkle"] == {"size": 2, "root": frontier.root().hex()}

    again = seal_period(tenant, Period.parse("day", "2026-11-20"),
                        closing_ports(database, signer, at(22)))
    assert not again.created and again.closing == closing
    assert len(entries(database, tenant)) == 4


def test_grand_totals_are_perpetual_and_periods_go_in_order(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> None:
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "100.00"))
    record(database, tenant, at(21), "invoice.issued", sale("F-2", "10.00"))
    record(database, tenant, at(21), "credit_note.issued", sale("A-1", "5.00"))
    p = closing_ports(database, signer, at(23))

    with pytest.raises(Conflict, match="2026-11-20 has entries not yet sealed"):
        seal_period(tenant, Period.parse("day", "2026-11-21"), p)
    with pytest.raises(Conflict, match="not over yet"):
        seal_period(tenant, Period.parse("day", "2026-11-23"), p)
    first = seal_period(tenant, Period.parse("day", "2026-11-20"), p).closing
    second = seal_period(tenant, Period.parse("day", "2026-11-21"), p).closing
    body = json.loads(second.text)
    # Day 21 covers the closing entry of day 20 (recorded on the 21st) and its own.
    assert second.first_seq == first.last_seq + 1
    assert body["totals"]["entries"] == {"invoice.issued": 1, "credit_note.issued": 1}
    grand = body["grand_totals"]
    assert Decimal(grand["invoice.issued"]["tax_exclusive"]) == Decimal("110.00")
    assert grand["invoice.issued"]["count"] == 2
    assert Decimal(grand["credit_note.issued"]["tax_inclusive"]) == Decimal("6.00")
    from chalicelib.domain.closing import closing_sha256
    assert body["previous_closing_sha256"] == closing_sha256(first.text).hex()

    with pytest.raises(Conflict, match="2026-11-21 is already sealed"):
        seal_period(tenant, Period.parse("day", "2026-11-19"), p)
    with pytest.raises(Conflict, match="not over yet"):
        seal_period(tenant, Period.parse("month", "2026-11"), p)


def test_seal_due_seals_days_then_the_month_then_stops(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> None:
    record(database, tenant, at(29, month=10), "invoice.issued", sale("F-1", "1.00"))
    record(database, tenant, at(31, month=10), "invoice.issued", sale("F-2", "2.00"))
    done = seal_due(tenant, closing_ports(database, signer, datetime(2026, 11, 1, 0, 5,
                                                            tzinfo=UTC)))
    assert [(s.closing.period_kind, s.closing.period_start) for s in done] == [
        ("day", date(2026, 10, 29)), ("day", date(2026, 10, 31)), ("month", date(2026, 10, 1))]
    month = json.loads(done[-1].closing.text)
    assert Decimal(month["totals"]["invoice.issued"]["tax_exclusive"]) == Decimal("3.00")
    # Nothing left that is due: an idle tenant is not sealed again and again.
    assert seal_due(tenant, closing_ports(database, signer,
                                          datetime(2026, 11, 5, tzinfo=UTC))) == []


# -- the engine's guarantees, attacked -----------------------------------------------------

def _one_sealed_day(database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> Any:
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "100.00"))
    record(database, tenant, at(20, 11), "invoice.issued", sale("F-2", "1.00"))
    return seal_period(tenant, Period.parse("day", "2026-11-20"),
                       closing_ports(database, signer, at(21))).closing


@pytest.mark.parametrize("statement", [
    "UPDATE closings SET closing = closing || ' '",
    "DELETE FROM closings",
    "UPDATE merkle_nodes SET hash = sha256(hash)",
    "DELETE FROM merkle_nodes",
    "INSERT INTO merkle_nodes (tenant_id, level, index, hash) "
    "SELECT tenant_id, 0, 99, hash FROM merkle_nodes LIMIT 1",
    "UPDATE signing_keys SET first_used_at = now()",
    "DELETE FROM signing_keys",
    # A key of its own, well formed: a compromised app once registered one and
    # sealed closings that online verification then accepted.
    f"INSERT INTO signing_keys (key_id, algorithm, public_key) VALUES "
    f"('{key_id_for(INTRUDER)}', 'Ed25519', '\\x{INTRUDER.hex()}'::bytea)",
])
def test_the_application_role_cannot_change_closings_or_the_tree(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_app: Connect,
        statement: str) -> None:
    _one_sealed_day(database, tenant, signer)
    conn = in_tenant(as_app, tenant)
    try:
        with pytest.raises(DatabaseError) as refused:
            conn.run(statement)
        assert refused.value.args[0]["C"] == "42501"  # no privilege at all
    finally:
        conn.close()


@pytest.mark.parametrize("statement", [
    "UPDATE closings SET closing = closing || ' '",
    "DELETE FROM closings",
    "TRUNCATE closings CASCADE",
    "UPDATE merkle_nodes SET hash = sha256(hash)",
    "DELETE FROM merkle_nodes",
    "TRUNCATE merkle_nodes",
    "DELETE FROM signing_keys",
])
def test_even_the_owner_cannot_change_closings_or_the_tree(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_owner: Connect,
        statement: str) -> None:
    _one_sealed_day(database, tenant, signer)
    conn = in_tenant(as_owner, tenant)
    try:
        # The app no longer records keys: the owner's row stands in for the history.
        conn.run("INSERT INTO signing_keys (key_id, algorithm, public_key) VALUES "
                 "(:k, 'Ed25519', :p) ON CONFLICT DO NOTHING", k=key_id_for(INTRUDER), p=INTRUDER)
        with pytest.raises(DatabaseError, match="append-only"):
            conn.run(statement)
    finally:
        conn.close()


def _forge(conn: Any, tenant: uuid.UUID, signer: LocalSigningKey, text: str,
           last_seq: int, start: str = "2026-11-21", first_seq: int = 1) -> None:
    """Append a closing.sealed entry by the app's own function, then insert the row."""
    from chalicelib.domain.ledger import canonical_payload

    signature = signer.sign(text.encode())
    payload = canonical_payload({"closing": text, "signature": signature.hex(),
                                 "key_id": signer.key_id}, at(22))
    [[seq]] = conn.run("SELECT seq FROM ledger_append('closing.sealed', :p, NULL)", p=payload)
    conn.run("INSERT INTO closings (tenant_id, id, period_kind, period_start, first_seq, "
             "last_seq, closing, closing_sha256, signature, key_id, entry_seq) VALUES "
             "(:t, gen_random_uuid(), 'day', :s, :a, :b, :c, sha256(convert_to(:c, 'UTF8')), "
             ":sig, :k, :e)", t=str(tenant), s=date.fromisoformat(start), a=first_seq, b=last_seq,
             c=text, sig=signature, k=signer.key_id, e=seq)


@pytest.mark.parametrize(("change", "message"), [
    ({"merkle": {"size": 2, "root": "00" * 32}}, "Merkle root is not the chain's"),
    ({"last_entry_hash": "11" * 32}, "last_entry_hash is not entry 2's"),
    ({"count": 5}, "does not describe this row"),
    ({"tenant_id": str(uuid.uuid4())}, "does not describe this row"),
])
def test_the_engine_refuses_a_closing_that_misstates_the_chain(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_app: Connect,
        change: dict[str, Any], message: str) -> None:
    """A compromised app holding the real key still cannot record a closing whose
    root, head or range is not the chain's own."""
    sealed = _one_sealed_day(database, tenant, signer)
    body = json.loads(sealed.text)
    body.update(change, period={"kind": "day", "start": "2026-11-21", "end": "2026-11-21"},
                first_seq=1, last_seq=2)
    from chalicelib.domain.closing import closing_text
    conn = in_tenant(as_app, tenant)
    try:
        with pytest.raises(DatabaseError, match=message):
            _forge(conn, tenant, signer, closing_text(body), last_seq=2)
    finally:
        conn.close()


def test_the_engine_refuses_sealing_before_a_later_sealed_period(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_app: Connect) -> None:
    sealed = _one_sealed_day(database, tenant, signer)
    body = json.loads(sealed.text)
    body["period"] = {"kind": "day", "start": "2026-11-19", "end": "2026-11-19"}
    from chalicelib.domain.closing import closing_text
    conn = in_tenant(as_app, tenant)
    try:
        with pytest.raises(DatabaseError) as refused:
            _forge(conn, tenant, signer, closing_text(body), last_seq=2, start="2026-11-19")
        assert refused.value.args[0]["C"] == "EC001"
    finally:
        conn.close()


def test_the_engine_tree_matches_an_independent_computation(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> None:
    for i in range(37):
        record(database, tenant, at(20), "test.entry", {"i": i})
    sealed = seal_period(tenant, Period.parse("day", "2026-11-20"),
                         closing_ports(database, signer, at(21))).closing
    chain = entries(database, tenant)[:37]
    assert json.loads(sealed.text)["merkle"]["root"] == merkle.root_from(
        37, merkle.new_perfect_nodes(0, [e.hash for e in chain], {})).hex()
    with database.snapshot(tenant) as uow:
        for index in (0, 17, 36):
            coords = merkle.inclusion_coords(index, 37)
            proof = merkle.inclusion_proof(index, 37, uow.closings.merkle_nodes(coords))
            assert merkle.verify_inclusion(chain[index].hash, index, 37, proof,
                                           bytes.fromhex(json.loads(sealed.text)["merkle"]
                                                         ["root"]))


# -- the schedule --------------------------------------------------------------------------

def test_scheduled_sealing_goes_on_past_a_failing_tenant(
        database: Database, signer: LocalSigningKey) -> None:
    from chalicelib.adapters.postgres import tenants_to_seal
    from chalicelib.usecases.create_tenant import create_tenant
    from chalicelib.usecases.seal_period import seal_all_due

    tenants = [create_tenant(f"Sched {i}", database.unit_of_work) for i in range(4)]
    for t in tenants:
        record(database, t, at(20), "invoice.issued", sale("F-1", "10.00"))
    broken = tenants[1]

    def unit_of_work(tenant_id: uuid.UUID) -> Any:
        if tenant_id == broken:
            raise RuntimeError("this tenant's database shard is down")
        return database.unit_of_work(tenant_id)

    due = [t for t in tenants_to_seal(database) if t in tenants]
    assert sorted(due) == sorted(tenants)
    result = seal_all_due(due, ClosingPorts(unit_of_work, signer, FrozenClock(at(21, 1))))
    assert result == {"tenants": 4, "sealed": 3, "failed": 1}
    still = [t for t in tenants_to_seal(database) if t in tenants]
    assert still == sorted(tenants)  # a year closing is still to come for all of them
    for t in tenants:
        with database.snapshot(t) as uow:
            assert (uow.closings.latest("day") is None) == (t == broken)


# -- only pinned keys are trusted online -------------------------------------------------

def test_a_closing_sealed_with_a_key_of_the_apps_own_fails_online_checks(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, tmp_path: Path) -> None:
    """A compromised app signs with a key of its own: the engine still binds the
    closing to the chain, but neither verification nor the proof trusts it."""
    LocalSigningKey.create(tmp_path / "intruder.pem")
    intruder = LocalSigningKey(tmp_path / "intruder.pem")
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "100.00"))
    with database.snapshot(tenant) as uow:
        invoice_seq = uow.ledger.head()
    forged = seal_period(tenant, Period.parse("day", "2026-11-20"),
                         closing_ports(database, intruder, at(21))).closing
    service = pinned(signer)

    result = verify_ledger(tenant, database.snapshot, pinned=service)
    assert not result.ok and result.reason == "closing_key_unpinned"
    assert result.first_broken_seq == forged.entry_seq
    assert f"signed with {intruder.key_id}, a key that is not pinned" in (result.detail or "")
    since = verify_ledger(tenant, database.snapshot, forged.closing_id, service)
    assert not since.ok and since.reason == "closing_key_unpinned"
    assert verify_ledger(tenant, database.snapshot, pinned=pinned(signer, intruder)).ok

    assert invoice_seq is not None
    with database.unit_of_work(tenant) as uow:
        closing = uow.closings.covering(invoice_seq.seq)
    assert closing is not None
    view = closing_view(closing, service)
    assert view["public_key"]["raw"] is None
    assert view["verified"] == {"ok": False, "reason": "closing_key_unpinned"}


def test_a_closing_whose_signature_fails_with_a_pinned_key_is_named(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey,
        superuser: Connect) -> None:
    _one_sealed_day(database, tenant, signer)
    root = superuser()
    try:
        root.run("SET session_replication_role = replica")  # past the append-only triggers
        root.run("UPDATE closings SET signature = decode(repeat('00', 64), 'hex') "
                 "WHERE tenant_id = :t", t=str(tenant))
    finally:
        root.close()
    result = verify_ledger(tenant, database.snapshot, pinned=pinned(signer))
    assert not result.ok and result.reason == "closing_signature"


def test_rotation_is_configuration_and_retired_keys_keep_their_closings(
        database: Database, tenant: uuid.UUID, tmp_path: Path) -> None:
    path = tmp_path / "closing-key.pem"
    LocalSigningKey.create(path)
    first = LocalSigningKey(path)
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "100.00"))
    seal_period(tenant, Period.parse("day", "2026-11-20"), closing_ports(database, first, at(21)))
    LocalSigningKey.create(path, replace=True)
    second = LocalSigningKey(path)
    record(database, tenant, at(21, 9), "invoice.issued", sale("F-2", "1.00"))
    seal_period(tenant, Period.parse("day", "2026-11-21"), closing_ports(database, second, at(22)))

    assert verify_ledger(tenant, database.snapshot, pinned=pinned(second, first)).ok
    dropped = verify_ledger(tenant, database.snapshot, pinned=pinned(second))
    assert not dropped.ok and dropped.reason == "closing_key_unpinned"
    assert first.key_id in (dropped.detail or "")


# -- online verification recomputes what the offline verifier does ----------------------

def _next_day(database: Database, tenant: uuid.UUID, sealed: Any) -> dict[str, Any]:
    """The honest closing of 2026-11-21 after `_one_sealed_day`: entry 3 (the
    closing.sealed entry of the 20th, recorded on the 21st), no money."""
    chain = entries(database, tenant)
    frontier = merkle.Frontier()
    for e in chain:
        frontier.append(e.hash)
    body: dict[str, Any] = json.loads(sealed.text)
    body.update(period={"kind": "day", "start": "2026-11-21", "end": "2026-11-21"},
                first_seq=3, last_seq=3, count=1,
                totals={"entries": {"closing.sealed": 1},
                        "invoice.issued": empty_money(), "credit_note.issued": empty_money()},
                last_entry_hash=chain[2].hash.hex(),
                merkle={"size": 3, "root": frontier.root().hex()},
                previous_closing_sha256=closing_sha256(sealed.text).hex())
    return body


def _plus_1000(body: dict[str, Any]) -> None:
    grand = body["grand_totals"]["invoice.issued"]
    grand["tax_exclusive"] = str(Decimal(grand["tax_exclusive"]) + 1000)


def _skip_entry_3(body: dict[str, Any]) -> None:
    body.update(first_seq=4, count=0, totals={
        "entries": {}, "invoice.issued": empty_money(), "credit_note.issued": empty_money()})


def _count_twice(body: dict[str, Any]) -> None:
    body.update(first_seq=2, count=2, totals={
        "entries": {"invoice.issued": 1, "closing.sealed": 1},
        "invoice.issued": body["totals"]["invoice.issued"],
        "credit_note.issued": empty_money()})


def _hide_the_sealed_entry(body: dict[str, Any]) -> None:
    body["totals"]["entries"] = {}


@pytest.mark.parametrize(("forge", "reason", "detail"), [
    (_plus_1000, "grand_total_mismatch",
     "grand_totals[invoice.issued].tax_exclusive is 1101.00, entries 1..3 sum to 101.00"),
    (_skip_entry_3, "closing_gap",
     "first_seq is 4, but the previous day closing (2026-11-20) ends at entry 2"),
    (_count_twice, "closing_overlap",
     "first_seq is 2, but the previous day closing (2026-11-20) ends at entry 2"),
    (_hide_the_sealed_entry, "closing_totals_mismatch",
     "totals.entries[closing.sealed] is 0, entries 3..3 hold 1"),
])
def test_online_verification_recomputes_a_closings_totals_and_range(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_app: Connect,
        forge: Any, reason: str, detail: str) -> None:
    """A compromised app holding the pinned key seals a closing the engine accepts
    (its root, last hash and range describe the chain) but whose figures lie:
    signature, hash and root all check, so only recomputing the totals and the
    ranges, as the bundle verifier does, gives it away."""
    from chalicelib.domain.closing import closing_text

    sealed = _one_sealed_day(database, tenant, signer)
    body = _next_day(database, tenant, sealed)
    forge(body)
    conn = in_tenant(as_app, tenant)
    try:
        _forge(conn, tenant, signer, closing_text(body), last_seq=body["last_seq"],
               first_seq=body["first_seq"])
        conn.run("COMMIT")
    finally:
        conn.close()
    result = verify_ledger(tenant, database.snapshot, pinned=pinned(signer))
    assert (result.ok, result.reason, result.first_broken_seq) == (False, reason, 4)
    assert result.detail == f"the closing of day 2026-11-21 (entry 4): {detail}"
    since = verify_ledger(tenant, database.snapshot, sealed.closing_id, pinned(signer))
    assert (since.ok, since.reason) == (False, reason)


def test_an_honest_next_day_verifies_online(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_app: Connect) -> None:
    """The control of the test above: the same closing, its figures true."""
    from chalicelib.domain.closing import closing_text

    sealed = _one_sealed_day(database, tenant, signer)
    conn = in_tenant(as_app, tenant)
    try:
        _forge(conn, tenant, signer, closing_text(_next_day(database, tenant, sealed)),
               last_seq=3, first_seq=3)
        conn.run("COMMIT")
    finally:
        conn.close()
    assert verify_ledger(tenant, database.snapshot, pinned=pinned(signer)).ok
    assert verify_ledger(tenant, database.snapshot, sealed.closing_id, pinned(signer)).ok
