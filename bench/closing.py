"""Closing benchmark (docs/benchmarks.md): sealing, proofs and offline verification, each
against a baseline measured in the same run on the same PostgreSQL.

    .venv/bin/python bench/closing.py            # full: a month of 100k entries, a 1M-leaf tree
    .venv/bin/python bench/closing.py --quick    # small sizes: only checks it works

(s) Seal a month of N entries spread over its 31 days (Europe/Paris): each day,
    then the month, through the real use case (engine Merkle extension, totals,
    Ed25519 signature, closing.sealed entry, engine checks). Baseline: a bare
    paged SELECT of the same N entries.
(o) Online verification of (s)'s chain (verify_ledger, GET /ledger/verify's work:
    links, hashes, canonical form, closings' signatures, roots and totals), best of
    2, then one run under tracemalloc for its Python heap peak. Baseline: the bare
    paged SELECT of (s).
(p) Inclusion proof in a tree of M leaves (the engine's node table, loaded
    directly as the superuser: M real entries would take an hour to chain):
    the O(log M) node reads of one proof in one query + proof assembly + check.
    Baseline: one primary-key SELECT of one node (one round trip).
(e) Export the audit bundle of (s) (`export-audit-bundle`: entries, closings, keys,
    an inclusion proof for every entry, consistency proofs, manifest), to a folder
    as the command does by default, and once to a zip. Baseline: a bare paged
    SELECT of the same entries, in alternating rounds. Then one more export under
    tracemalloc, for its peak memory next to the bundle's size (streaming: the
    peak stays flat however many entries; tests/integration/test_audit_bundle.py
    checks it does not grow with them).
(v) Verify the audit bundle of (s) offline (entries, closings, signatures, Merkle
    roots, totals, proofs) vs a bare SHA-256 loop over the same entry bytes.
Not a test: it prints figures and asserts only that what it made verifies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import time
import tracemalloc
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pg8000.native

from bench.chains import bulk_load_chain
from bench.stack import local_stack
from chalicelib.adapters.postgres import Database, app_connector
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.domain import merkle
from chalicelib.domain.closing import Period, paris_midnight
from chalicelib.domain.ledger import canonical_payload
from chalicelib.ports import Clock
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.seal_period import ClosingPorts, seal_period

MONTH = date(2026, 10, 1)


class FixedClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def sale(n: int) -> dict[str, Any]:
    net = f"{10 + n % 90}.00"
    vat = f"{(10 + n % 90) * 2 // 10}.00"
    gross = f"{(10 + n % 90) + (10 + n % 90) * 2 // 10}.00"
    return {"invoice_number": f"F-{n:06d}", "totals": {
        "tax_exclusive_amount": net, "tax_total": vat, "tax_inclusive_amount": gross,
        "vat_breakdown": [{"category": "S", "rate": "20.00", "taxable_amount": net,
                           "tax_amount": vat}]}}


def load_month(root: pg8000.native.Connection, database: Database, size: int) -> uuid.UUID:
    """A valid chain of `size` invoice entries over the 31 days of the month,
    bulk-loaded (bench/chains.py)."""
    tenant = create_tenant("Closing bench", database.unit_of_work)
    start = paris_midnight(MONTH)
    step = (paris_midnight(date(2026, 11, 1)) - start) / size
    bulk_load_chain(root, tenant, (canonical_payload(sale(n), start + step * n)
                                   for n in range(size)))
    return tenant


def bare_fetch(database: Database, tenant: uuid.UUID) -> float:
    started = time.perf_counter()
    with database.snapshot(tenant) as uow:
        for _ in uow.ledger.entries():
            pass
    return time.perf_counter() - started


def online_verify(database: Database, tenant: uuid.UUID, size: int,
                  pinned: dict[str, bytes], traced: bool = False) -> tuple[float, int, int]:
    """(seconds of verify_ledger over the sealed month, entries checked, Python heap peak
    in bytes when `traced`: tracemalloc slows the run, so timed runs are not traced).
    GET /ledger/verify's work: every link, hash, canonical form, closing and total."""
    from chalicelib.usecases.verify_ledger import verify_ledger
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    result = verify_ledger(tenant, database.snapshot, pinned=pinned)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    if not (result.ok and result.entries_checked >= size):
        raise RuntimeError(f"the bench chain does not verify online: {result}")
    return elapsed, result.entries_checked, peak


def seal_month(database: Database, tenant: uuid.UUID, signer: LocalSigningKey
               ) -> tuple[float, float, Any]:
    """(seconds for the 31 days, seconds for the month, the month's closing)."""
    day, days = MONTH, 0.0
    while day.month == MONTH.month:
        clock = FixedClock(paris_midnight(day + timedelta(days=1)) + timedelta(minutes=5))
        started = time.perf_counter()
        seal_period(tenant, Period("day", day), ClosingPorts(database.unit_of_work, signer,
                                                             clock))
        days += time.perf_counter() - started
        day += timedelta(days=1)
    clock = FixedClock(paris_midnight(date(2026, 11, 1)) + timedelta(minutes=6))
    started = time.perf_counter()
    month = seal_period(tenant, Period("month", MONTH),
                        ClosingPorts(database.unit_of_work, signer, clock)).closing
    return days, time.perf_counter() - started, month


def load_tree(root: pg8000.native.Connection, tenant: uuid.UUID, leaves: int) -> None:
    """A node table of `leaves` synthetic leaves, built set-based level by level."""
    root.run("BEGIN")
    root.run("INSERT INTO merkle_nodes (tenant_id, level, index, hash) "
             "SELECT :t, 0, i, sha256('\\x00'::bytea || sha256(int8send(i))) "
             "FROM generate_series(0, :n - 1) i", t=str(tenant), n=leaves)
    level = 1
    while leaves >> level:  # as the engine's merkle_extend does: one range scan per level
        root.run("INSERT INTO merkle_nodes (tenant_id, level, index, hash) "
                 "SELECT :t, CAST(:l AS smallint), x.idx / 2, "
                 "       sha256('\\x01'::bytea || x.h || x.next_h) "
                 "FROM (SELECT n.index AS idx, n.hash AS h, "
                 "             lead(n.index) OVER (ORDER BY n.index) AS next_idx, "
                 "             lead(n.hash) OVER (ORDER BY n.index) AS next_h "
                 "      FROM merkle_nodes n WHERE n.tenant_id = :t "
                 "      AND n.level = CAST(:l AS smallint) - 1) x "
                 "WHERE x.idx % 2 = 0 AND x.next_idx = x.idx + 1", t=str(tenant), l=level)
        level += 1
    root.run("COMMIT")


def proofs(database: Database, tenant: uuid.UUID, leaves: int, count: int
           ) -> tuple[list[float], list[int], list[float]]:
    """(seconds per proof, nodes read per proof, seconds per single-node read)."""
    times, reads, single = [], [], []
    rng = random.Random(7)
    with database.snapshot(tenant) as uow:
        store = uow.closings
        root_hash = merkle.root_from(leaves, store.merkle_nodes(merkle.root_coords(leaves)))
        for _ in range(count):
            index = rng.randrange(leaves)
            started = time.perf_counter()
            coords = merkle.inclusion_coords(index, leaves)
            nodes = store.merkle_nodes(coords)
            path = merkle.inclusion_proof(index, leaves, nodes)
            times.append(time.perf_counter() - started)
            reads.append(len(coords))
            leaf = hashlib.sha256(index.to_bytes(8, "big")).digest()
            if not merkle.verify_inclusion(leaf, index, leaves, path, root_hash):
                raise RuntimeError(f"proof for leaf {index} does not verify")
            started = time.perf_counter()
            store.merkle_nodes([(0, index)])
            single.append(time.perf_counter() - started)
    return times, reads, single


def export_bundle(database: Database, tenant: uuid.UUID, base: Path, signer: LocalSigningKey,
                  rounds: int) -> dict[str, Any]:
    """Seconds per export (folder) and per bare paged SELECT, alternating; one zip
    export; the peak traced memory of one more export and the bundle's bytes."""
    from chalicelib.audit.bundle import export_audit_bundle

    keys = {signer.key_id: signer.public_key}
    folder = base / "export"
    exports, selects = [], []
    for _ in range(rounds):
        selects.append(bare_fetch(database, tenant))
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        manifest = export_audit_bundle(tenant, database.snapshot, folder, keys=keys)
        exports.append(time.perf_counter() - started)
    size = sum(f.stat().st_size for f in folder.iterdir())
    started = time.perf_counter()
    export_audit_bundle(tenant, database.snapshot, base / "export.zip", keys=keys, zip=True)
    zipped = time.perf_counter() - started
    shutil.rmtree(folder)
    tracemalloc.start()
    try:
        export_audit_bundle(tenant, database.snapshot, folder, keys=keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shutil.rmtree(folder)
    (base / "export.zip").unlink()
    return {"entries": manifest["entries"], "exports": exports, "selects": selects,
            "zip": zipped, "peak": peak, "bytes": size}


def verify_offline(database: Database, tenant: uuid.UUID, folder: Path,
                   signer: LocalSigningKey) -> tuple[float, float, int, int]:
    """(seconds to verify the bundle, seconds of a bare sha256 loop over its entries, n,
    Python heap peak of a second, traced, verification in bytes)."""
    from chalicelib.audit.bundle import export_audit_bundle
    from chalicelib.audit.verify import verify_bundle

    export_audit_bundle(tenant, database.snapshot, folder,
                        keys={signer.key_id: signer.public_key})
    started = time.perf_counter()
    report = verify_bundle(folder, progress=False)
    elapsed = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"the bench bundle does not verify: {report}")
    tracemalloc.start()
    verify_bundle(folder, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    lines = (folder / "entries.jsonl").read_bytes().splitlines()
    started = time.perf_counter()
    for line in lines:
        hashlib.sha256(json.loads(line)["payload"].encode("utf-8")).digest()
    bare = time.perf_counter() - started
    return elapsed, bare, len(lines), peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    month_size = 3_100 if args.quick else 100_000
    tree_size = 20_000 if args.quick else 1_000_000
    proof_count = 20 if args.quick else 200
    export_rounds = 1 if args.quick else 3

    with local_stack(durable=True) as (stack, base):
        settings = stack.settings()
        root = stack.postgres.connect(settings.db_name)
        database = Database(app_connector(settings))
        signer = LocalSigningKey(stack.closing_key_file)
        print(f"PostgreSQL 15 durable (fsync on), {os.cpu_count()} CPUs")

        tenant = load_month(root, database, month_size)
        fetch = min(bare_fetch(database, tenant) for _ in range(2))
        days, month, closing = seal_month(database, tenant, signer)
        body = json.loads(closing.text)
        print(f"(s) seal a month of {month_size:,} entries: 31 day closings {days:.2f} s "
              f"(Merkle extension, totals, signature, engine checks), then the month "
              f"{month * 1000:.0f} ms; bare paged SELECT of the same entries {fetch:.2f} s: "
              f"ratio (days + month) / SELECT {(days + month) / fetch:.2f}x; "
              f"month count {body['count']:,}, Merkle size {body['merkle']['size']:,}")

        pinned = {signer.key_id: signer.public_key}
        online, total, _ = min(online_verify(database, tenant, month_size, pinned)
                               for _ in range(2))
        online_peak = online_verify(database, tenant, month_size, pinned, traced=True)[2]
        print(f"(o) online verification (GET /ledger/verify) of {total:,} entries: "
              f"{online:.2f} s = {total / online * 60:,.0f} entries/min, Python heap peak "
              f"{online_peak / 2**20:.1f} MiB; bare paged SELECT {month_size / fetch * 60:,.0f}"
              f"/min: ratio {fetch / online:.3f}x; load {os.getloadavg()[0]:.2f}")

        trees = create_tenant("Proof bench", database.unit_of_work)
        started = time.perf_counter()
        load_tree(root, trees, tree_size)
        built = time.perf_counter() - started
        times, reads, single = proofs(database, trees, tree_size, proof_count)
        print(f"(p) inclusion proof at {tree_size:,} leaves (node table built in {built:.1f} s): "
              f"p50 {statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms, "
              f"{max(reads)} node reads in one query (O(log n): log2 n = "
              f"{tree_size.bit_length()}); one single-node SELECT "
              f"{statistics.median(single) * 1000:.2f} ms: ratio "
              f"{statistics.median(times) / statistics.median(single):.2f}x")

        export = export_bundle(database, tenant, base, signer, export_rounds)
        n, ratios = export["entries"], [s / e for s, e in zip(export["selects"],
                                                             export["exports"], strict=True)]
        best = min(export["exports"])
        print(f"(e) export the audit bundle: {n:,} entries in "
              f"{', '.join(f'{e:.2f}' for e in export['exports'])} s, best "
              f"{n / best * 60:,.0f} entries/min (zip {n / export['zip'] * 60:,.0f}/min); bare "
              f"paged SELECT of the same entries {n / min(export['selects']) * 60:,.0f}/min: "
              f"ratio {statistics.median(ratios):.2f}x (median of {len(ratios)}, "
              f"{min(ratios):.2f}-{max(ratios):.2f}); peak traced memory "
              f"{export['peak'] / 2**20:.1f} MiB for a {export['bytes'] / 2**20:,.0f} MiB bundle")

        folder = base / "bundle"
        verify, bare, n, peak = verify_offline(database, tenant, folder, signer)
        print(f"(v) verify the audit bundle offline: {n:,} entries in {verify:.2f} s = "
              f"{n / verify * 60:,.0f} entries/min, Python heap peak {peak / 2**20:.1f} MiB; "
              f"bare SHA-256 loop over the same payloads {n / bare * 60:,.0f}/min: ratio "
              f"{bare / verify:.3f}x; load {os.getloadavg()[0]:.2f}")
        database.close()
        root.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
