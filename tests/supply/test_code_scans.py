"""Bandit over the shipped and build code finds no HIGH issue, and does find a
planted one; every nosec is justified; the secrets scan of the tracked tree
matches the audited baseline, each file with a reason, and catches a planted
AWS-looking key that the baseline does not hold."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest

from deploy.code_scans import (
    BASELINE,
    REASONS,
    run_bandit,
    scan_secrets,
    secret_problems,
    unjustified_nosec,
)
from deploy.supply_chain import SupplyChainError


def test_bandit_finds_nothing_high_in_our_code() -> None:
    report = run_bandit()
    assert report.errors == []
    assert report.high == [], report.text()
    scanned = {f["filename"].split("/")[0] for f in report.findings}
    assert scanned <= {"app.py", "chalicelib", "functions", "deploy", "devstack"}
    assert "chalicelib" in scanned  # it did read the code (B608 MEDIUM are reported)


def test_bandit_finds_a_planted_high_issue(tmp_path: Path) -> None:
    (tmp_path / "planted.py").write_text(
        "import subprocess\n\n\ndef run(user_input: str) -> None:\n"
        "    subprocess.call('ls ' + user_input, shell=True)\n", encoding="utf-8")
    report = run_bandit(["planted.py"], root=tmp_path)
    assert [f["test_id"] for f in report.high] == ["B602"]


def test_every_nosec_names_its_test_and_says_why(tmp_path: Path) -> None:
    assert unjustified_nosec() == []
    (tmp_path / "code.py").write_text(
        "a = eval('1')  # nosec\n"
        "b = eval('2')  # nosec B307: a literal, evaluated at import\n"
        "c = '# nosec inside a string is not a comment'\n", encoding="utf-8")
    assert unjustified_nosec(["code.py"], root=tmp_path) == ["code.py:1: # nosec"]


def test_the_tracked_tree_matches_the_audited_baseline() -> None:
    assert secret_problems() == []
    audited = json.loads(BASELINE.read_text(encoding="utf-8"))["results"]
    assert "tests/unit/test_merkle.py" in audited  # fixtures are listed, not skipped
    assert all(r["is_secret"] is False for rs in audited.values() for r in rs)


def _planted_key() -> str:
    """An AWS-shaped access key id, made at run time so no such literal is tracked."""
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))


def test_the_scan_catches_a_planted_aws_key(tmp_path: Path) -> None:
    (tmp_path / "settings.env").write_text(f"EINVOICE_S3_ACCESS_KEY_ID={_planted_key()}\n",
                                           encoding="utf-8")
    (tmp_path / "clean.txt").write_text("nothing to see\n", encoding="utf-8")
    report = scan_secrets(["settings.env", "clean.txt"], root=tmp_path)
    assert {name: [r["type"] for r in rs] for name, rs in report["results"].items()} == {
        "settings.env": ["AWS Access Key"]}
    problems = secret_problems(["settings.env", "clean.txt"], root=tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("settings.env:1: AWS Access Key not in .secrets.baseline")
    with pytest.raises(SupplyChainError, match="relative to"):
        scan_secrets([str(tmp_path / "settings.env")])


def test_a_baseline_file_without_a_reason_is_refused(tmp_path: Path) -> None:
    text = REASONS.read_text(encoding="utf-8")
    start = text.index('[[file]]\npath = "tests/unit/test_merkle.py"')
    reasons = tmp_path / "reasons.toml"
    reasons.write_text(text[:start] + text[text.index("[[file]]", start + 1):],
                       encoding="utf-8")
    problems = secret_problems([], reasons=reasons)  # the baseline alone, no new scan
    assert problems == [".secrets.baseline: tests/unit/test_merkle.py has no reason in "
                        "reasons.toml"]


def test_an_inline_allowlist_pragma_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hidden.py").write_text(
        f"KEY = '{_planted_key()}'  # pragma: allowlist {'secret'}\n", encoding="utf-8")
    problems = secret_problems(["hidden.py"], root=tmp_path)
    assert any(p.startswith("hidden.py: an inline") for p in problems), problems
