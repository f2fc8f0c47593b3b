"""The auditor script in docs/ledger.md (standard library only) verifies a real chain
exported from PostgreSQL, and names the entry when one is tampered with: the
documented byte layout is the one the code and the engine use."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

from chalicelib.adapters.postgres import Database
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from tests.fakes import FrozenClock

LEDGER_DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def auditor_script() -> str:
    text = LEDGER_DOC.read_text()
    match = re.search(r"<!-- auditor-script -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/ledger.md lost its auditor script"
    return match.group(1)


def run_auditor(lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", auditor_script()], input="\n".join(lines),
                          capture_output=True, text=True, timeout=30)


def test_readme_script_verifies_and_locates_tampering(database: Database,
                                                       tenant: uuid.UUID) -> None:
    for i in range(5):
        append_ledger(AppendRequest(tenant_id=tenant, kind="note.added",
                                    payload={"number": f"F-{i}", "total": "10.00",
                                             "buyer": "Société Générale d'Éclairage"}),
                      database.unit_of_work, FrozenClock())
    with database.snapshot(tenant) as uow:
        exported = [json.dumps(e.as_dict()) for e in uow.ledger.entries()]
        head = uow.ledger.head()
    assert head is not None

    ok = run_auditor(exported)
    assert ok.returncode == 0 and ok.stdout.strip() == f"OK: 5 entries, head {head.hash.hex()}"

    tampered = list(exported)
    tampered[2] = tampered[2].replace("10.00", "11.00")
    bad = run_auditor(tampered)
    assert bad.returncode == 1 and "entry 3: hash does not match" in bad.stderr

    missing = exported[:1] + exported[2:]
    assert "entry 2: missing" in run_auditor(missing).stderr
