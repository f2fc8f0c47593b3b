"""Audit bundles against the real PostgreSQL: export a sealed chain, verify it
offline through the command line, then tamper with copies of it the way an
attacker would (recomputing every hash it can) and check that the verifier
names the exact entry, closing or line."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from bench.chains import bulk_load_chain
from chalicelib.adapters.postgres import Database
from chalicelib.adapters.postgres import ledger as postgres
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.audit.bundle import export_audit_bundle
from chalicelib.audit.verify import Report, verify_bundle
from chalicelib.domain import merkle
from chalicelib.domain.closing import Period, closing_text
from chalicelib.domain.errors import NotFound
from chalicelib.domain.kinds import CREDIT_NOTE_ISSUED, INVOICE_ISSUED
from chalicelib.domain.ledger import canonical_payload, entry_hash
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.seal_period import ClosingPorts, seal_period
from tests.builders import append_entry, backed_entry, pinned
from tests.conftest import Connect
from tests.fakes import FrozenClock

ROOT = Path(__file__).resolve().parents[2]


def at(day: int, hour: int = 10, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def sale(number: str, *lines: tuple[str, str]) -> dict[str, Any]:
    """An invoice's ledger data with (net, rate) breakdown lines, category S."""
    breakdown, net_total, vat_total = [], Decimal(0), Decimal(0)
    for net, rate in lines:
        vat = (Decimal(net) * Decimal(rate) / 100).quantize(Decimal("0.01"))
        breakdown.append({"category": "S", "rate": rate, "taxable_amount": net,
                          "tax_amount": str(vat)})
        net_total, vat_total = net_total + Decimal(net), vat_total + vat
    return {"invoice_number": number, "totals": {
        "tax_exclusive_amount": str(net_total), "tax_total": str(vat_total),
        "tax_inclusive_amount": str(net_total + vat_total), "vat_breakdown": breakdown}}


def record(database: Database, tenant: uuid.UUID, when: datetime, kind: str,
           data: dict[str, Any]) -> None:
    append_entry(database.unit_of_work, tenant, when, kind, data)


def seal(database: Database, tenant: uuid.UUID, signer: LocalSigningKey, kind: str,
         label: str, now: datetime) -> None:
    assert seal_period(tenant, Period.parse(kind, label),
                       ClosingPorts(database.unit_of_work, signer, FrozenClock(now))).created


def new_key(path: Path) -> LocalSigningKey:
    LocalSigningKey.create(path)
    return LocalSigningKey(path)


@dataclass(frozen=True)
class Chain:
    tenant: uuid.UUID
    bundle: Path
    signer: LocalSigningKey
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def chain(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """Twelve entries: three days and their month sealed, two entries after them.

        1 F-1  2 F-2  3 invoice.archived            (day 2026-11-20)
        4 F-3  5 A-1 (credit note)  6 closing of the 20th   (day 21)
        7 F-4 (two rates)  8 closing of the 21st            (day 22)
        9 closing of the 22nd                               (day 23)
        10 closing of November, 11 F-5, 12 A-2 (unsealed)   (December 1st)
    """
    tenant = create_tenant(f"Audit {uuid.uuid4().hex[:8]}", database.unit_of_work)
    signer = new_key(tmp_path_factory.mktemp("keys") / "closing-key.pem")
    record(database, tenant, at(20), "invoice.issued", sale("F-1", ("100.00", "20.00")))
    record(database, tenant, at(20, 15), "invoice.issued", sale("F-2", ("50.00", "5.5")))
    record(database, tenant, at(20, 16), "invoice.archived", {"invoice_number": "F-1"})
    record(database, tenant, at(21), "invoice.issued", sale("F-3", ("10.00", "20.00")))
    record(database, tenant, at(21, 11), "credit_note.issued", sale("A-1", ("5.00", "20.00")))
    seal(database, tenant, signer, "day", "2026-11-20", at(21, 12))
    record(database, tenant, at(22), "invoice.issued",
           sale("F-4", ("20.00", "20.00"), ("10.00", "5.5")))
    seal(database, tenant, signer, "day", "2026-11-21", at(22, 12))
    seal(database, tenant, signer, "day", "2026-11-22", at(23, 12))
    seal(database, tenant, signer, "month", "2026-11", at(1, 12, month=12))
    record(database, tenant, at(1, 13, month=12), "invoice.issued",
           sale("F-5", ("7.00", "20.00")))
    record(database, tenant, at(1, 14, month=12), "credit_note.issued",
           sale("A-2", ("1.00", "20.00")))
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    manifest = export_audit_bundle(tenant, database.snapshot, out, keys=pinned(signer))
    return Chain(tenant, out, signer, manifest)


@pytest.fixture
def copy(chain: Chain, tmp_path: Path) -> Path:
    return Path(shutil.copytree(chain.bundle, tmp_path / "bundle"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.audit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def fails(path: Path) -> str:
    """Verify through the command line; the problem it names."""
    done = cli("verify-bundle", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.startswith("FAIL: ")
    return done.stderr.removeprefix("FAIL: ").strip()


def problem(path: Path) -> str:
    report = verify_bundle(path)
    assert not report.ok and report.problem
    return report.problem


# --- an attacker who rewrites the bundle and recomputes what it can ----------------------
def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def write_lines(path: Path, values: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in values), "utf-8")


def rechain(bundle: Path, entries: list[dict[str, Any]]) -> None:
    """Write entries with every link and hash recomputed, and a manifest to match."""
    prev = bytes(32)
    for e in entries:
        e["prev_hash"] = prev.hex()
        prev = entry_hash(prev, e["seq"], e["kind"], e["payload"])
        e["hash"] = prev.hex()
    write_lines(bundle / "entries.jsonl", entries)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["head"] = {"seq": entries[-1]["seq"], "hash": prev.hex()}
    manifest["entries"] = len(entries)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rehash(bundle)


def rehash(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((bundle / name).read_bytes()).hexdigest()
                         for name in manifest["files"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def rewrite_closing(bundle: Path, entry_seq: int, edit: Callable[[dict[str, Any]], None],
                    sign_with: LocalSigningKey | None) -> None:
    """Edit the closing at `entry_seq` in entries.jsonl and closings.jsonl alike,
    re-sign it (or keep its signature), and recompute the chain."""
    entries = lines(bundle / "entries.jsonl")
    entry = entries[entry_seq - 1]
    payload = json.loads(entry["payload"])
    data = payload["data"]
    body = json.loads(data["closing"])
    edit(body)
    data["closing"] = closing_text(body)
    if sign_with is not None:
        data["signature"] = sign_with.sign(data["closing"].encode()).hex()
        data["key_id"] = sign_with.key_id
    entry["payload"] = rfc8785.dumps(payload).decode()
    closings = lines(bundle / "closings.jsonl")
    for c in closings:
        if c["entry_seq"] == entry_seq:
            c.update(closing=data["closing"], signature=data["signature"], key_id=data["key_id"],
                     first_seq=body["first_seq"], last_seq=body["last_seq"])
    write_lines(bundle / "closings.jsonl", closings)
    rechain(bundle, entries)


# --- the honest bundle --------------------------------------------------------------------
def test_export_writes_the_layout_and_the_command_line_verifies_it(
        chain: Chain, database: Database, tmp_path: Path) -> None:
    bundle, manifest = chain.bundle, chain.manifest
    assert sorted(p.name for p in bundle.iterdir()) == [
        "anchors.jsonl", "closings.jsonl", "entries.jsonl", "keys.json", "manifest.json",
        "proofs.jsonl"]
    assert json.loads((bundle / "manifest.json").read_text()) == manifest
    assert manifest["format"] == "einvoice-audit-bundle" and manifest["version"] == 1
    assert (manifest["tenant_id"], manifest["entries"], manifest["closings"]) == (
        str(chain.tenant), 12, 4)
    assert manifest["exported_at"].endswith("Z")
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest

    with database.snapshot(chain.tenant) as uow:
        stored = [e.as_dict() for e in uow.ledger.entries()]
        head = uow.ledger.head()
    assert head is not None
    assert lines(bundle / "entries.jsonl") == stored
    assert manifest["head"] == {"seq": 12, "hash": head.hash.hex()}
    closings = lines(bundle / "closings.jsonl")
    assert [(c["kind"], c["period_start"], c["first_seq"], c["last_seq"], c["entry_seq"])
            for c in closings] == [
        ("day", "2026-11-20", 1, 3, 6), ("day", "2026-11-21", 4, 6, 8),
        ("day", "2026-11-22", 7, 8, 9), ("month", "2026-11-01", 1, 9, 10)]
    assert json.loads((bundle / "keys.json").read_text()) == {"keys": [
        {"key_id": chain.signer.key_id, "algorithm": "Ed25519",
         "public_key": chain.signer.public_key.hex()}]}
    proofs = lines(bundle / "proofs.jsonl")
    assert [(p["type"], p.get("seq"), p.get("closing_entry_seq"), p.get("tree_size"))
            for p in proofs[:5]] == [("inclusion", 1, 6, 3), ("inclusion", 2, 6, 3),
                                     ("inclusion", 4, 8, 6), ("inclusion", 5, 8, 6),
                                     ("inclusion", 7, 9, 8)]
    assert [(p["from_entry_seq"], p["to_entry_seq"], p["from_size"], p["to_size"])
            for p in proofs[5:]] == [(6, 8, 3, 6), (8, 9, 6, 8), (9, 10, 8, 9)]
    assert (bundle / "anchors.jsonl").read_bytes() == b""

    done = cli("verify-bundle", str(bundle))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"OK: 12 entries, 4 closings, 8 proofs; head {head.hash.hex()}\n"

    archive = tmp_path / "bundle.zip"
    assert export_audit_bundle(chain.tenant, database.snapshot, archive, zip=True,
                               keys=pinned(chain.signer))["entries"] == 12
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted([*manifest["files"], "manifest.json"])
    done = cli("verify-bundle", str(archive))
    assert done.returncode == 0 and done.stdout.startswith("OK: 12 entries, 4 closings"), \
        done.stderr
    with pytest.raises(FileExistsError):
        export_audit_bundle(chain.tenant, database.snapshot, archive, zip=True,
                            keys=pinned(chain.signer))
    # A .zip made by hand around the folder, as an auditor might receive it.
    shutil.make_archive(str(tmp_path / "by-hand"), "zip", bundle.parent, bundle.name)
    assert verify_bundle(tmp_path / "by-hand.zip").ok


def test_an_empty_chain_exports_and_verifies(
        database: Database, tenant: uuid.UUID, tmp_path: Path) -> None:
    manifest = export_audit_bundle(tenant, database.snapshot, tmp_path / "bundle", keys={})
    assert manifest["head"] == {"seq": 0, "hash": "00" * 32}
    done = cli("verify-bundle", str(tmp_path / "bundle"))
    assert done.stdout == f"OK: 0 entries, 0 closings, 0 proofs; head {'00' * 32}\n"
    assert json.loads((tmp_path / "bundle" / "keys.json").read_text()) == {"keys": []}
    with pytest.raises(NotFound):
        export_audit_bundle(uuid.uuid4(), database.snapshot, tmp_path / "nobody", keys={})
    assert not (tmp_path / "nobody").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no work folder left behind


def test_export_commands_run_against_the_environment(
        chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stack fixture put EINVOICE_* in this process's environment; the chain's
    # key is not the stack's signer: it is pinned as a retired key.
    unpinned = cli("export-audit-bundle", "--tenant", str(chain.tenant), str(tmp_path / "x"))
    assert unpinned.returncode == 1 and "no pinned public key for" in unpinned.stderr
    monkeypatch.setenv("EINVOICE_CLOSING_PUBLIC_KEYS", chain.signer.public_key.hex())
    done = cli("export-audit-bundle", "--tenant", str(chain.tenant), str(tmp_path / "a.zip"),
               "--zip")
    assert done.returncode == 0, done.stderr
    assert cli("verify-bundle", str(tmp_path / "a.zip")).returncode == 0
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / "env.json").write_text(json.dumps(
        {k: v for k, v in os.environ.items() if k.startswith("EINVOICE_")}))
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "export-audit-bundle", str(chain.tenant),
         str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False, env={**os.environ, "EINVOICE_STACK_DIR": str(stack_dir)})
    assert done.returncode == 0, done.stderr
    assert "12 entries, 4 closings" in done.stdout
    assert verify_bundle(tmp_path / "b").ok


def test_the_verifier_imports_only_the_standard_library_cryptography_and_merkle(
        chain: Chain) -> None:
    def modules(code: str) -> set[str]:
        done = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                               "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return set(json.loads(done.stderr.splitlines()[-1]))

    # The command line itself, as `python -m chalicelib.audit verify-bundle PATH` runs it,
    # less what the interpreter loads at start-up (site hooks, .pth files).
    imported = modules(
        "import runpy, sys\n"
        f"sys.argv = ['audit', 'verify-bundle', {str(chain.bundle)!r}]\n"
        "try:\n    runpy.run_module('chalicelib.audit', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code == 0\n") - modules("")
    ours = {m for m in imported if m.split(".")[0] == "chalicelib"}
    assert ours == {"chalicelib", "chalicelib.audit", "chalicelib.audit.anchors",
                    "chalicelib.audit.verify", "chalicelib.domain", "chalicelib.domain.merkle",
                    "chalicelib.domain.canonical_json", "chalicelib.domain.closing_totals"}
    others = {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names) - {
        "chalicelib", "cryptography", "_cffi_backend",
        "_openssl"}  # cryptography's own binding (cryptography.hazmat.bindings._rust)
    assert others == set(), others
    assert "cryptography" in {m.split(".")[0] for m in imported}


# --- one byte flipped, one field changed, one line gone -----------------------------------
def test_a_byte_flipped_in_any_entry_names_that_entry(copy: Path) -> None:
    original = (copy / "entries.jsonl").read_bytes()
    rows = original.split(b"\n")
    for index in range(12):
        target = b'"at\\":\\"2026-1'  # a digit of the recording time, inside the payload
        position = rows[index].index(target) + len(target)
        flipped = list(rows)
        row = bytearray(flipped[index])
        row[position] ^= 0x01  # '1' <-> '0', '2' <-> '3'
        flipped[index] = bytes(row)
        (copy / "entries.jsonl").write_bytes(b"\n".join(flipped))
        assert problem(copy) == f"entry {index + 1}: hash does not match"
    # Through the command line: the F-2 invoice's number, one byte.
    (copy / "entries.jsonl").write_bytes(original.replace(b'F-2', b'F-3', 1))
    assert fails(copy) == "entry 2: hash does not match"


def test_a_changed_hash_field_is_named(copy: Path) -> None:
    entries = lines(copy / "entries.jsonl")
    entries[3]["hash"] = hashlib.sha256(b"forged").hexdigest()
    write_lines(copy / "entries.jsonl", entries)
    assert fails(copy) == "entry 4: hash does not match"


def test_a_deleted_entry_is_named_missing(copy: Path) -> None:
    entries = lines(copy / "entries.jsonl")
    write_lines(copy / "entries.jsonl", entries[:6] + entries[7:])
    assert fails(copy) == "entry 7: missing (entries.jsonl line 7 holds entry 8)"


def test_a_rechained_edit_breaks_the_closing_over_it(copy: Path) -> None:
    """Edit an invoice and recompute the whole chain: the next closing's root no longer
    matches (it is signed, so it cannot follow)."""
    entries = lines(copy / "entries.jsonl")
    payload = json.loads(entries[3]["payload"])
    payload["data"]["invoice_number"] = "F-3bis"
    entries[3]["payload"] = rfc8785.dumps(payload).decode()
    rechain(copy, entries)
    assert fails(copy) == "closing of day 2026-11-21 (entry 8): merkle root does not match " \
                          "entries 1..6"


@pytest.mark.parametrize(("rewrite", "expected"), [
    (lambda p: json.dumps(p), "not RFC 8785 canonical JSON"),  # whitespace
    (lambda p: json.dumps(p, separators=(",", ":"), sort_keys=True).replace("A-2", "\\u0041-2"),
     "not RFC 8785 canonical JSON"),
    (lambda p: rfc8785.dumps(p).decode().replace('"v":1', '"v":1,"v":1'),
     "an object repeats the key 'v'"),
])
def test_a_rechained_non_canonical_payload_is_named(
        copy: Path, rewrite: Callable[[dict[str, Any]], str], expected: str) -> None:
    """The same data in another text, every hash recomputed (entry 12, after every
    closing): the online verifier refused it, verify-bundle took it."""
    entries = lines(copy / "entries.jsonl")
    entries[11]["payload"] = rewrite(json.loads(entries[11]["payload"]))
    rechain(copy, entries)
    assert fails(copy) == f"entry 12: payload: {expected}"


def test_truncated_newest_entries_are_caught_by_the_manifest_head(copy: Path) -> None:
    entries = lines(copy / "entries.jsonl")
    write_lines(copy / "entries.jsonl", entries[:10])
    rehash(copy)  # even with the file's SHA-256 made to match
    assert fails(copy) == "entries.jsonl ends at entry 10, but the manifest's head is entry 12"
    write_lines(copy / "entries.jsonl", entries[:8])  # a closing goes with them
    assert fails(copy) == "entries.jsonl ends at entry 8, but the manifest's head is entry 12"


# --- closings: signature, keys, totals ----------------------------------------------------
def test_a_closing_changed_everywhere_but_not_re_signed_fails_its_signature(
        copy: Path, chain: Chain) -> None:
    def edit(body: dict[str, Any]) -> None:
        body["totals"]["invoice.issued"]["tax_exclusive"] = "9.00"

    rewrite_closing(copy, 8, edit, sign_with=None)
    assert fails(copy) == (f"entry 8 (closing.sealed): signature does not verify with key "
                           f"{chain.signer.key_id}")


def test_a_closing_signed_by_a_key_not_in_keys_json_is_refused(
        copy: Path, tmp_path: Path) -> None:
    attacker = new_key(tmp_path / "attacker.pem")

    def edit(body: dict[str, Any]) -> None:
        body["key_id"] = attacker.key_id
        body["totals"]["invoice.issued"]["tax_exclusive"] = "9.00"

    rewrite_closing(copy, 8, edit, sign_with=attacker)
    assert fails(copy) == f"entry 8 (closing.sealed): key {attacker.key_id} is not in keys.json"


def test_an_attacker_key_under_the_real_key_id_is_refused(
        copy: Path, chain: Chain, tmp_path: Path) -> None:
    attacker = new_key(tmp_path / "attacker.pem")
    keys = json.loads((copy / "keys.json").read_text())
    keys["keys"][0]["public_key"] = attacker.public_key.hex()
    (copy / "keys.json").write_text(json.dumps(keys))
    entries = lines(copy / "entries.jsonl")
    closings = lines(copy / "closings.jsonl")
    for c in closings:  # every closing re-signed by the attacker, key_id kept
        entry = entries[c["entry_seq"] - 1]
        payload = json.loads(entry["payload"])
        c["signature"] = payload["data"]["signature"] = attacker.sign(
            c["closing"].encode()).hex()
        entry["payload"] = rfc8785.dumps(payload).decode()
    write_lines(copy / "closings.jsonl", closings)
    rechain(copy, entries)
    assert fails(copy) == (f"keys.json: key_id {chain.signer.key_id} does not match its public "
                           f"key (whose key_id is {attacker.key_id})")


@pytest.mark.parametrize(("entry_seq", "field", "value", "expected"), [
    (8, ("totals", "invoice.issued", "tax_exclusive"), "10.01",
     "closing of day 2026-11-21 (entry 8): totals[invoice.issued].tax_exclusive is 10.01, "
     "entries 4..6 sum to 10.00"),
    (9, ("totals", "invoice.issued", "by_rate", "S 5.5", "tax"), "0.56",
     "closing of day 2026-11-22 (entry 9): totals[invoice.issued].by_rate[S 5.5].tax is 0.56, "
     "entries 7..8 sum to 0.55"),
    (10, ("grand_totals", "credit_note.issued", "count"), 2,
     "closing of month 2026-11 (entry 10): grand_totals[credit_note.issued].count is 2, "
     "entries 1..9 hold 1"),
    (6, ("totals", "entries", "invoice.archived"), 2,
     "closing of day 2026-11-20 (entry 6): totals.entries[invoice.archived] is 2, "
     "entries 1..3 hold 1"),
    (8, ("count",), 4, "closing of day 2026-11-21 (entry 8): count is 4, entries 4..6 are 3"),
    (9, ("first_seq",), 6,
     "closing of day 2026-11-22 (entry 9): first_seq is 6, but the previous day closing "
     "(2026-11-21) ends at entry 6"),
    (9, ("last_entry_hash",), "00" * 32,
     "closing of day 2026-11-22 (entry 9): last_entry_hash is not the hash of entry 8"),
    (10, ("previous_closing_sha256",), "00" * 32,
     "closing of month 2026-11 (entry 10): previous_closing_sha256 is not the SHA-256 of the "
     "previous closing's text"),
    (6, ("tenant_id",), str(uuid.UUID(int=1)),
     "closing of day 2026-11-20 (entry 6): tenant_id is '00000000-0000-0000-0000-000000000001'"),
])
def test_a_re_signed_closing_with_a_wrong_figure_is_named(
        copy: Path, chain: Chain, entry_seq: int, field: tuple[str, ...], value: Any,
        expected: str) -> None:
    """The attacker holds the real signing key and recomputes every hash: only the
    closing's content against the entries can give it away."""
    def edit(body: dict[str, Any]) -> None:
        target = body
        for name in field[:-1]:
            target = target[name]
        target[field[-1]] = value
        if field[0] == "first_seq":
            body["count"] = body["last_seq"] - value + 1

    rewrite_closing(copy, entry_seq, edit, sign_with=chain.signer)
    assert fails(copy).startswith(expected)


def test_closings_jsonl_must_match_the_chain(copy: Path) -> None:
    closings = lines(copy / "closings.jsonl")
    forged = [dict(c) for c in closings]
    forged[1]["signature"] = forged[0]["signature"]
    write_lines(copy / "closings.jsonl", forged)
    assert fails(copy) == "closings.jsonl line 2: signature differs from entry 8's"
    write_lines(copy / "closings.jsonl", closings[:1] + closings[2:])
    assert fails(copy) == "entry 8 (closing.sealed): its closing is not in closings.jsonl"
    forged = [dict(c) for c in closings]
    forged[3]["last_seq"] = 8
    write_lines(copy / "closings.jsonl", forged)
    assert fails(copy) == ("closings.jsonl line 4: first_seq and last_seq differ from the "
                           "signed closing's (1..9)")


def test_bytes_outside_the_chain_are_caught_by_the_manifest(copy: Path) -> None:
    closings = lines(copy / "closings.jsonl")
    closings[0]["id"] = str(uuid.uuid4())  # the one field no signature covers
    write_lines(copy / "closings.jsonl", closings)
    assert fails(copy) == "file closings.jsonl: SHA-256 does not match the manifest"


# --- proofs -------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    (4, "proofs.jsonl line 4: inclusion proof for entry 5 does not verify"),
    (7, "proofs.jsonl line 7: consistency proof from entry 8 to entry 9 does not verify"),
])
def test_a_tampered_proof_names_its_line(copy: Path, line: int, expected: str) -> None:
    proofs = lines(copy / "proofs.jsonl")
    path = proofs[line - 1]["path"]
    path[0] = path[0][:-1] + ("0" if path[0][-1] != "0" else "1")
    write_lines(copy / "proofs.jsonl", proofs)
    assert fails(copy) == expected


# --- keys rotate; auditors may pin them ---------------------------------------------------
def test_closings_signed_before_and_after_a_key_rotation_verify(
        database: Database, tenant: uuid.UUID, tmp_path: Path) -> None:
    path = tmp_path / "closing-key.pem"
    first = new_key(path)
    record(database, tenant, at(20), "invoice.issued", sale("F-1", ("100.00", "20.00")))
    seal(database, tenant, first, "day", "2026-11-20", at(21, 12))
    LocalSigningKey.create(path, replace=True)
    second = LocalSigningKey(path)
    assert second.key_id != first.key_id
    record(database, tenant, at(21, 13), "invoice.issued", sale("F-2", ("10.00", "20.00")))
    seal(database, tenant, second, "day", "2026-11-21", at(22, 12))
    with pytest.raises(RuntimeError, match=f"no pinned public key for {first.key_id}"):
        export_audit_bundle(tenant, database.snapshot, tmp_path / "bundle",
                            keys=pinned(second))  # the retired key not configured
    export_audit_bundle(tenant, database.snapshot, tmp_path / "bundle",
                        keys=pinned(second, first))

    keys = json.loads((tmp_path / "bundle" / "keys.json").read_text())["keys"]
    assert [(k["key_id"], k["public_key"]) for k in keys] == [
        (first.key_id, first.public_key.hex()), (second.key_id, second.public_key.hex())]
    done = cli("verify-bundle", str(tmp_path / "bundle"))
    assert done.returncode == 0 and done.stdout.startswith("OK: 4 entries, 2 closings, 3 proofs")
    trusted = cli("verify-bundle", str(tmp_path / "bundle"), "--trusted-key", first.key_id,
                  "--trusted-key", second.public_key.hex())
    assert trusted.returncode == 0, trusted.stderr
    only_first = cli("verify-bundle", str(tmp_path / "bundle"), "--trusted-key", first.key_id)
    assert only_first.stderr == (f"FAIL: entry 4 (closing.sealed): key {second.key_id} is not "
                                 "one of the trusted keys\n")


# --- bounded memory, progress -------------------------------------------------------------
@pytest.fixture
def long_chain(database: Database, tenant: uuid.UUID, tmp_path: Path) -> Iterator[uuid.UUID]:
    """3,000 invoices of about 2 KB each (one transaction), their day sealed, 50 more."""
    filler = "x" * 2000
    with database.unit_of_work(tenant) as uow:
        for i in range(3000):
            data = sale(f"F-{i}", ("1.00", "20.00")) | {"note": filler}
            backed_entry(uow, INVOICE_ISSUED, data, at(20))
    seal(database, tenant, new_key(tmp_path / "key.pem"), "day", "2026-11-20", at(21, 12))
    with database.unit_of_work(tenant) as uow:
        for i in range(50):
            backed_entry(uow, CREDIT_NOTE_ISSUED, sale(f"A-{i}", ("1.00", "20.00")), at(21))
    yield tenant


def test_export_and_verify_stream_in_bounded_memory(
        database: Database, long_chain: uuid.UUID, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Small pages, so the chain's ~6 MB of payloads spans many of them.
    monkeypatch.setattr(postgres, "PAGE_BYTES", 256 * 1024)
    started = time.monotonic()
    tracemalloc.start()
    try:
        manifest = export_audit_bundle(long_chain, database.snapshot, tmp_path / "bundle",
                                       keys=pinned(LocalSigningKey(tmp_path / "key.pem")))
        _, exported_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report = verify_bundle(tmp_path / "bundle")
        _, verified_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert manifest["entries"] == 3051 and report.ok, report.problem
    assert (report.entries, report.closings, report.proofs) == (3051, 1, 3000)
    size = (tmp_path / "bundle" / "entries.jsonl").stat().st_size
    assert size > 6_000_000
    assert exported_peak < size / 3 and verified_peak < 1_000_000, (exported_peak,
                                                                     verified_peak)
    assert time.monotonic() - started < 15


def bulk_sealed_chain(database: Database, superuser: Connect, key: Path,
                      size: int) -> tuple[uuid.UUID, LocalSigningKey]:
    """`size` invoices over 26 hours from the 20th, 10:00 UTC (two Paris days, the
    cut in the middle of a block of proofs), bulk-loaded; both days sealed."""
    tenant = create_tenant(f"Bulk {uuid.uuid4().hex[:8]}", database.unit_of_work)
    step = timedelta(hours=26) / size
    root = superuser()
    try:
        bulk_load_chain(root, tenant, (canonical_payload(sale(f"F-{n}", ("1.00", "20.00")),
                                                         at(20) + step * n)
                                       for n in range(size)))
    finally:
        root.close()
    signer = new_key(key)
    seal(database, tenant, signer, "day", "2026-11-20", at(21, 12))
    seal(database, tenant, signer, "day", "2026-11-21", at(22, 12))
    return tenant, signer


def test_export_memory_does_not_grow_with_the_chain(
        database: Database, superuser: Connect, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten times the entries, the same peak: entries, proofs and hashes are streamed
    (pages of 500 entries here, proofs a block of 1,024 leaves at a time), and
    every proof made a block at a time verifies, across the day's cut."""
    monkeypatch.setattr(postgres, "PAGE_SIZE", 500)
    peaks = {}
    for size in (1_500, 15_000):
        tenant, signer = bulk_sealed_chain(database, superuser, tmp_path / f"{size}.pem", size)
        out = tmp_path / f"bundle-{size}"
        tracemalloc.start()
        try:
            manifest = export_audit_bundle(tenant, database.snapshot, out, keys=pinned(signer))
            peaks[size] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert manifest["entries"] == size + 2
        assert manifest["inclusion_proofs"]["count"] == size
        report = verify_bundle(out)
        assert report.ok, report.problem
        assert (report.entries, report.closings, report.proofs) == (size + 2, 2, size + 1)
    assert peaks[15_000] < 1.5 * peaks[1_500], peaks


def test_progress_bar_on_stderr_above_the_threshold(
        chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_bundle(chain.bundle, progress=True).ok
    assert capsys.readouterr().err == ""  # 12 entries: below the threshold
    report: Report = verify_bundle(chain.bundle, progress=True, progress_threshold=5)
    assert report.ok
    err = capsys.readouterr().err
    assert err.startswith("\rverifying entries: 1 / 12") and err.endswith(
        "\rverifying entries: 12 / 12 (100%)\n")


def test_entries_with_other_data_are_counted_not_summed_and_never_block_sealing(
        database: Database, tmp_path: Path) -> None:
    """The devstack example in docs/operations.md appends an invoice.issued without totals;
    others hold numbers, words or odd shapes: sealing still works, the same rule
    (only strings of plain decimals are summed) holds in SQL and in the verifier."""
    tenant = create_tenant("Odd data", database.unit_of_work)
    signer = new_key(tmp_path / "k.pem")
    record(database, tenant, at(20), "invoice.issued", {"number": "F-1", "total": "120.00"})
    record(database, tenant, at(20, 11), "invoice.issued", {"totals": {
        "tax_exclusive_amount": "abc", "tax_total": 3, "tax_inclusive_amount": "1e3",
        "vat_breakdown": {"category": "S"}}})
    record(database, tenant, at(20, 12), "credit_note.issued", {"totals": {
        "tax_exclusive_amount": "10.50", "vat_breakdown": [
            {"category": "S", "rate": "20.00", "taxable_amount": "10.50", "tax_amount": "x"},
            {"category": 1, "rate": "20.00", "taxable_amount": "99.00"}, "not an object"]}})
    record(database, tenant, at(20, 13), "invoice.issued", sale("F-2", ("20.00", "10.00")))
    seal(database, tenant, signer, "day", "2026-11-20", at(21))
    with database.snapshot(tenant) as uow:
        closing = uow.closings.latest()
    assert closing is not None
    body = json.loads(closing.text)
    issued, credited = body["totals"]["invoice.issued"], body["totals"]["credit_note.issued"]
    assert issued["count"] == 3 and Decimal(issued["tax_exclusive"]) == Decimal("20.00")
    assert credited["count"] == 1 and Decimal(credited["tax_exclusive"]) == Decimal("10.50")
    assert credited["by_rate"] == {"S 20.00": {"taxable": "10.50", "tax": "0"}}
    out = tmp_path / "bundle"
    export_audit_bundle(tenant, database.snapshot, out, keys=pinned(signer))
    assert verify_bundle(out, progress=False).ok


def test_every_closing_but_the_widest_is_proven_to_extend_into_a_wider_one(
        database: Database, tmp_path: Path) -> None:
    """Sealing order makes a month cover less than the next month's first day,
    sealed before it: consistency goes to the next closing that covers more."""
    tenant = create_tenant("Month edge", database.unit_of_work)
    signer = new_key(tmp_path / "k.pem")
    record(database, tenant, at(30), "invoice.issued", sale("F-1", ("1.00", "20.00")))
    record(database, tenant, at(1, 9, month=12), "invoice.issued", sale("F-2", ("2.00", "20.00")))
    seal(database, tenant, signer, "day", "2026-11-30", at(1, 1, month=12))
    seal(database, tenant, signer, "day", "2026-12-01", at(2, 1, month=12))
    seal(database, tenant, signer, "month", "2026-11", at(2, 2, month=12))
    out = tmp_path / "bundle"
    export_audit_bundle(tenant, database.snapshot, out, keys=pinned(signer))
    closings = [json.loads(line) for line in (out / "closings.jsonl").read_text().splitlines()]
    steps = [json.loads(line) for line in (out / "proofs.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "consistency"]
    widest = max(c["last_seq"] for c in closings)
    assert {s["from_entry_seq"] for s in steps} == {
        c["entry_seq"] for c in closings if c["last_seq"] < widest}
    assert verify_bundle(out, progress=False).ok


# --- zip input: names, bombs, garbage -----------------------------------------------------
def zipped(bundle: Path, out: Path, extra: Sequence[tuple[str, bytes]] = (),
           first: Sequence[tuple[str, bytes]] = ()) -> Path:
    """The bundle as a .zip, with members written before (`first`) or after (`extra`) it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, and writes it
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in first:
                z.writestr(name, data)
            for name in sorted(p.name for p in bundle.iterdir()):
                z.writestr(name, (bundle / name).read_bytes())
            for name, data in extra:
                z.writestr(name, data)
    return out


def test_a_zip_member_named_twice_or_outside_its_folder_is_refused(
        chain: Chain, copy: Path, tmp_path: Path) -> None:
    """`unzip` extracts the first of two entries.jsonl, the verifier used to read the last:
    an honest member last would vouch for a forged one first."""
    entries = (copy / "entries.jsonl").read_bytes()
    forged = entries.replace(b"F-2", b"F-9", 1)
    twice = zipped(chain.bundle, tmp_path / "twice.zip", first=[("entries.jsonl", forged)])
    with zipfile.ZipFile(twice) as z:
        assert [i.filename for i in z.infolist()].count("entries.jsonl") == 2
        assert z.read("entries.jsonl") == entries  # what the verifier read before the fix
    assert fails(twice) == ".zip member 'entries.jsonl': its name is given twice"
    for name in ("/etc/passwd", "../entries.jsonl", "x/../../y", "a\\b.jsonl", "C:x.jsonl",
                 "./entries.jsonl"):
        bad = zipped(chain.bundle, tmp_path / "bad.zip", extra=[(name, b"x")])
        assert fails(bad) == (f".zip member {name!r}: not a plain relative name (absolute, "
                              "'..', backslash or drive letter)"), name
        bad.unlink()


BOMB_LIMIT = 512 << 20


def limited_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line under a 512 MB address-space limit."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (BOMB_LIMIT, BOMB_LIMIT))

    return subprocess.run([sys.executable, "-m", "chalicelib.audit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=limit)


def test_a_zip_bomb_is_refused_in_bounded_memory(chain: Chain, tmp_path: Path) -> None:
    """entries.jsonl as 600 MB of one line compressed to well under 1 MB: read line by
    line with a bound, the verifier fails at 1 MiB instead of exhausting memory."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("manifest.json", "keys.json", "closings.jsonl", "proofs.jsonl",
                     "anchors.jsonl"):
            z.writestr(name, (chain.bundle / name).read_bytes())
        with z.open("entries.jsonl", "w", force_zip64=True) as member:
            block = b"0" * (1 << 20)
            for _ in range(600):
                member.write(block)
    assert bomb.stat().st_size < 1 << 20
    done = limited_cli("verify-bundle", str(bomb))
    assert done.returncode == 1, done.stderr
    assert done.stderr == "FAIL: file entries.jsonl: line 1 is longer than 1048576 bytes\n"
    # The member bound, on what a member declares (.zip) and on what is read (folder).
    size = (chain.bundle / "entries.jsonl").stat().st_size
    assert max((chain.bundle / n).stat().st_size for n in (
        "closings.jsonl", "keys.json", "manifest.json")) < 10_000 < size
    report = verify_bundle(zipped(chain.bundle, tmp_path / "b.zip"), max_member_bytes=10_000)
    assert report.problem == f".zip member 'entries.jsonl': declares {size} bytes, more than " \
                             "10000"
    assert verify_bundle(chain.bundle, max_member_bytes=10_000).problem == \
        "file entries.jsonl: larger than 10000 bytes"
    assert verify_bundle(chain.bundle, max_line_bytes=100).problem == \
        "file manifest.json: larger than 100 bytes"
    done = cli("verify-bundle", str(chain.bundle), "--max-line-bytes", "2000")
    # line 6: the first closing, its signed text the longest line
    assert done.stderr == "FAIL: file entries.jsonl: line 6 is longer than 2000 bytes\n"


def test_garbage_input_is_a_fail_line_never_a_traceback(
        chain: Chain, copy: Path, tmp_path: Path) -> None:
    honest = zipped(chain.bundle, tmp_path / "honest.zip").read_bytes()
    cases: dict[str, Path] = {}
    for name, data in {"random": os.urandom(5000), "empty": b"", "text": b"hello\n",
                       "truncated": honest[: len(honest) // 2],
                       "cut-end": honest[:-10], "zip-header-only": b"PK\x03\x04" + bytes(40),
                       "damaged": honest[:200] + bytes(100) + honest[300:]}.items():
        (tmp_path / f"{name}.zip").write_bytes(data)
        cases[name] = tmp_path / f"{name}.zip"
    for name, data in {"non-utf8": b"\xff\xfe\n", "invalid-json": b'{"seq": 1,\n',
                       "nul": b"\x00" * 50}.items():
        folder = Path(shutil.copytree(copy, tmp_path / name))
        (folder / "entries.jsonl").write_bytes(data)
        cases[name] = folder
        cases[f"{name}.zip"] = zipped(folder, tmp_path / f"{name}-bundle.zip")
    (copy / "manifest.json").write_bytes(b"\xff")
    cases["manifest"] = copy
    for name, path in cases.items():
        done = cli("verify-bundle", str(path))
        assert done.returncode == 1 and done.stdout == "", (name, done.stderr)
        assert done.stderr.startswith("FAIL: ") and done.stderr.count("\n") == 1, \
            (name, done.stderr)
    assert fails(cases["non-utf8"]) == "entry 1 (entries.jsonl line 1): not UTF-8"
    assert fails(cases["invalid-json"]) == "entry 1 (entries.jsonl line 1): not valid JSON"


# --- the manifest lists which entries have an inclusion proof -----------------------------
def test_the_manifest_lists_every_sealed_money_entry_as_proven(chain: Chain) -> None:
    assert chain.manifest["inclusion_proofs"] == {
        "kinds": ["invoice.issued", "credit_note.issued"], "through_seq": 9, "count": 5}


def test_a_removed_inclusion_proof_is_named(copy: Path) -> None:
    proofs = lines(copy / "proofs.jsonl")
    write_lines(copy / "proofs.jsonl", proofs[:1] + proofs[2:])  # entry 2's
    rehash(copy)
    assert fails(copy) == ("entry 2 (invoice.issued): sealed, but proofs.jsonl has no "
                           "inclusion proof for it (the manifest lists every sealed money "
                           "entry)")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["inclusion_proofs"]["count"] = 4  # the manifest made to agree
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert fails(copy).startswith("entry 2 (invoice.issued): sealed, but proofs.jsonl has no")
    # The last money entries dropped from the statement and their proof removed.
    write_lines(copy / "proofs.jsonl", proofs[:4] + proofs[5:])  # entry 7's
    manifest["inclusion_proofs"].update(through_seq=6, count=4)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    rehash(copy)
    assert fails(copy).startswith("entry 7 (invoice.issued): sealed, but proofs.jsonl has no")


def test_the_manifest_statement_must_match_the_bundle(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    changes: list[tuple[dict[str, Any], str]] = [
            ({"count": 6}, "manifest.json: inclusion_proofs.count is 6, but 5 money entries "
                           "are sealed"),
            ({"through_seq": 12}, "manifest.json: inclusion_proofs.through_seq is 12, but the "
                                  "widest closing ends at entry 9"),
            ({"kinds": ["invoice.issued"]}, "manifest.json: inclusion_proofs is not {kinds: "
                                            "['invoice.issued', 'credit_note.issued'], "
                                            "through_seq, count}")]
    for change, expected in changes:
        (copy / "manifest.json").write_text(json.dumps(
            {**manifest, "inclusion_proofs": {**manifest["inclusion_proofs"], **change}}))
        assert fails(copy) == expected
    del manifest["inclusion_proofs"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert fails(copy) == "manifest.json: misses inclusion_proofs"


def test_an_added_proof_for_an_unlisted_entry_is_named(copy: Path) -> None:
    """A valid inclusion proof of entry 3 (invoice.archived, not a money entry)."""
    entries = lines(copy / "entries.jsonl")
    h1, h2, h3 = (bytes.fromhex(e["hash"]) for e in entries[:3])
    path = [merkle.node_hash(merkle.leaf_hash(h1), merkle.leaf_hash(h2))]
    closing = json.loads(lines(copy / "closings.jsonl")[0]["closing"])
    assert merkle.verify_inclusion(h3, 2, 3, path, bytes.fromhex(closing["merkle"]["root"]))
    proofs = lines(copy / "proofs.jsonl")
    extra = {"type": "inclusion", "seq": 3, "closing_entry_seq": 6, "tree_size": 3,
             "path": [p.hex() for p in path]}
    write_lines(copy / "proofs.jsonl", [*proofs[:2], extra, *proofs[2:]])
    rehash(copy)
    assert fails(copy) == ("proofs.jsonl line 3: an inclusion proof for entry 3, which is not "
                           "a sealed money entry (the manifest lists no such proof)")
