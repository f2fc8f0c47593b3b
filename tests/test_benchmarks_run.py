"""Benchmarks are not timed tests: this only checks `bench/ledger.py --quick`
still runs end to end and prints its ratios."""

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
