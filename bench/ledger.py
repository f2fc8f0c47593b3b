"""Ledger benchmark: append throughput and verification speed, each as a ratio
against a baseline measured in the same run on the same PostgreSQL.

    .venv/bin/python bench/ledger.py            # full: 5 rounds x 200 appends/writer, 100k verify
    .venv/bin/python bench/ledger.py --quick    # a small run that only checks it works

(a) 32 writers across 8 tenants and (b) 32 writers on one tenant (processes,
as function instances are); each append is a transaction through the real use
case (head lock, engine-side hash and link checks, RLS). Baseline: the same
writers doing one plain INSERT per transaction, rows of the same size, into a
table with the same columns and no triggers or RLS. Verification: the verify
use case over N entries vs a bare paged SELECT of the same rows. Not a test:
it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pg8000.native

from bench.chains import bulk_load_chain
from bench.stack import local_stack
from chalicelib.adapters.postgres import PAGE_SIZE, Database, app_connector
from chalicelib.config import Settings
from chalicelib.domain.ledger import (
    GENESIS,
    canonical_payload,
    next_entry,
)
from chalicelib.ports import SystemClock
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.verify_ledger import verify_ledger

PAYLOAD = {"number": "F-2026-000001", "total_net": "100.00", "total_vat": "20.00",
           "total_gross": "120.00", "currency": "EUR"}
AT = datetime(2026, 11, 23, tzinfo=UTC)
# What the generic append path may write (the fiscal kinds come with their invoice).
KIND = "bench.entry"


def _writer(work: Callable[[int], None], i: int, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        work(i)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        failures.put(f"writer {i}: {type(exc).__name__}: {exc}")


def in_processes(writers: int, work: Callable[[int], None]) -> float:
    """Run work(i) in `writers` processes released together; return wall seconds.

    Processes, not threads: each function instance is its own process in
    production, and threads would make writers wait on Python's GIL (while
    holding a chain-head lock) in a way no deployment does.
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    failures = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(work, i, barrier, failures))
             for i in range(writers)]
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    if not failures.empty():
        raise RuntimeError(failures.get())
    return elapsed


def appends(settings: Settings, tenants: list[uuid.UUID], writers: int, per_writer: int) -> float:
    def work(i: int) -> None:
        db = Database(app_connector(settings))
        clock = SystemClock()
        try:
            for _ in range(per_writer):
                append_ledger(AppendRequest(tenant_id=tenants[i % len(tenants)],
                                            kind=KIND, payload=PAYLOAD),
                              db.unit_of_work, clock)
        finally:
            db.close()

    return writers * per_writer / in_processes(writers, work)


def plain_inserts(settings: Settings, tenants: list[uuid.UUID], writers: int,
                  per_writer: int) -> float:
    row = next_entry(GENESIS, KIND, canonical_payload(PAYLOAD, AT))

    def work(i: int) -> None:
        conn = app_connector(settings)()
        try:
            for n in range(per_writer):
                conn.run("BEGIN")
                conn.run("INSERT INTO bench_plain VALUES (:t, :s, :k, :p, :ph, :h)",
                         t=str(tenants[i % len(tenants)]), s=i * per_writer + n, k=row.kind,
                         p=row.payload, ph=row.prev_hash, h=row.hash)
                conn.run("COMMIT")
        finally:
            conn.close()

    return writers * per_writer / in_processes(writers, work)


def load_chain(root: pg8000.native.Connection, database: Database, size: int) -> uuid.UUID:
    """A valid chain of `size` entries, bulk-loaded (bench/chains.py)."""
    tenant = create_tenant("Verify bench", database.unit_of_work)
    bulk_load_chain(root, tenant, (canonical_payload({**PAYLOAD, "n": n}, AT)
                                   for n in range(size)))
    return tenant


def bare_fetch(database: Database, tenant: uuid.UUID) -> float:
    started = time.perf_counter()
    with database.snapshot(tenant) as uow:
        for _ in uow.ledger.entries():
            pass
    return time.perf_counter() - started


def timed_verify(database: Database, tenant: uuid.UUID, size: int) -> float:
    started = time.perf_counter()
    result = verify_ledger(tenant, database.snapshot)
    elapsed = time.perf_counter() - started
    if not (result.ok and result.entries_checked == size):
        raise RuntimeError(f"benchmark chain did not verify: {result}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--rounds", type=int, default=None,
                        help="baseline/ledger rounds per scenario (default 5, quick 1)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="fsync off (CPU-bound; the default is a durable cluster)")
    args = parser.parse_args()
    per_writer = 10 if args.quick else 200
    args.rounds = args.rounds or (1 if args.quick else 5)
    verify_size = 3000 if args.quick else 100_000
    writers, tenants_n = 32, 8

    with local_stack(durable=not args.no_fsync) as (stack, _):
        settings = stack.settings()
        root = stack.postgres.connect(settings.db_name)
        root.run("CREATE TABLE bench_plain (tenant_id uuid, seq bigint, kind text, "
                 "payload text, prev_hash bytea, hash bytea)")
        root.run(f"GRANT INSERT ON bench_plain TO {settings.db_app_user}")
        database = Database(app_connector(settings))
        tenants = [create_tenant(f"Bench {i}", database.unit_of_work) for i in range(tenants_n)]
        solo = [create_tenant("Bench solo", database.unit_of_work)]
        print(f"PostgreSQL 15, {'fsync off' if args.no_fsync else 'durable (fsync on)'}, "
              f"{os.cpu_count()} CPUs; {writers} writers x {per_writer} appends")

        # Baseline and ledger alternate, round after round, so that a noisy
        # neighbour on a shared machine weighs on both; the median is reported.
        scenarios = [("(a)", f"{writers} writers / {tenants_n} tenants", tenants, 0.5),
                     ("(b)", f"{writers} writers / 1 tenant", solo, 0.3)]
        for tag, label, targets, goal in scenarios:
            ratios, ours, plain = [], [], []
            for _ in range(args.rounds):
                plain.append(plain_inserts(settings, targets, writers, per_writer))
                ours.append(appends(settings, targets, writers, per_writer))
                ratios.append(ours[-1] / plain[-1])
            print(f"{tag} {label}: ledger {statistics.median(ours):6.0f} appends/s, plain INSERT "
                  f"{statistics.median(plain):6.0f} rows/s, ratio {statistics.median(ratios):.2f}x "
                  f"(median of {args.rounds}; range {min(ratios):.2f}-{max(ratios):.2f}; "
                  f"target >= {goal}x)")

        tenant = load_chain(root, database, verify_size)
        fetch = min(bare_fetch(database, tenant) for _ in range(2))  # best of 2: warm cache
        elapsed = min(timed_verify(database, tenant, verify_size) for _ in range(2))
        print(f"(v) verify {verify_size} entries (pages of {PAGE_SIZE}): "
              f"{verify_size / elapsed * 60:,.0f} entries/min (best of 2; target >= 1,000,000); "
              f"bare paged SELECT of the same rows {verify_size / fetch * 60:,.0f}/min, "
              f"ratio {fetch / elapsed:.2f}x")
        database.close()
        root.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
