"""Local commands.

    python -m devstack run [--api-port 8000]   the whole system (what bin/run does)
    python -m devstack create-tenant NAME      prints the new tenant id
    python -m devstack append TENANT KIND JSON sends a message to the ledger queue
    python -m devstack verify TENANT           verifies the tenant's chain
    python -m devstack export-audit-bundle TENANT OUT [--zip]
                                               the tenant's audit bundle (check it with
                                               python -m chalicelib.audit verify-bundle OUT)
    python -m devstack demo-key                a demo tenant and an API key that may
                                               issue and read invoices (prints the key)

All but `run` talk to a running `run` (they read .stack/env.json).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(os.environ.get("EINVOICE_STACK_DIR", ROOT / ".stack"))
ENV_FILE = STACK_DIR / "env.json"


def _shift_clock(hours: float) -> date:
    """The app's clock, `hours` ahead when asked (a demo of sealing without waiting
    for midnight): this process's runtime.clock only, as the tests freeze it.
    Returns the app's today (Europe/Paris), for the sample invoice's dates."""
    from chalicelib import runtime
    from chalicelib.ports import SystemClock

    offset = timedelta(hours=hours)

    class ShiftedClock:
        def now(self) -> datetime:
            return SystemClock().now() + offset

    if hours:
        runtime.clock = ShiftedClock  # type: ignore[assignment]
        print(f"clock: {hours:g} hours ahead (local demo only)", flush=True)
    return (SystemClock().now() + offset).astimezone(ZoneInfo("Europe/Paris")).date()


def _run(args: argparse.Namespace) -> int:
    from chalice.config import Config

    from devstack.api import local_api_server
    from devstack.dispatcher import QueueDispatcher, ScheduleRunner
    from devstack.sample import sample_invoice
    from devstack.stack import LocalStack, Secrets

    STACK_DIR.mkdir(exist_ok=True)
    stack = LocalStack(STACK_DIR, args.pg_port, args.s3_port,
                       Secrets.load_or_create(STACK_DIR / "secrets.json"), durable=True)
    print(f"starting PostgreSQL 15 on 127.0.0.1:{args.pg_port} and moto (S3, SQS) "
          f"on 127.0.0.1:{args.s3_port} ...", flush=True)
    stack.start()
    stop = threading.Event()
    # Local stand-ins of an OpenTimestamps calendar and an RFC 3161 TSA (real
    # protocols, test keys, no Bitcoin and no legal weight) so closings get anchored.
    from devstack.anchor_standins import CalendarStandIn, TsaStandIn

    calendar, tsa = CalendarStandIn(), TsaStandIn()
    try:
        calendar.start()
        tsa.start()
        env = stack.env()
        env.update(EINVOICE_OTS_CALENDARS=calendar.url, EINVOICE_TSA_URL=tsa.url,
                   EINVOICE_TSA_CERTIFICATE_FILE=str(tsa.write_root(STACK_DIR / "tsa-root.pem")))
        os.environ.update(env)
        os.environ.setdefault("EINVOICE_SIGNUP_CONFIRM_URL",
                              f"http://127.0.0.1:{args.api_port}/signup/confirm")
        ENV_FILE.touch(mode=0o600)
        ENV_FILE.write_text(json.dumps(env))
        sys.path.insert(0, str(ROOT))
        sample = STACK_DIR / "invoice.json"
        sample.write_bytes(sample_invoice(_shift_clock(args.clock_offset_hours)))
        app_module = importlib.import_module("app")
        server = local_api_server(
            app_module.app, Config.create(chalice_stage="dev", app_name="einvoice",
                                          project_dir=str(ROOT)),
            "127.0.0.1", args.api_port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        dispatcher = QueueDispatcher(app_module, stack.settings())
        threading.Thread(target=dispatcher.run, args=(stop,), daemon=True).start()
        schedules = ScheduleRunner(app_module, stack.settings(), args.schedule_seconds)
        threading.Thread(target=schedules.run, args=(stop,), daemon=True).start()
        # Explicit handlers: a process started in the background by a shell
        # without job control inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler at all.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        api = f"http://127.0.0.1:{args.api_port}"
        print(f"""
API:       {api}   try:  curl -s {api}/health
Triggers:  polling SQS queue(s) {', '.join(dispatcher.queues)} (moto) with the same handlers;
           schedules {', '.join(schedules.names)} at start, then every {args.schedule_seconds:g} s
Anchors:   closings go to local stand-ins of an OpenTimestamps calendar ({calendar.url}) and
           an RFC 3161 TSA ({tsa.url}): real protocols, test keys, no Bitcoin, no legal weight
Sign up: mail is not sent from here, it lands in {stack.mail_outbox}/ as .eml files.
  curl -s -H 'Content-Type: application/json' {api}/signup -d '{{"email": "me@example.fr"}}'
  token=$(grep -ho 'token=[A-Za-z0-9_-]*' {stack.mail_outbox}/*.eml | tail -1 | cut -d= -f2)
  curl -si -c jar.txt -H 'Content-Type: application/json' {api}/signup/confirm \\
    -d "{{\\"token\\": \\"$token\\", \\"tenant_name\\": \\"Demo SARL\\", \\
         \\"password\\": \\"correct horse battery\\"}}"
  (session cookie in jar.txt; an owner can only log out until TOTP is enrolled)
Issue a real invoice (in another shell): a demo tenant, an API key, then the invoice
  key=$(.venv/bin/python -m devstack demo-key)
  curl -s -H "Authorization: Bearer $key" -H 'Idempotency-Key: demo-1' \\
    -H 'Content-Type: application/json' {api}/invoices -d @{sample}
  curl -s -H "Authorization: Bearer $key" -o facture.pdf {api}/invoices/ID/pdf
  (ID: the "id" of the answer; the same request again returns the same invoice)
Try the ledger (in another shell):
  t=$(.venv/bin/python -m devstack create-tenant "Demo SARL")
  .venv/bin/python -m devstack append $t note.added '{{"about": "F-1", "text": "Reminder sent"}}'
  .venv/bin/python -m devstack verify $t
Ctrl-C stops everything.""", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        print("\nstopping ...", flush=True)
        stop.set()
        ENV_FILE.unlink(missing_ok=True)
        calendar.stop()
        tsa.stop()
        stack.stop()
    return 0


def _load_env() -> None:
    if not ENV_FILE.exists():
        raise SystemExit("no running stack: start it with bin/run")
    os.environ.update(json.loads(ENV_FILE.read_text()))


def _create_tenant(args: argparse.Namespace) -> int:
    _load_env()
    from chalicelib.runtime import database
    from chalicelib.usecases.create_tenant import create_tenant

    print(create_tenant(args.name, database().unit_of_work))
    return 0


def _append(args: argparse.Namespace) -> int:
    _load_env()
    from chalicelib.adapters.aws import sqs_client
    from chalicelib.config import settings

    sqs = sqs_client(settings())
    url = sqs.get_queue_url(QueueName=settings().ledger_queue)["QueueUrl"]
    body = {"tenant_id": args.tenant, "kind": args.kind, "payload": json.loads(args.payload)}
    message_id = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))["MessageId"]
    print(f"queued as message {message_id}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    _load_env()
    from chalicelib.runtime import database, invoice_archive, pinned_keys
    from chalicelib.usecases.verify_ledger import ledger_verdict, verify_ledger
    from chalicelib.usecases.witness import check_witness

    tenant, snapshot = uuid.UUID(args.tenant), database().snapshot
    result = verify_ledger(tenant, snapshot, pinned=pinned_keys())
    witness = check_witness(tenant, snapshot, invoice_archive(), pinned_keys())
    verdict = ledger_verdict(result, witness)
    print(json.dumps(verdict, indent=2))
    return 0 if verdict["ok"] else 1


def _export_audit_bundle(args: argparse.Namespace) -> int:
    _load_env()
    from chalicelib.audit.bundle import export_from_database
    from chalicelib.runtime import database, pinned_keys

    manifest = export_from_database(uuid.UUID(args.tenant), database(), Path(args.out),
                                    keys=pinned_keys(),
                                    zip=args.zip)
    print(f"{manifest['entries']} entries, {manifest['closings']} closings -> {args.out}")
    return 0


def _demo_key(args: argparse.Namespace) -> int:
    """A demo tenant, its owner (a random password, never shown: log-in is not
    the point here) and an API key with the invoice, ledger and closing scopes,
    for the curl lines (the key on stdout, the tenant on stderr)."""
    _load_env()
    import secrets

    from chalicelib.runtime import clock, database, passwords
    from chalicelib.usecases.accounts import sign_up
    from chalicelib.usecases.api_keys import create_api_key

    owner = sign_up(args.name, f"demo.{uuid.uuid4().hex[:8]}@example.fr",
                    secrets.token_urlsafe(24), database().unit_of_work, passwords())
    _key, secret = create_api_key(owner, "demo", ["invoices:read", "invoices:write",
                                                  "ledger:read", "closings:write"], 30,
                                  database().unit_of_work, clock())
    print(f"tenant {owner.tenant_id}", file=sys.stderr)  # for export-audit-bundle
    print(secret)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the stack, the API and the triggers")
    run.add_argument("--api-port", type=int, default=int(os.environ.get("EINVOICE_API_PORT", 8000)))
    run.add_argument("--pg-port", type=int, default=int(os.environ.get("EINVOICE_PG_PORT", 54329)))
    run.add_argument("--schedule-seconds", type=float,
                     default=float(os.environ.get("EINVOICE_SCHEDULE_SECONDS", 3600)),
                     help="how often the scheduled triggers run locally")
    run.add_argument("--s3-port", type=int, default=int(os.environ.get("EINVOICE_S3_PORT", 54330)))
    run.add_argument("--clock-offset-hours", type=float, default=0.0,
                     help="local demo only: the app's clock runs this far ahead (e.g. 24 to "
                          "seal today's invoices as a finished day); never a production setting")
    run.set_defaults(func=_run)
    demo = commands.add_parser("demo-key", help="a demo tenant and an invoice API key")
    demo.add_argument("--name", default="Demo SARL")
    demo.set_defaults(func=_demo_key)
    tenant = commands.add_parser("create-tenant")
    tenant.add_argument("name")
    tenant.set_defaults(func=_create_tenant)
    append = commands.add_parser("append")
    append.add_argument("tenant")
    append.add_argument("kind")
    append.add_argument("payload")
    append.set_defaults(func=_append)
    verify = commands.add_parser("verify")
    verify.add_argument("tenant")
    verify.set_defaults(func=_verify)
    bundle = commands.add_parser("export-audit-bundle")
    bundle.add_argument("tenant")
    bundle.add_argument("out")
    bundle.add_argument("--zip", action="store_true")
    bundle.set_defaults(func=_export_audit_bundle)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
