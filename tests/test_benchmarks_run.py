"""Benchmarks are not timed tests: these only check that `bench/ledger.py`,
`bench/issue_invoice.py` and `bench/closing.py` in quick mode still run end to
end and print their ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ledger_benchmark_quick_mode_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "ledger.py"), "--quick",
                           "--no-fsync"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"ratio \d+\.\d\dx", done.stdout)) == 3, done.stdout
    assert re.search(r"verify 3000 entries .*: [\d,]+ entries/min", done.stdout)


def test_issue_invoice_benchmark_quick_mode_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "issue_invoice.py"), "--quick",
                           "--no-fsync"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^ratio end-to-end / library work: \d+\.\d\dx \(median of 3 rounds",
                     done.stdout, re.MULTILINE), done.stdout
    assert len(re.findall(r"\bratio\b.*: \d+\.\d\dx", done.stdout)) == 4, done.stdout
    assert re.search(r"end to end \[devstack\] POST /invoices.*: [\d.]+ invoices/s, "
                     r"p50 [\d.]+ ms, p95 [\d.]+ ms", done.stdout), done.stdout
    assert "use case (sum of the step medians)" in done.stdout, done.stdout


def test_closing_benchmark_quick_mode_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "closing.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\(s\) seal a month of 3,100 entries: .* ratio \(days \+ month\) / "
                     r"SELECT [\d.]+x",
                     done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^\(p\) inclusion proof at 20,000 leaves .* p50 [\d.]+ ms, .*ratio "
                     r"[\d.]+x", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^\(e\) export the audit bundle: 3,\d{3} entries .* [\d,]+ entries/min.*"
                     r"ratio [\d.]+x .* peak traced memory [\d.]+ MiB", done.stdout,
                     re.MULTILINE), done.stdout
    assert re.search(r"^\(o\) online verification \(GET /ledger/verify\) of 3,\d{3} entries: "
                     r".* [\d,]+ entries/min, Python heap peak [\d.]+ MiB; .*ratio [\d.]+x",
                     done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^\(v\) verify the audit bundle offline: .* entries/min, Python heap "
                     r"peak [\d.]+ MiB; .*ratio [\d.]+x", done.stdout, re.MULTILINE), done.stdout
