"""Issue-invoice benchmark: POST /invoices end to end through the HTTP API on
the local stack, as a ratio against the bare library work for the same invoice
measured in the same run.

    .venv/bin/python bench/issue_invoice.py            # full: 5 rounds x 20 invoices each way
    .venv/bin/python bench/issue_invoice.py --quick    # 3 rounds x 2: only checks it works

Library work (the baseline), in process: CII XML + visual PDF/A-3 + factur-x
embedding + XSD + EN 16931 schematron (the same worker subprocess the server
uses); no database, no S3. Parsing and validating the draft is our
orchestration and is left out of it.

End to end: `POST /invoices` (API key, Idempotency-Key, events/invoice.json dated today)
to the local HTTP server `bin/run` uses (devstack.api: Chalice's local server,
a thread per HTTP connection, TCP_NODELAY on its sockets) in this process, on
PostgreSQL 15 and the moto S3 server. The
client sends one request at a time, no concurrency (chalice local keeps the
current request on the shared app object; a function instance serves one
request at a time too). The ways, each as a ratio to the library work:
  [devstack]        one keep-alive HTTP connection: one server thread whose
                    database connection is reused, as a warm function's: the headline;
  [new connection]  a new HTTP connection per request (as curl): devstack's server
                    runs it on a new thread, which opens a new PostgreSQL connection;
  [Nagle on]        chalice local's own server as it comes: it sends headers and
                    body in two writes, and with Nagle on the body waits for the
                    client's delayed ACK; no deployed gateway does that (for comparison);
  [in process]      the use case called directly with real ports, no HTTP, timed
                    at each `checkpoint`, its DB statements and S3 calls tallied:
                    where the orchestration time goes.
Rounds alternate library / each way, so a noisy neighbour weighs on all; the
median ratio of the rounds is reported. The HTTP edge's own database work (API
key, rate limit, access log, a new connection) is then timed on its own.
Not a test: it prints figures and asserts only that invoices were issued.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer

from bench.stack import local_stack
from chalicelib.adapters.postgres import app_connector
from devstack.api import NoDelayRequestHandler, local_api_server
from devstack.sample import sample_invoice
from devstack.stack import free_port

HOST = "127.0.0.1"
WRITES_PER_MINUTE = 1_000_000  # the limiter still counts every request; it never refuses
LIBRARY_STEPS = ("xml_built", "pdf_rendered", "embedded", "checked")


# -- the HTTP API ------------------------------------------------------------------------

class _QuietHandler(NoDelayRequestHandler):
    """devstack's handler without chalice local's stderr line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietNagleHandler(ChaliceRequestHandler):
    """chalice local's own handler (Nagle on), without its stderr line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Any) -> tuple[LocalDevServer, LocalDevServer]:
    """devstack's server (as `bin/run`) and chalice local's own, each in a daemon thread."""
    config = Config.create(chalice_stage="dev", app_name="einvoice", project_dir=str(ROOT))
    devstack = local_api_server(app, config, HOST, free_port(), handler=_QuietHandler)
    nagle = LocalDevServer(app, config, HOST, free_port(), handler_cls=_QuietNagleHandler)
    for server in (devstack, nagle):
        threading.Thread(target=server.server.serve_forever, daemon=True).start()
    return devstack, nagle


class Client:
    """POST /invoices, one request at a time; `keep_alive` reuses one connection."""

    def __init__(self, port: int, api_key: str, body: bytes, keep_alive: bool) -> None:
        self.port, self.api_key, self.body, self.keep_alive = port, api_key, body, keep_alive
        self._conn: http.client.HTTPConnection | None = None

    def issue(self) -> float:
        """Seconds from sending the request to the last byte of a 201 answer."""
        started = time.perf_counter()
        conn = self._conn or http.client.HTTPConnection(HOST, self.port, timeout=120)
        conn.request("POST", "/invoices", body=self.body, headers={
            "Authorization": f"Bearer {self.api_key}",
            "Idempotency-Key": f"bench-{uuid.uuid4().hex}",
            "Content-Type": "application/json"})
        answer = conn.getresponse()
        payload = answer.read()
        elapsed = time.perf_counter() - started
        if self.keep_alive:
            self._conn = conn
        else:
            conn.close()
        if answer.status != 201:
            raise RuntimeError(f"POST /invoices: {answer.status} {payload[:500]!r}")
        if "objects" not in json.loads(payload)["archive"]:
            raise RuntimeError(f"POST /invoices: issued but not archived: {payload[:500]!r}")
        return elapsed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the library work --------------------------------------------------------------------

@dataclass(frozen=True)
class Library:
    """The same invoice's documents, built and checked in process."""

    documents: Any
    draft: Any
    totals: Any

    def work(self) -> float:
        started = time.perf_counter()
        created = datetime.now(UTC)
        xml = self.documents.xml(self.draft, "F-000001", self.totals)
        visual = self.documents.pdf(self.draft, "F-000001", self.totals, created)
        self.documents.factur_x(visual, xml, self.draft, "F-000001", created)
        problems = self.documents.problems(xml)
        elapsed = time.perf_counter() - started
        if problems:
            raise RuntimeError(f"the benchmark invoice does not pass its checks: {problems}")
        return elapsed


# -- instrumented ports for the breakdown ------------------------------------------------

@dataclass
class Tally:
    """Round trips and their seconds, by kind ("db" and "s3:<operation>")."""

    calls: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.calls[kind] += 1
            self.seconds[kind] += time.perf_counter() - started

    def totals(self, prefix: str) -> tuple[int, float]:
        return (sum(n for k, n in self.calls.items() if k.startswith(prefix)),
                sum(s for k, s in self.seconds.items() if k.startswith(prefix)))


class TimedConnection:
    """A pg8000 connection whose every statement (one round trip) is tallied."""

    def __init__(self, conn: Any, tally: Tally) -> None:
        self._conn, self._tally = conn, tally

    def run(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        with self._tally.timed(f"db:{' '.join(sql.split())[:48]}"):
            return self._conn.run(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class TimedS3:
    """A boto3 S3 client whose every call is tallied by operation."""

    def __init__(self, s3: Any, tally: Tally) -> None:
        self._s3, self._tally = s3, tally

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._s3, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._tally.timed(f"s3:{name}"):
                return method(*args, **kwargs)

        return call


# What the step ending at each checkpoint does (since the previous one), in the
# use case's order; a checkpoint not listed here is shown by its name.
STEPS = [
    ("validated", "idempotency lookup (DB), validate the draft"),
    ("archive_checked", "archive check before the number (S3)"),
    ("numbered", "open the transaction, next number (DB)"),
    ("xml_built", "library: CII XML"),
    ("pdf_rendered", "library: visual PDF/A-3"),
    ("embedded", "library: factur-x embedding"),
    ("checked", "library: XSD + schematron (the rest of it: it runs while the PDF renders)"),
    ("ledger_appended", "ledger invoice.issued (DB)"),
    ("stored", "invoice row + staged PDF and XML (DB)"),
    ("committed", "commit (DB)"),
    ("archived_pdf", "lock the invoice row (DB); archive PDF and XML at once (S3)"),
    ("archived_xml", "(the XML: with the PDF)"),
    ("recorded", "receipt + ledger invoice.archived (DB)"),
    ("done", "commit (DB)"),
]


@dataclass
class StepTimes:
    """Per step: seconds, and (round trips, seconds) to the database and to S3,
    one entry per invoice; per kind of round trip: calls and seconds in all."""

    seconds: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    db: defaultdict[str, list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    s3: defaultdict[str, list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    kinds: Tally = field(default_factory=Tally)
    invoices: int = 0

    def total(self) -> float:
        return sum(statistics.median(found) for found in self.seconds.values())

    def library(self) -> float:
        return sum(statistics.median(found) for step, found in self.seconds.items()
                   if step in LIBRARY_STEPS)


class InProcess:
    """The use case in process with real ports (no HTTP), timed at each checkpoint;
    its database statements and S3 calls tallied."""

    def __init__(self, settings: Any, tenant: uuid.UUID, body: bytes,
                 connect: Callable[[], Any]) -> None:
        from chalicelib.adapters.archive import ObjectLockArchive
        from chalicelib.adapters.aws import s3_client
        from chalicelib.adapters.postgres import Database
        from chalicelib.ports import SystemClock
        from chalicelib.runtime import field_cipher, invoice_documents
        from chalicelib.usecases.invoicing import InvoicePorts

        self.tenant, self.body, self.tally, self.times = tenant, body, Tally(), StepTimes()
        tally = self.tally
        self.database = Database(lambda: TimedConnection(connect(), tally), cipher=field_cipher)
        archive = ObjectLockArchive(TimedS3(s3_client(settings), tally), settings.archive_bucket)
        self.ports = InvoicePorts(self.database.unit_of_work, invoice_documents(), archive,
                                  SystemClock())

    def _now(self) -> list[float]:
        return [time.perf_counter(), *self.tally.totals("db:"), *self.tally.totals("s3:")]

    def issue(self, keep: bool = True) -> float:
        """One invoice; its seconds. `keep`: add its figures to `times`."""
        from chalicelib.domain.inputs import read_json
        from chalicelib.usecases.issue_invoice import issue_invoice

        times, tally = self.times, self.tally
        before = Tally(Counter(tally.calls), defaultdict(float, tally.seconds))
        mark = self._now()
        started = mark[0]

        def checkpoint(step: str) -> None:
            at = self._now()
            if keep:
                times.seconds[step].append(at[0] - mark[0])
                times.db[step].append((int(at[1] - mark[1]), at[2] - mark[2]))
                times.s3[step].append((int(at[3] - mark[3]), at[4] - mark[4]))
            mark[:] = at

        outcome = issue_invoice(self.tenant, f"bench-inproc-{uuid.uuid4().hex}",
                                read_json(self.body), self.ports, checkpoint)
        checkpoint("done")
        if not (outcome.created and outcome.archived):
            raise RuntimeError("in-process issue did not archive")
        if keep:
            times.invoices += 1
            for kind, n in tally.calls.items():
                times.kinds.calls[kind] += n - before.calls[kind]
                times.kinds.seconds[kind] += tally.seconds[kind] - before.seconds[kind]
        return mark[0] - started

    def close(self) -> None:
        self.database.close()


def edge_costs(settings: Any, tenant: uuid.UUID, api_key: str, count: int) -> dict[str, float]:
    """Median seconds of the HTTP edge's own database work, each in its own
    transaction as `secured` and the access-log middleware run them."""
    from chalicelib.adapters.postgres import (
        Database,
        PostgresAccessLog,
        PostgresApiKeyDirectory,
        PostgresRateLimiter,
        app_connector,
    )
    from chalicelib.ports import AccessRecord
    from chalicelib.usecases.api_keys import secret_hash

    connect = app_connector(settings)
    database = Database(connect)
    keys, limiter, log = (PostgresApiKeyDirectory(database), PostgresRateLimiter(database),
                          PostgresAccessLog(database))
    digest = secret_hash(api_key)
    entry = AccessRecord(tenant_id=tenant, principal=f"api_key:{uuid.uuid4()}", method="POST",
                         route="/invoices", status=201, latency_ms=1, request_id="bench",
                         ip_prefix="127.0.0.0/24")
    work: dict[str, Callable[[], object]] = {
        "API key lookup (last use stamped once a minute)": lambda: keys.find(digest),
        "rate-limit hit (INSERT .. ON CONFLICT)": lambda: limiter.hit(
            "writes-bench|edge", timedelta(minutes=1), WRITES_PER_MINUTE),
        "access-log row (INSERT)": lambda: log.record(entry),
        "new PostgreSQL connection (SCRAM) + close": lambda: connect().close(),
    }
    found: dict[str, list[float]] = defaultdict(list)
    try:
        keys.find(digest)  # opens this thread's connection
        for _ in range(count):
            for name, run in work.items():
                started = time.perf_counter()
                run()
                found[name].append(time.perf_counter() - started)
    finally:
        database.close()
    return {name: statistics.median(values) for name, values in found.items()}


# -- figures -----------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of all at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_breakdown(times: StepTimes, edge: dict[str, float], e2e: dict[str, float],
                    library_p50: float) -> None:
    """The steps of [in process], the costliest round trips, the HTTP edge; e2e: p50s;
    library_p50: the baseline's median, for the part of it the overlap hides."""
    print(f"\nWhere the time goes, [in process] step by step (medians of {times.invoices} "
          "invoices; DB n = statements, each one round trip; S3 n = calls):")
    labels = dict(STEPS)
    for step in times.seconds:  # in the order the use case reached them
        label = labels.get(step, f"until checkpoint {step!r}")
        where = []
        for name, found in (("DB", times.db[step]), ("S3", times.s3[step])):
            n, seconds = statistics.median(c for c, _ in found), statistics.median(
                s for _, s in found)
            if n:
                where.append(f"{name} {n:g} x {ms(seconds)}")
        print(f"  {label:<46} {ms(statistics.median(times.seconds[step])):>9}  "
              f"{'; '.join(where)}".rstrip())
    total, library = times.total(), times.library()
    print(f"  {'use case (sum of the step medians)':<46} {ms(total):>9}  = library "
          f"{ms(library)} + orchestration {ms(total - library)}")
    hidden = max(0.0, library_p50 - library)  # an estimate: medians of different runs
    print(f"  the library steps show {ms(library)} of the library work's {ms(library_p50)}: "
          f"about {ms(hidden)} run while the PDF renders (the checks, in the schematron "
          f"worker).\n  The use case is {total / library_p50:.2f}x the library work; without "
          f"that overlap it would be about {(total + hidden) / library_p50:.2f}x. Orchestration "
          f"on its own is {(total - library) / library_p50:.2f}x the library work either way.")
    per = max(times.invoices, 1)
    ranked = sorted(times.kinds.calls, key=lambda k: -times.kinds.seconds[k])
    print("  costliest round trips per invoice (count x mean):")
    for kind in ranked[:8]:
        n = times.kinds.calls[kind]
        print(f"    {times.kinds.seconds[kind] / per * 1000:6.1f} ms  {n / per:g} x "
              f"{ms(times.kinds.seconds[kind] / n)}  {kind}")
    db_n, db_s = times.kinds.totals("db:")
    s3_n, s3_s = times.kinds.totals("s3:")
    print(f"  in all per invoice: DB {db_n / per:g} statements {ms(db_s / per)}, S3 "
          f"{s3_n / per:g} calls {ms(s3_s / per)}")
    print("HTTP edge's own database work, each its own transaction (medians, in process):")
    for name, seconds in edge.items():
        print(f"  {name:<46} {ms(seconds):>9}")
    edge_db = sum(s for name, s in edge.items() if not name.startswith("new"))
    devstack, nagle, direct = e2e["devstack"], e2e["Nagle on"], e2e["in process"]
    print(f"End to end p50: [devstack] {ms(devstack)} - [in process] {ms(direct)} = "
          f"{ms(devstack - direct)}: the HTTP edge (of which edge DB {ms(edge_db)}; the rest: "
          "chalice local, request/response JSON, auth code); [Nagle on] - [devstack] = "
          f"{ms(nagle - devstack)}: chalice local's own server waiting for delayed ACKs")


# -- main --------------------------------------------------------------------------------

def create_key() -> tuple[uuid.UUID, str]:
    """A tenant, its owner and an API key that may issue invoices (as `demo-key`)."""
    import secrets

    from chalicelib.runtime import clock, database, passwords
    from chalicelib.usecases.accounts import sign_up
    from chalicelib.usecases.api_keys import create_api_key

    owner = sign_up("Bench SARL", f"bench.{uuid.uuid4().hex[:8]}@example.fr",
                    secrets.token_urlsafe(24), database().unit_of_work, passwords())
    _key, secret = create_api_key(owner, "bench", ["invoices:read", "invoices:write"], 30,
                                  database().unit_of_work, clock())
    return owner.tenant_id, secret


WAYS = {  # name: (server, keep-alive, what it is)
    "devstack": (0, True, "devstack's server, one keep-alive connection: one server thread, "
                          "its DB connection reused"),
    "new connection": (0, False, "devstack's server, a new HTTP connection per request: a new "
                                 "server thread, which opens a new DB connection"),
    "Nagle on": (1, True, "chalice local's own server (Nagle on), one keep-alive connection"),
}
IN_PROCESS = {  # name: what it is
    "in process": "the use case called directly with real ports, no HTTP",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 3)")
    parser.add_argument("--per-round", type=int, default=None,
                        help="invoices per round and way (default 20, quick 2)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="fsync off (the default is a durable cluster)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    per_round = args.per_round or (2 if args.quick else 20)

    with local_stack(durable=not args.no_fsync) as (stack, _):
        saved = dict(os.environ)
        direct: dict[str, InProcess] = {}
        try:
            # As devstack's `run`: the stack's environment before the app is imported.
            os.environ.update(stack.env())
            os.environ["EINVOICE_WRITES_PER_USER_PER_MINUTE"] = str(WRITES_PER_MINUTE)
            settings = stack.settings()
            app_module = importlib.import_module("app")
            servers = serve(app_module.app)
            tenant, api_key = create_key()
            body = sample_invoice()
            clients = {way: Client(servers[i].port, api_key, body, keep_alive)
                       for way, (i, keep_alive, _) in WAYS.items()}
            print(f"PostgreSQL 15 {'fsync off' if args.no_fsync else 'durable (fsync on)'}, moto "
                  f"S3 server, chalice local HTTP API in this process, {os.cpu_count()} CPUs; "
                  f"sequential client (one request at a time, no concurrency); {rounds} rounds x "
                  f"{per_round} invoices each way, interleaved; per-key write limit raised to "
                  f"{WRITES_PER_MINUTE:,}/min (still counted)")

            cold = clients["devstack"].issue()
            print(f"cold first request: {ms(cold)} (imports of factur-x/ReportLab/lxml, schematron "
                  "worker start, start-up archive check, first DB connection; not in the figures)")

            from chalicelib.adapters.documents import FacturXDocuments
            from chalicelib.domain.invoice import compute_totals, parse_invoice_json

            draft = parse_invoice_json(body)  # our orchestration: outside the baseline
            library = Library(FacturXDocuments(), draft, compute_totals(draft))
            direct = {"in process": InProcess(settings, tenant, body, app_connector(settings))}
            runs: dict[str, Callable[[], float]] = {
                **{way: client.issue for way, client in clients.items()},
                **{way: runner.issue for way, runner in direct.items()}}
            for _ in range(1 if args.quick else 2):  # warm-up, not measured
                library.work()
                for client in clients.values():
                    client.issue()
                for runner in direct.values():
                    runner.issue(keep=False)

            lib_all: list[float] = []
            latencies: dict[str, list[float]] = {way: [] for way in runs}
            ratios: dict[str, list[float]] = {way: [] for way in runs}
            rates: dict[str, list[float]] = {way: [] for way in runs}
            for _ in range(rounds):
                lib = [library.work() for _ in range(per_round)]
                lib_all += lib
                for way, run in runs.items():
                    started = time.perf_counter()
                    times = [run() for _ in range(per_round)]
                    rates[way].append(per_round / (time.perf_counter() - started))
                    latencies[way] += times
                    ratios[way].append(sum(times) / sum(lib))

            print(f"library work (XML + PDF + Factur-X + XSD + schematron, in process, no DB/S3): "
                  f"{1 / statistics.mean(lib_all):.1f} invoices/s, p50 "
                  f"{ms(statistics.median(lib_all))}, p95 {ms(percentile(lib_all, 0.95))}")
            for way, what in [*((w, f"POST /invoices, {d}") for w, (_, _, d) in WAYS.items()),
                              *IN_PROCESS.items()]:
                print(f"end to end [{way}] {what}: {statistics.median(rates[way]):.1f} invoices/s, "
                      f"p50 {ms(statistics.median(latencies[way]))}, "
                      f"p95 {ms(percentile(latencies[way], 0.95))}")
            for way in runs:
                r = ratios[way]
                label = "ratio end-to-end / library work:" if way == "devstack" else \
                    f"  ratio [{way}]:"
                print(f"{label} {statistics.median(r):.2f}x (median of {rounds} rounds; range "
                      f"{min(r):.2f}-{max(r):.2f}; target <= 1.50x)")

            edge = edge_costs(settings, tenant, api_key, max(per_round, 5))
            print_breakdown(direct["in process"].times, edge,
                            {way: statistics.median(latencies[way]) for way in runs},
                            statistics.median(lib_all))
            for client in clients.values():
                client.close()
            for server in servers:
                server.shutdown()
        finally:
            from chalicelib import runtime

            for runner in direct.values():
                runner.close()
            if runtime.database.cache_info().currsize:
                runtime.database().close()
            os.environ.clear()
            os.environ.update(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
