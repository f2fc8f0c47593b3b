"""verify-bundle checks the anchors offline (chalicelib/audit/anchors.py): a bundle of
two closings, each anchored at a local OpenTimestamps calendar and a local RFC 3161
TSA (devstack/anchor_standins.py), then attacked the way a hostile auditee would:
proofs moved, swapped or forged, ids and statuses edited. Each attack is a FAIL line
naming the closing and the proof, with the manifest's SHA-256 recomputed so only
the anchor check can catch it."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.anchoring import OpenTimestampsCalendar, Rfc3161Authority, TsaTrust
from chalicelib.adapters.postgres import Database, anchor_stores, anchors_to_retry
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.audit.anchors import load_certificates
from chalicelib.audit.bundle import export_from_database
from chalicelib.audit.verify import verify_bundle
from chalicelib.domain.closing import Period
from chalicelib.domain.kinds import INVOICE_ISSUED
from chalicelib.ports import SystemClock
from chalicelib.usecases.anchor import AnchorPorts, anchor_closing, retry_anchors
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.seal_period import ClosingPorts, seal_period
from devstack.anchor_standins import CalendarStandIn, TsaStandIn
from tests.builders import append_entry
from tests.fakes import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
Lines = list[dict[str, Any]]


def at(day: int) -> datetime:
    return datetime(2026, 11, day, 10, tzinfo=UTC)


def sale(number: str) -> dict[str, Any]:
    return {"invoice_number": number, "totals": {
        "tax_exclusive_amount": "100.00", "tax_total": "20.00", "tax_inclusive_amount": "120.00",
        "vat_breakdown": [{"category": "S", "rate": "20.00", "taxable_amount": "100.00",
                           "tax_amount": "20.00"}]}}


def anchor_ports(database: Database, calendar: str, tsa: str, trust: TsaTrust) -> AnchorPorts:
    return AnchorPorts(store=anchor_stores(database), clock=SystemClock(),
                       calendars=[OpenTimestampsCalendar(calendar, timeout=2,
                                                         trusted=(calendar,))],
                       tsa=Rfc3161Authority(tsa, trust, timeout=2))


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[CalendarStandIn, TsaStandIn]]:
    with CalendarStandIn() as calendar, TsaStandIn() as tsa:
        assert isinstance(calendar, CalendarStandIn) and isinstance(tsa, TsaStandIn)
        yield calendar, tsa


@pytest.fixture(scope="module")
def root_pem(standins: tuple[CalendarStandIn, TsaStandIn],
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standins[1].write_root(tmp_path_factory.mktemp("tsa") / "root.pem")


@pytest.fixture(scope="module")
def original(database: Database, standins: tuple[CalendarStandIn, TsaStandIn],
             root_pem: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Day 20 with a complete .ots proof (a Bitcoin attestation) and a token; day 21
    with a submitted .ots proof (pending only) and a token."""
    calendar, tsa = standins
    folder = tmp_path_factory.mktemp("anchored")
    key = folder / "closing-key.pem"
    LocalSigningKey.create(key)
    signer = LocalSigningKey(key)
    tenant = create_tenant(f"Tenant {uuid.uuid4().hex[:8]}", database.unit_of_work)
    ports = anchor_ports(database, calendar.url, tsa.url, TsaTrust.from_file(root_pem))
    for day in (20, 21):
        append_entry(database.unit_of_work, tenant, at(day), INVOICE_ISSUED,
                     sale(f"F-{day}"))
        closing = seal_period(tenant, Period.parse("day", f"2026-11-{day}"), ClosingPorts(
            database.unit_of_work, signer, FrozenClock(at(day + 1)))).closing
        anchor_closing(tenant, closing.closing_id, ports)
        if day == 20:
            calendar.confirm()
            due = [p for p in anchors_to_retry(database, ports.endpoints) if p[0] == tenant]
            assert retry_anchors(due, ports)["completed"] == 1
            calendar._confirmed = False  # the next closing stays submitted
    out = folder / "bundle"
    export_from_database(tenant, database, out, keys={signer.key_id: signer.public_key})
    return out


@pytest.fixture
def bundle(original: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(original, tmp_path / "bundle"))


def read(bundle: Path) -> Lines:
    return [json.loads(line) for line in (bundle / "anchors.jsonl").read_text().splitlines()]


def write(bundle: Path, lines: Lines) -> None:
    """anchors.jsonl rewritten, and the manifest's SHA-256 of it recomputed."""
    data = "".join(json.dumps(a) + "\n" for a in lines).encode()
    (bundle / "anchors.jsonl").write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["anchors.jsonl"] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def pick(lines: Lines, method: str, day: int) -> dict[str, Any]:
    seqs = sorted({a["closing_entry_seq"] for a in lines})
    return next(a for a in lines if a["method"] == method and
                a["closing_entry_seq"] == seqs[day - 20])


def problem(bundle: Path, pinned: Path | None = None) -> str:
    report = verify_bundle(bundle, tsa_certificates=load_certificates([pinned] if pinned else []))
    assert not report.ok
    return str(report.problem)


def test_the_exported_anchors_verify_and_the_output_says_what_is_not_verified(
        bundle: Path, root_pem: Path) -> None:
    lines = read(bundle)
    assert sorted((a["method"], a["status"]) for a in lines) == [
        ("opentimestamps", "complete"), ("opentimestamps", "submitted"),
        ("rfc3161", "complete"), ("rfc3161", "complete")]
    for pinned in ([], ["--tsa-cert", str(root_pem)]):
        done = subprocess.run([sys.executable, "-m", "chalicelib.audit", "verify-bundle",
                               str(bundle), *pinned], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        out = done.stdout.splitlines()
        assert out[0].startswith("OK: ")
        assert any(line.startswith("NOT VERIFIED: 1 OpenTimestamps Bitcoin attestations") and
                   "Bitcoin block headers (no node offline" in line for line in out)
        assert any(line.startswith("NOT VERIFIED: ") and "pending OpenTimestamps" in line
                   for line in out)
        carried = [line for line in out if "certificate they carry" in line]
        assert len(carried) == (0 if pinned else 1)
        if not pinned:
            assert "trusted only as far as you trust it: --tsa-cert pins it" in carried[0]


Attack = Callable[[Lines], None]


def _move(lines: Lines) -> None:  # day 20's token moved onto day 21's anchor line
    pick(lines, "rfc3161", 21)["proof"] = pick(lines, "rfc3161", 20)["proof"]


def _move_ots(lines: Lines) -> None:
    pick(lines, "opentimestamps", 21)["proof"] = pick(lines, "opentimestamps", 20)["proof"]
    pick(lines, "opentimestamps", 21)["status"] = "complete"
    pick(lines, "opentimestamps", 21)["completed_at"] = "2026-11-22T10:00:00+00:00"


def _swap(lines: Lines) -> None:
    a, b = pick(lines, "rfc3161", 20), pick(lines, "rfc3161", 21)
    a["proof"], b["proof"] = b["proof"], a["proof"]


def _swap_lines(lines: Lines) -> None:  # whole lines swapped, names kept: closing ids differ
    a, b = pick(lines, "opentimestamps", 20), pick(lines, "opentimestamps", 21)
    for name in ("closing_entry_seq", "digest"):
        a[name], b[name] = b[name], a[name]


def _closing_id(lines: Lines) -> None:
    pick(lines, "rfc3161", 20)["closing_id"] = str(uuid.uuid4())


def _closing_id_of_other(lines: Lines) -> None:
    pick(lines, "rfc3161", 20)["closing_id"] = pick(lines, "rfc3161", 21)["closing_id"]


def _no_such_closing(lines: Lines) -> None:
    pick(lines, "rfc3161", 20)["closing_entry_seq"] = 999


def _status_complete(lines: Lines) -> None:  # submitted, claimed complete: no Bitcoin attestation
    pick(lines, "opentimestamps", 21).update(status="complete",
                                             completed_at="2026-11-22T10:00:00+00:00")


def _status_submitted(lines: Lines) -> None:  # complete, claimed submitted
    pick(lines, "opentimestamps", 20).update(status="submitted", completed_at=None)


def _status_pending(lines: Lines) -> None:
    pick(lines, "rfc3161", 20).update(status="pending", completed_at=None)


def _status_unknown(lines: Lines) -> None:
    pick(lines, "rfc3161", 20)["status"] = "verified"


def _truncated(lines: Lines) -> None:
    raw = base64.b64decode(pick(lines, "rfc3161", 20)["proof"])
    pick(lines, "rfc3161", 20)["proof"] = base64.b64encode(raw[:-7]).decode()


def _garbage(lines: Lines) -> None:
    pick(lines, "rfc3161", 20)["proof"] = base64.b64encode(b"\x30\x82garbage" * 9).decode()


def _ots_truncated(lines: Lines) -> None:
    raw = base64.b64decode(pick(lines, "opentimestamps", 20)["proof"])
    pick(lines, "opentimestamps", 20)["proof"] = base64.b64encode(raw[:-3]).decode()


@pytest.mark.parametrize(("attack", "expected"), [
    (_move, "rfc3161 proof from http://127.0.0.1:"),
    (_move_ots, ".ots proof is for another digest"),
    (_swap, "its message imprint is not SHA-256 of this closing"),
    (_swap_lines, "is not the id of the closing at entry"),
    (_closing_id, "is not the id of the closing at entry"),
    (_closing_id_of_other, "is not the id of the closing at entry"),
    (_no_such_closing, "closing_entry_seq 999 names no closing of the bundle"),
    (_status_complete, "status is complete but the .ots proof holds no Bitcoin attestation"),
    (_status_submitted, "status is submitted but the .ots proof holds a Bitcoin attestation"),
    (_status_pending, "status is pending but a proof is there"),
    (_status_unknown, "status 'verified' is not one a rfc3161 anchor has"),
    (_truncated, "token:"),
    (_garbage, "token:"),
    (_ots_truncated, ".ots proof truncated"),
])
def test_an_attack_on_the_anchors_is_a_fail_naming_the_closing_and_the_proof(
        bundle: Path, attack: Attack, expected: str) -> None:
    lines = read(bundle)
    attack(lines)
    write(bundle, lines)
    found = problem(bundle)
    assert found.startswith("anchors.jsonl line ") and expected in found, found
    if "names no closing" not in expected:
        assert " (closing " in found and " proof from http://127.0.0.1:" in found, found


def _standin_token(tsa: TsaStandIn, message: bytes, answer: Any = "good") -> str:
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response

    request = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    tsa.answer = answer
    try:
        response = decode_timestamp_response(tsa._respond(request.as_bytes()))
    finally:
        tsa.answer = "good"
    return base64.b64encode(response.time_stamp_token()).decode()


def test_a_token_for_another_digest_fails(bundle: Path,
                                          standins: tuple[CalendarStandIn, TsaStandIn]) -> None:
    lines = read(bundle)
    pick(lines, "rfc3161", 20)["proof"] = _standin_token(standins[1], b"another text")
    write(bundle, lines)
    assert "message imprint is not SHA-256 of this closing" in problem(bundle)


def test_a_token_signed_by_another_tsa_fails_when_the_tsa_is_pinned(
        bundle: Path, original: Path, standins: tuple[CalendarStandIn, TsaStandIn],
        root_pem: Path) -> None:
    lines = read(bundle)
    closing = next(json.loads(line) for line in (original / "closings.jsonl").open()
                   if json.loads(line)["entry_seq"] == pick(lines, "rfc3161", 20)[
                       "closing_entry_seq"])
    # A good token for the right digest, but from an impostor TSA with the same names.
    pick(lines, "rfc3161", 20)["proof"] = _standin_token(
        standins[1], closing["closing"].encode(), "other_key")
    write(bundle, lines)
    found = problem(bundle, root_pem)
    assert "neither pinned by --tsa-cert nor issued by a pinned one" in found, found
    # Unpinned, the carried certificate is taken, and the output says so.
    report = verify_bundle(bundle)
    assert report.ok and "trusted only as far as you trust it" in report.summary()


def test_a_pinned_certificate_of_another_tsa_refuses_the_real_tokens(
        bundle: Path, tmp_path: Path) -> None:
    other = TsaStandIn()  # never started: only its authority is used
    pem = tmp_path / "other.pem"
    pem.write_bytes(other.root_pem)
    assert "neither pinned by --tsa-cert" in problem(bundle, pem)


def test_the_command_line_refuses_a_tsa_cert_that_is_no_certificate(
        bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    done = subprocess.run([sys.executable, "-m", "chalicelib.audit", "verify-bundle",
                           str(bundle), "--tsa-cert", str(tmp_path / "bad.pem")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith("FAIL: --tsa-cert ")
    assert "Traceback" not in done.stderr
