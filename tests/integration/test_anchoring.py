"""Anchoring closings (OpenTimestamps, RFC 3161) against local stand-ins that
speak the real protocols (devstack/anchor_standins.py) and a dead endpoint, on
the real PostgreSQL: best-effort, recorded, retried, and never touching the chain."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.anchoring import (
    OpenTimestampsCalendar,
    Rfc3161Authority,
    TsaTrust,
    ots_bitcoin_heights,
    ots_pending_calendars,
    read_ots,
    verify_rfc3161_token,
)
from chalicelib.adapters.postgres import (
    Database,
    PostgresAnchors,
    anchor_store,
    anchor_stores,
    anchors_to_retry,
    closings_to_anchor,
    read_anchors,
)
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import Settings
from chalicelib.domain.closing import Period
from chalicelib.domain.kinds import INVOICE_ISSUED
from chalicelib.ports import StoredAnchor, StoredClosing, SystemClock
from chalicelib.usecases.anchor import (
    AnchorPorts,
    anchor_closing,
    anchor_new_closings,
    anchor_view,
    retry_anchors,
)
from chalicelib.usecases.seal_period import ClosingPorts, seal_due, seal_period
from devstack.anchor_standins import CalendarStandIn, TsaStandIn, dead_endpoint
from tests.builders import append_entry
from tests.conftest import Connect, in_tenant
from tests.fakes import FrozenClock

OTS, TSA = "opentimestamps", "rfc3161"


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> LocalSigningKey:
    path = tmp_path_factory.mktemp("anchoring") / "closing-key.pem"
    LocalSigningKey.create(path)
    return LocalSigningKey(path)


@pytest.fixture
def calendar() -> Iterator[CalendarStandIn]:
    with CalendarStandIn() as server:
        assert isinstance(server, CalendarStandIn)
        yield server


@pytest.fixture
def tsa() -> Iterator[TsaStandIn]:
    with TsaStandIn() as server:
        assert isinstance(server, TsaStandIn)
        yield server


@pytest.fixture
def trust(tsa: TsaStandIn, tmp_path: Path) -> TsaTrust:
    # As configured: EINVOICE_TSA_CERTIFICATE_FILE holds the TSA's root.
    return TsaTrust.from_file(tsa.write_root(tmp_path / "tsa-root.pem"))


def anchor_ports(database: Database, calendars: list[str], tsa_url: str | None,
                 trust: TsaTrust | None, clock: Any = None) -> AnchorPorts:
    return AnchorPorts(
        store=anchor_stores(database), clock=clock or SystemClock(),
        calendars=[OpenTimestampsCalendar(url, timeout=2, trusted=tuple(calendars))
                   for url in calendars],
        tsa=Rfc3161Authority(tsa_url, trust, timeout=2) if tsa_url and trust else None)


def sale(number: str, net: str) -> dict[str, Any]:
    vat = str((Decimal(net) * Decimal("0.20")).quantize(Decimal("0.01")))
    return {"invoice_number": number, "totals": {
        "tax_exclusive_amount": net, "tax_total": vat,
        "tax_inclusive_amount": str(Decimal(net) + Decimal(vat)),
        "vat_breakdown": [{"category": "S", "rate": "20.00", "taxable_amount": net,
                           "tax_amount": vat}]}}


def seal_a_day(database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> StoredClosing:
    append_entry(database.unit_of_work, tenant, at(20), INVOICE_ISSUED, sale("F-1", "100.00"))
    return seal_period(tenant, Period.parse("day", "2026-11-20"),
                       ClosingPorts(database.unit_of_work, signer, FrozenClock(at(21)))).closing


def by_method(rows: list[StoredAnchor]) -> dict[str, StoredAnchor]:
    assert len({r.method for r in rows}) == len(rows)
    return {r.method: r for r in rows}


def mine(tenant: uuid.UUID, pairs: list[tuple[uuid.UUID, uuid.UUID]]
         ) -> list[tuple[uuid.UUID, uuid.UUID]]:
    return [p for p in pairs if p[0] == tenant]


def chain_state(as_owner: Connect, tenant: uuid.UUID) -> list[Any]:
    conn = in_tenant(as_owner, tenant)
    try:
        return [conn.run("SELECT seq, hash FROM ledger_heads"),
                conn.run("SELECT seq, kind, payload, prev_hash, hash FROM ledger_entries "
                         "ORDER BY seq"),
                conn.run("SELECT * FROM closings ORDER BY id"),
                conn.run("SELECT level, index, hash FROM merkle_nodes ORDER BY level, index")]
    finally:
        conn.close()


# -- anchoring against live stand-ins ------------------------------------------------------

def test_a_closing_is_anchored_at_the_calendar_and_the_tsa(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey,
        calendar: CalendarStandIn, tsa: TsaStandIn, trust: TsaTrust, tmp_path: Path) -> None:
    closing = seal_a_day(database, tenant, signer)
    digest = hashlib.sha256(closing.text.encode()).digest()
    ports = anchor_ports(database, [calendar.url], tsa.url, trust)

    rows = by_method(anchor_closing(tenant, closing.closing_id, ports))

    ots = rows[OTS]
    assert (ots.status, ots.attempts, ots.last_error, ots.endpoint) == (
        "submitted", 1, None, calendar.url)
    assert ots.digest == digest and ots.proof is not None
    detached = read_ots(ots.proof)  # the library's own deserializer
    assert detached.file_digest == digest  # the proof commits to the closing's SHA-256
    assert ots_pending_calendars(ots.proof) == [calendar.url]
    assert ots_bitcoin_heights(ots.proof) == []
    assert ots.submitted_at is not None and ots.completed_at is None

    token = rows[TSA]
    assert (token.status, token.attempts, token.last_error) == ("complete", 1, None)
    assert token.proof is not None and token.completed_at is not None
    gen_time = verify_rfc3161_token(token.proof, digest, trust)
    assert abs(gen_time - datetime.now(UTC)) < timedelta(minutes=1)
    openssl = shutil.which("openssl")
    if openssl:  # an independent verifier: OpenSSL's own RFC 3161 code
        token_file = tmp_path / "token.der"
        token_file.write_bytes(token.proof)
        checked = subprocess.run(
            [openssl, "ts", "-verify", "-token_in", "-in", str(token_file), "-digest",
             digest.hex(), "-CAfile", str(tsa.write_root(tmp_path / "root.pem"))],
            capture_output=True, text=True, check=False)
        assert "Verification: OK" in checked.stdout, checked.stderr
    view = anchor_view(token)
    assert view["proof_format"] == "rfc3161-token-der" and view["digest"] == digest.hex()

    # Idempotent: no second row, no second submission; the OTS anchor is only checked.
    again = by_method(anchor_closing(tenant, closing.closing_id, ports))
    assert {r.anchor_id for r in again.values()} == {r.anchor_id for r in rows.values()}
    assert calendar.submissions == 1 and tsa.requests == 1
    assert again[OTS].status == "submitted" and again[OTS].attempts == 2
    assert again[TSA] == token
    assert read_anchors(database, tenant, closing.closing_id) == sorted(
        again.values(), key=lambda a: (a.method, a.endpoint))


def test_dead_endpoints_leave_anchors_pending_and_the_chain_untouched(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, as_owner: Connect,
        trust: TsaTrust) -> None:
    closing = seal_a_day(database, tenant, signer)
    before = chain_state(as_owner, tenant)
    ports = anchor_ports(database, [dead_endpoint()], dead_endpoint("/tsa"), trust)

    rows = by_method(anchor_closing(tenant, closing.closing_id, ports))

    for row in rows.values():
        assert (row.status, row.attempts, row.proof) == ("pending", 1, None)
        assert row.last_error == "connection failed: ConnectionRefusedError"
    assert chain_state(as_owner, tenant) == before

    # The schedule with no time left starts nothing (the next run will).
    due = mine(tenant, anchors_to_retry(database, ports.endpoints))
    assert retry_anchors(due, ports, budget_seconds=0)["deferred"] == 2
    result = retry_anchors(due, ports)
    assert (result["anchors"], result["errors"]) == (2, 2)
    with anchor_store(database, tenant) as store:
        assert [r.attempts for r in store.for_closing(closing.closing_id)] == [2, 2]
    assert chain_state(as_owner, tenant) == before


def test_a_calendar_down_then_up_is_submitted_then_completed_by_the_schedule(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey,
        calendar: CalendarStandIn, tsa: TsaStandIn, trust: TsaTrust) -> None:
    closing = seal_a_day(database, tenant, signer)
    ports = anchor_ports(database, [calendar.url], tsa.url, trust)
    calendar.stop()
    tsa.stop()
    first = by_method(anchor_closing(tenant, closing.closing_id, ports))
    assert [(r.status, r.attempts) for r in first.values()] == [("pending", 1)] * 2

    calendar.start()  # same port: the service came back
    tsa.start()
    due = mine(tenant, anchors_to_retry(database, ports.endpoints))
    assert sorted(a for _, a in due) == sorted(r.anchor_id for r in first.values())
    result = retry_anchors(due, ports)
    assert (result["submitted"], result["completed"], result["errors"]) == (1, 1, 0)
    with anchor_store(database, tenant) as store:
        now = by_method(store.for_closing(closing.closing_id))
    assert now[OTS].status == "submitted" and now[TSA].status == "complete"
    assert now[OTS].last_error is None

    # Not in a block yet: checked, unchanged, no error.
    result = retry_anchors(mine(tenant, anchors_to_retry(database, ports.endpoints)), ports)
    assert (result["anchors"], result["unchanged"], result["errors"]) == (1, 1, 0)

    calendar.confirm()  # the calendar's commitment made it into a (made-up) block
    result = retry_anchors(mine(tenant, anchors_to_retry(database, ports.endpoints)), ports)
    assert result["completed"] == 1
    with anchor_store(database, tenant) as store:
        done = by_method(store.for_closing(closing.closing_id))
    ots = done[OTS]
    assert ots.status == "complete" and ots.proof is not None and ots.attempts == 4
    assert read_ots(ots.proof).file_digest == closing_digest(closing)
    assert len(ots_bitcoin_heights(ots.proof)) == 1
    submitted_proof = now[OTS].proof
    assert submitted_proof is not None and len(ots.proof) > len(submitted_proof)
    assert ots_pending_calendars(ots.proof) == [calendar.url]  # kept, as `ots upgrade` does
    assert mine(tenant, anchors_to_retry(database, ports.endpoints)) == []


def closing_digest(closing: StoredClosing) -> bytes:
    return hashlib.sha256(closing.text.encode()).digest()


@pytest.mark.parametrize(("answer", "reason"), [
    ("other_digest", "token refused: token for another digest"),
    ("other_key", "token refused: token signature or chain refused"),
    ("reject", "TSA refused: status 2"),
])
def test_a_tsa_token_that_does_not_verify_is_refused(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, tsa: TsaStandIn,
        trust: TsaTrust, answer: str, reason: str) -> None:
    closing = seal_a_day(database, tenant, signer)
    tsa.answer = answer  # type: ignore[assignment]
    [row] = anchor_closing(tenant, closing.closing_id, anchor_ports(database, [], tsa.url, trust))
    assert (row.status, row.attempts, row.proof, row.last_error) == ("pending", 1, None, reason)
    assert tsa.requests == 1


def test_a_token_whose_time_is_far_from_our_clock_is_refused(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, tsa: TsaStandIn,
        trust: TsaTrust) -> None:
    closing = seal_a_day(database, tenant, signer)
    ports = anchor_ports(database, [], tsa.url, trust,
                         clock=FrozenClock(datetime.now(UTC) - timedelta(hours=3)))
    [row] = anchor_closing(tenant, closing.closing_id, ports)
    assert (row.status, row.last_error) == ("pending", "token time is too far from our clock")


def test_the_schedule_anchors_closings_it_sealed_and_goes_on_past_a_failing_tenant(
        database: Database, signer: LocalSigningKey, calendar: CalendarStandIn) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    tenants = [create_tenant(f"Anchor {i}", database.unit_of_work) for i in range(3)]
    for t in tenants:
        append_entry(database.unit_of_work, t, at(20), INVOICE_ISSUED, sale("F-1", "1.00"))
        seal_due(t, ClosingPorts(database.unit_of_work, signer, FrozenClock(at(21, 1))))
    ports = anchor_ports(database, [calendar.url], None, None)
    since = datetime.now(UTC) - timedelta(minutes=10)
    due = [p for p in closings_to_anchor(database, ports.endpoints, since) if p[0] in tenants]
    assert sorted(t for t, _ in due) == sorted(tenants)
    broken = tenants[1]

    def store(tenant_id: uuid.UUID) -> Any:
        if tenant_id == broken:
            raise RuntimeError("this tenant's database shard is down")
        return anchor_store(database, tenant_id)

    failing = AnchorPorts(store=store, clock=SystemClock(), calendars=ports.calendars)
    assert anchor_new_closings(due, failing) == {"closings": 3, "closing_failures": 1,
                                                "closings_deferred": 0}
    left = [p for p in closings_to_anchor(database, ports.endpoints, since) if p[0] in tenants]
    assert [t for t, _ in left] == [broken]
    assert calendar.submissions == 2


# -- the engine's guarantees, attacked -----------------------------------------------------

@pytest.fixture
def anchored(database: Database, tenant: uuid.UUID, signer: LocalSigningKey,
             calendar: CalendarStandIn, tsa: TsaStandIn, trust: TsaTrust) -> StoredClosing:
    """A closing with a submitted OpenTimestamps anchor and a complete RFC 3161 one."""
    closing = seal_a_day(database, tenant, signer)
    rows = by_method(anchor_closing(tenant, closing.closing_id,
                                    anchor_ports(database, [calendar.url], tsa.url, trust)))
    assert (rows[OTS].status, rows[TSA].status) == ("submitted", "complete")
    return closing


@pytest.mark.parametrize(("statement", "code"), [
    ("DELETE FROM anchors", "42501"),
    ("TRUNCATE anchors", "42501"),
    ("UPDATE anchors SET digest = sha256(digest)", "42501"),
    ("UPDATE anchors SET closing_id = gen_random_uuid()", "42501"),
    ("UPDATE anchors SET method = 'rfc3161' WHERE method = 'opentimestamps'", "42501"),
    ("UPDATE anchors SET endpoint = 'https://elsewhere.example'", "42501"),
    ("UPDATE anchors SET created_at = now()", "42501"),
    ("UPDATE anchors SET attempts = attempts + 1, last_error = 'forged' "
     "WHERE status = 'complete'", "EA003"),
    ("UPDATE anchors SET attempts = attempts + 1, proof = proof || '\\x00'::bytea "
     "WHERE status = 'complete'", "EA003"),
    ("UPDATE anchors SET status = 'pending', proof = NULL, attempts = attempts + 1 "
     "WHERE status = 'submitted'", "EA005"),
    ("UPDATE anchors SET last_error = 'quiet' WHERE status = 'submitted'", "EA005"),
    ("UPDATE anchors SET attempts = attempts + 1, last_error = 'the server said: <b>hi</b>' "
     "WHERE status = 'submitted'", "23514"),
    ("UPDATE anchors SET attempts = attempts + 1, proof = overlay(proof PLACING '\\xff'::bytea "
     "FROM 40 FOR 1) WHERE status = 'submitted'", "23514"),
    ("INSERT INTO anchors (tenant_id, id, closing_id, method, endpoint, digest) "
     "SELECT tenant_id, gen_random_uuid(), closing_id, method, 'https://other.example', "
     "sha256(digest) FROM anchors LIMIT 1", "EA001"),
    ("INSERT INTO anchors (tenant_id, id, closing_id, method, endpoint, digest, status, proof) "
     "SELECT tenant_id, gen_random_uuid(), closing_id, method, 'https://other.example', "
     "digest, 'complete', proof FROM anchors WHERE status = 'complete'", "EA002"),
])
def test_the_application_role_cannot_rewrite_anchors(
        anchored: StoredClosing, tenant: uuid.UUID, as_app: Connect, statement: str,
        code: str) -> None:
    conn = in_tenant(as_app, tenant)
    try:
        with pytest.raises(DatabaseError) as refused:
            conn.run(statement)
        assert refused.value.args[0]["C"] == code
    finally:
        conn.close()


@pytest.mark.parametrize(("statement", "message"), [
    ("DELETE FROM anchors", "append-only"),
    ("TRUNCATE anchors", "append-only"),
    ("UPDATE anchors SET digest = sha256(digest), attempts = attempts + 1 "
     "WHERE status = 'submitted'", "never change"),
    ("UPDATE anchors SET endpoint = 'https://elsewhere.example', attempts = attempts + 1 "
     "WHERE status = 'submitted'", "never change"),
    ("UPDATE anchors SET attempts = attempts + 1 WHERE status = 'complete'",
     "complete anchor never changes"),
])
def test_even_the_owner_cannot_rewrite_anchors(
        anchored: StoredClosing, tenant: uuid.UUID, as_owner: Connect, statement: str,
        message: str) -> None:
    conn = in_tenant(as_owner, tenant)
    try:
        with pytest.raises(DatabaseError, match=message):
            conn.run(statement)
    finally:
        conn.close()


def test_another_tenant_sees_no_anchor_and_cannot_anchor_a_closing_it_does_not_own(
        database: Database, anchored: StoredClosing, tenant: uuid.UUID, as_app: Connect,
        calendar: CalendarStandIn) -> None:
    from chalicelib.usecases.create_tenant import create_tenant

    other = create_tenant("Anchor intruder", database.unit_of_work)
    with anchor_store(database, tenant) as store:
        theirs = store.for_closing(anchored.closing_id)
    assert len(theirs) == 2
    conn = in_tenant(as_app, other)
    try:
        assert conn.run("SELECT count(*) FROM anchors") == [[0]]
        assert conn.run("SELECT count(*) FROM anchors WHERE tenant_id = :t",
                        t=str(tenant)) == [[0]]
        store = PostgresAnchors(conn, other)
        assert store.closing(anchored.closing_id) is None
        assert store.for_closing(anchored.closing_id) == []
        assert all(store.get(a.anchor_id) is None for a in theirs)
        # Updating someone else's anchor touches nothing.
        assert not store.record(theirs[0], "complete", theirs[0].proof, None)
        with pytest.raises(DatabaseError) as refused:
            store.ensure(uuid.uuid4(), anchored.closing_id, OTS, "https://x.example",
                         theirs[0].digest)
        assert refused.value.args[0]["C"] in {"EA001", "23503"}
    finally:
        conn.close()
    # The retry job, handed the other tenant with these ids, finds nothing to do.
    ports = anchor_ports(database, [calendar.url], None, None)
    result = retry_anchors([(other, a.anchor_id) for a in theirs], ports)
    assert result["skipped"] == 2 and result["anchors"] == 2
    with anchor_store(database, tenant) as own:
        assert own.for_closing(anchored.closing_id) == theirs


def test_anchors_to_retry_lists_ids_only_across_tenants(
        database: Database, anchored: StoredClosing, tenant: uuid.UUID, as_app: Connect,
        calendar: CalendarStandIn) -> None:
    conn = as_app()
    try:
        conn.run("BEGIN")
        rows = conn.run("SELECT * FROM anchors_to_retry(100000, :e)", e=[calendar.url])
        assert [c["name"] for c in conn.columns] == ["tenant_id", "anchor_id"]
        # The scan setting gives the application role nothing afterwards.
        conn.run("SELECT set_config('app.anchor_scan', 'on', true)")
        assert conn.run("SELECT count(*) FROM anchors") == [[0]]
        conn.run("ROLLBACK")
    finally:
        conn.close()
    assert [(t, a) for t, a in rows if t == tenant]  # the submitted OTS anchor


# -- settings ------------------------------------------------------------------------------

def test_anchoring_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EINVOICE_OTS_CALENDARS",
                       "https://a.pool.opentimestamps.org, https://b.pool.opentimestamps.org/,"
                       "http://127.0.0.1:8099")
    assert Settings.from_environment().ots_calendars == ["https://a.pool.opentimestamps.org",
                                        "https://b.pool.opentimestamps.org",
                                        "http://127.0.0.1:8099"]
    monkeypatch.setenv("EINVOICE_OTS_CALENDARS", "")
    assert Settings.from_environment().ots_calendars == []
    for bad in ("http://calendar.example", "https://user:pw@calendar.example",
                "https://calendar.example/?q=1", "ftp://calendar.example"):
        monkeypatch.setenv("EINVOICE_OTS_CALENDARS", bad)
        with pytest.raises(ValueError, match="https URL"):
            Settings.from_environment()
    monkeypatch.delenv("EINVOICE_OTS_CALENDARS")
    monkeypatch.setenv("EINVOICE_TSA_URL", "http://tsa.example")
    with pytest.raises(ValueError, match="https URL"):
        Settings.from_environment()
    monkeypatch.setenv("EINVOICE_TSA_URL", "https://tsa.example/tsr")
    with pytest.raises(ValueError, match="tsa_certificate_file"):
        Settings.from_environment()
    monkeypatch.setenv("EINVOICE_TSA_CERTIFICATE_FILE", str(tmp_path / "root.pem"))
    assert Settings.from_environment().tsa_url == "https://tsa.example/tsr"


def test_the_audit_bundle_carries_the_anchors_and_checks_their_digest(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey,
        calendar: CalendarStandIn, tsa: TsaStandIn, trust: TsaTrust, tmp_path: Path) -> None:
    from chalicelib.audit.bundle import export_from_database
    from chalicelib.audit.verify import verify_bundle

    closing = seal_a_day(database, tenant, signer)
    anchor_closing(tenant, closing.closing_id, anchor_ports(database, [calendar.url], tsa.url,
                                                            trust))
    out = tmp_path / "bundle"
    export_from_database(tenant, database, out, keys={signer.key_id: signer.public_key})
    lines = [json.loads(line) for line in (out / "anchors.jsonl").read_text().splitlines()]
    assert {(a["method"], a["closing_entry_seq"]) for a in lines} == {
        (OTS, closing.entry_seq), ("rfc3161", closing.entry_seq)}
    assert verify_bundle(out, progress=False).ok

    lines[0]["digest"] = "00" * 32
    (out / "anchors.jsonl").write_text("".join(json.dumps(a) + "\n" for a in lines))
    report = verify_bundle(out, progress=False)
    assert not report.ok and "anchors.jsonl line 1 (closing " in str(report)
    assert "digest is not the SHA-256" in str(report)
