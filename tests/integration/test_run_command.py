"""The README's run command, as a user runs it: it starts its own stack, serves
the API, runs the queue trigger, and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devstack.postgres import PostgresServer
from devstack.sample import sample_invoice
from devstack.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def issue_and_check_invoice(api: int, key: str, stack_env: dict[str, str]) -> None:
    """What the banner's curl lines do, then what a sceptical user checks: the
    PDF's embedded XML passes XSD and schematron, the archive refuses to delete."""
    import io

    from facturx import get_xml_from_pdf

    from chalicelib.adapters.aws import s3_client
    from chalicelib.config import Settings
    from chalicelib.documents.schematron import invoice_failures

    auth = {"Authorization": f"Bearer {key}"}
    issue = urllib.request.Request(
        f"http://127.0.0.1:{api}/invoices", method="POST",
        data=sample_invoice(),
        headers={**auth, "Content-Type": "application/json", "Idempotency-Key": "demo-1"})
    with urllib.request.urlopen(issue, timeout=60) as resp:
        assert resp.status == 201
        invoice = json.loads(resp.read())
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{api}/invoices/{invoice['id']}/pdf",
            headers={**auth, "Accept": "application/pdf"}),
            timeout=60) as resp:
        assert resp.headers["Content-Type"] == "application/pdf"
        pdf = resp.read()
    _, xml = get_xml_from_pdf(io.BytesIO(pdf), check_xsd=True)
    assert [f for f in invoice_failures(xml) if f.fatal] == []  # EN 16931 and BR-FR

    settings = Settings.from_environment(stack_env)
    s3 = s3_client(settings)
    stored = invoice["archive"]["objects"][0]
    try:
        s3.delete_object(Bucket=settings.archive_bucket, Key=stored["key"],
                         VersionId=stored["version_id"])
    except s3.exceptions.ClientError as refused:
        assert refused.response["Error"]["Code"] == "AccessDenied"
    else:
        raise AssertionError("the archive deleted a locked invoice")


def test_run_serves_dispatches_and_stops_on_ctrl_c() -> None:
    stack_dir = Path(tempfile.mkdtemp(prefix="einvoice-run-"))
    api, pg, s3 = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EINVOICE_")}
    env.update(EINVOICE_STACK_DIR=str(stack_dir), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "run"), "--api-port", str(api), "--pg-port", str(pg),
         "--s3-port", str(s3)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # As when a shell without job control starts it in the background:
        # SIGINT arrives ignored, and Ctrl-C must still stop everything.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    output: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert f"curl -s http://127.0.0.1:{api}/health" in text, text

        with urllib.request.urlopen(f"http://127.0.0.1:{api}/health", timeout=10) as resp:
            assert json.loads(resp.read()) == {"status": "ok", "database": "up",
                                               "object_store": "up"}

        assert f"{api}/signup" in text
        signup = urllib.request.Request(
            f"http://127.0.0.1:{api}/signup", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"email": "me@example.fr"}).encode())
        with urllib.request.urlopen(signup, timeout=30) as resp:
            assert resp.status == 202
        # The confirmation link lands in the outbox folder the banner names.
        assert re.search(r"schedules [a-z_, ]*retention_purge[a-z_, ]* at start", text), text
        folder = re.search(r"lands in (\S+)/ as \.eml", text)
        assert folder, text
        mail = next(Path(folder.group(1)).glob("*.eml")).read_text()
        link = re.search(r"#token=([A-Za-z0-9_-]+)", mail)
        assert link, mail
        token = link.group(1)
        assert f"http://127.0.0.1:{api}/signup/confirm#token=" in mail
        confirm = urllib.request.Request(
            f"http://127.0.0.1:{api}/signup/confirm", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"token": token, "tenant_name": "Demo SARL",
                             "password": "correct horse battery"}).encode())
        with urllib.request.urlopen(confirm, timeout=30) as resp:
            assert resp.status == 201
            assert any("HttpOnly" in c for c in resp.headers.get_all("Set-Cookie"))

        def cli(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "devstack", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        tenant = cli("create-tenant", "Demo SARL")
        cli("append", tenant, "note.added", '{"about": "F-1", "text": "Reminder sent"}')
        for _ in range(50):  # the dispatcher picks it up from the queue
            report = json.loads(cli("verify", tenant))
            if report["entries_checked"] == 1:
                break
            time.sleep(0.2)
        assert report["ok"] and report["entries_checked"] == 1 and report["witness"]["ok"]

        # The banner's invoice lines: a demo key, the sample invoice, its PDF.
        assert "devstack demo-key" in text and "/invoice.json" in text
        issue_and_check_invoice(api, cli("demo-key"),
                                json.loads((stack_dir / "env.json").read_text()))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            pg_base = (stack_dir / "postgres").resolve()
            PostgresServer(pg_base, pg, "").stop()  # no-op when `run` stopped it itself
            shutil.rmtree(pg_base, ignore_errors=True)
            shutil.rmtree(stack_dir, ignore_errors=True)
    assert proc.returncode == 0
    for port in (api, pg, s3):
        assert not listening(port), f"port {port} still open after Ctrl-C"
