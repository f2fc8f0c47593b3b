"""The vulnerability audit: passes on our locks, fails on an old vulnerable pin,
reads OSV ranges as the schema says, ignores withdrawn advisories, fails closed on
unscored ones unless an unexpired exception accepts them, and states the snapshot's
date. Live mode runs pip-audit against a real HTTP service: the OSV stand-in on
127.0.0.1, or PyPI through a proxy that is not there (unreachable: exit 3)."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.audit import (
    EXIT_BLOCKED,
    EXIT_ERROR,
    EXIT_PASS,
    EXIT_UNREACHABLE,
    Advisory,
    AuditError,
    Snapshot,
    affects,
    audit_live,
    audit_snapshot,
    gate,
    load_exceptions,
    load_snapshot,
    score,
    snapshot_path,
)
from deploy.locks import ROOT
from tests.supply.osv_standin import osv_standin

FAKE_HASH = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return load_snapshot(snapshot_path())


def _lock(tmp_path: Path, *pins: str) -> Path:
    lock = tmp_path / "old.lock"
    lock.write_text("".join(f"{pin} \\\n    --hash={FAKE_HASH}\n    # via -r requirements.txt\n"
                            for pin in pins), encoding="utf-8")
    return lock


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy.audit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_our_locks_pass_and_the_report_states_the_snapshot_date() -> None:
    run = _run()
    assert run.returncode == EXIT_PASS, run.stdout + run.stderr
    assert "snapshot dated 2024-10-10" in run.stdout
    assert "advisories published after 2024-10-10 are not seen" in run.stdout
    assert re.search(r"^requirements\.lock: \d+ packages, 0 findings$", run.stdout, re.M)
    assert re.search(r"^requirements-dev\.lock: \d+ packages, 0 findings$", run.stdout, re.M)
    assert run.stdout.rstrip().endswith("Result: PASS")


def test_an_old_cryptography_pin_fails_on_its_high_advisory(tmp_path: Path) -> None:
    run = _run("--lock", str(_lock(tmp_path, "cryptography==41.0.0")))
    assert run.returncode == EXIT_BLOCKED, run.stdout
    blocking = [line for line in run.stdout.splitlines() if "BLOCKING" in line]
    assert any("PYSEC-2023-254" in line and "HIGH 7.5" in line and "fixed in 41.0.6" in line
               for line in blocking), run.stdout
    assert "snapshot dated 2024-10-10" in run.stdout


def test_a_medium_advisory_is_reported_but_does_not_block(tmp_path: Path,
                                                          snapshot: Snapshot) -> None:
    # urllib3 2.0.6: PYSEC-2023-212 is MEDIUM (CVSS 3.1 4.4); nothing else covers 2.0.6.
    report = audit_snapshot([_lock(tmp_path, "urllib3==2.0.6")], snapshot=snapshot)
    medium = [f for f in report.findings if f.advisory == "PYSEC-2023-212"]
    assert medium and medium[0].severity == "MEDIUM" and not medium[0].blocking
    assert all(f.severity in ("MEDIUM", "LOW") for f in report.findings), report.text()
    assert report.exit_code == EXIT_PASS


def test_osv_ranges_fixed_last_affected_and_version_lists() -> None:
    def advisory(*affected: dict[str, object]) -> Advisory:
        return Advisory("X-1", (), "", "UNSCORED", None, None, tuple(affected))

    package = {"name": "Some_Lib", "ecosystem": "PyPI"}
    fixed = advisory({"package": package, "ranges": [{"type": "ECOSYSTEM", "events": [
        {"introduced": "1.2"}, {"fixed": "1.4.1"}, {"introduced": "2.0"}, {"fixed": "2.0.3"}]}]})
    assert [affects(fixed, "some-lib", v) for v in ("1.1", "1.2", "1.4.0", "1.4.1", "1.9",
                                                    "2.0.0", "2.0.2", "2.0.3", "3")] == [
        False, True, True, False, False, True, True, False, False]
    last = advisory({"package": package, "ranges": [{"type": "ECOSYSTEM", "events": [
        {"introduced": "0"}, {"last_affected": "1.11.0"}]}]})
    assert [affects(last, "some-lib", v) for v in ("0.1", "1.11.0", "1.11.1")] == [
        True, True, False]
    listed = advisory({"package": package, "versions": ["3.1", "3.2.0"]})
    assert [affects(listed, "some-lib", v) for v in ("3.1.0", "3.2", "3.3")] == [
        True, True, False]
    assert affects(listed, "other-lib", "3.1") is False
    garbled = advisory({"package": package, "ranges": [{"type": "ECOSYSTEM", "events": [
        {"introduced": "not a version"}]}]})
    assert affects(garbled, "some-lib", "1.0") is None  # counted in, not skipped


def test_real_advisories_from_the_snapshot(snapshot: Snapshot) -> None:
    (py,) = [a for a in snapshot.by_package["py"] if a.id == "PYSEC-2022-42969"]
    assert affects(py, "py", "1.11.0") and not affects(py, "py", "1.11.1")
    (pillow,) = [a for a in snapshot.by_package["pillow"] if a.id == "PYSEC-2021-331"]
    assert affects(pillow, "pillow", "8.2.0") and not affects(pillow, "pillow", "8.3.0")
    assert pillow.severity == "UNSCORED"


def test_severity_comes_from_the_vector() -> None:
    v31 = {"severity": [{"type": "CVSS_V3",
                         "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}
    assert score(v31)[:2] == ("CRITICAL", 9.8)
    v4 = {"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/"
                        "VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}
    assert score(v4)[0] == "CRITICAL"
    assert score({"severity": [{"type": "CVSS_V3", "score": "garbage"}]})[0] == "UNSCORED"
    assert score({"database_specific": {"severity": "MODERATE"}})[0] == "MEDIUM"
    assert score({})[0] == "UNSCORED"


def test_withdrawn_advisories_are_ignored(tmp_path: Path) -> None:
    source = snapshot_path() / "vulns" / "redis" / "PYSEC-2023-73.yaml"
    text = source.read_text(encoding="utf-8")
    assert "withdrawn:" in text  # every redis version, but withdrawn
    lock = _lock(tmp_path, "redis==99.0")
    for keep_withdrawn in (True, False):
        folder = "kept" if keep_withdrawn else "unwithdrawn"
        copy = tmp_path / folder / "advisories-pypa-2024-10-10"
        (copy / "vulns" / "redis").mkdir(parents=True)
        body = text if keep_withdrawn else "\n".join(
            line for line in text.splitlines() if not line.startswith("withdrawn:"))
        (copy / "vulns" / "redis" / source.name).write_text(body, encoding="utf-8")
        report = audit_snapshot([lock], snapshot=load_snapshot(copy))
        assert [f.advisory for f in report.findings] == ([] if keep_withdrawn else
                                                         ["PYSEC-2023-73"])


def test_unscored_fails_closed_until_an_unexpired_exception_accepts_it(
        tmp_path: Path, snapshot: Snapshot) -> None:
    lock = _lock(tmp_path, "py==1.11.0")
    report = audit_snapshot([lock], snapshot=snapshot)
    (finding,) = report.findings
    assert finding.severity == "UNSCORED" and finding.blocking
    assert report.exit_code == EXIT_BLOCKED

    today = dt.date.today()
    exceptions = tmp_path / "exceptions.toml"
    for expires, blocks in ((today + dt.timedelta(days=30), False),
                            (today - dt.timedelta(days=1), True)):
        exceptions.write_text(
            f'[[accept]]\nid = "CVE-2022-42969"\npackage = "py"\n'
            f'reason = "svn info parsing is never reached"\nexpires = {expires.isoformat()}\n',
            encoding="utf-8")
        report = audit_snapshot([lock], snapshot=snapshot, exceptions=exceptions)
        (finding,) = report.findings
        assert finding.blocking is blocks
        assert report.exit_code == (EXIT_BLOCKED if blocks else EXIT_PASS)
        assert ("expired" in report.text()) is blocks
        assert ("svn info parsing is never reached" in report.text()) is not blocks


def test_an_exception_without_a_reason_or_too_far_ahead_is_refused(tmp_path: Path) -> None:
    exceptions = tmp_path / "exceptions.toml"
    exceptions.write_text('[[accept]]\nid = "X"\npackage = "py"\nexpires = 2099-01-01\n',
                          encoding="utf-8")
    with pytest.raises(AuditError, match="missing reason"):
        load_exceptions(exceptions)
    exceptions.write_text('[[accept]]\nid = "X"\npackage = "py"\nreason = "r"\n'
                          'expires = 2099-01-01\n', encoding="utf-8")
    with pytest.raises(AuditError, match="more than a year"):
        load_exceptions(exceptions)
    assert load_exceptions(ROOT / "deploy" / "audit-exceptions.toml") is not None


def test_a_missing_snapshot_is_an_error_not_a_pass(tmp_path: Path) -> None:
    run = _run("--advisories", str(tmp_path / "nowhere"))
    assert run.returncode == EXIT_ERROR
    assert "advisory snapshot not found" in run.stderr


def test_the_default_snapshot_is_found_beside_the_repository(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EINVOICE_ADVISORIES_DIR"}
    found = subprocess.run([sys.executable, "-c", "from deploy.audit import snapshot_path;"
                            "print(snapshot_path())"], cwd=ROOT, env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert Path(found).name == "advisories-pypa-2024-10-10"
    assert Path(found).parent.name == "shared"
    assert ROOT.is_relative_to(Path(found).parent.parent)


def test_live_finds_the_old_pin_through_a_real_osv_service(tmp_path: Path,
                                                           snapshot: Snapshot) -> None:
    with osv_standin(snapshot) as url:
        report = audit_live([_lock(tmp_path, "cryptography==41.0.0")], snapshot=snapshot,
                            osv_url=url)
        assert report.exit_code == EXIT_BLOCKED
        high = [f for f in report.findings if f.advisory == "PYSEC-2023-254"]
        assert high and high[0].severity == "HIGH" and high[0].blocking
        assert "41.0.6" in high[0].fixed
        ours = audit_live(snapshot=snapshot, osv_url=url)
    assert ours.exit_code == EXIT_PASS, ours.text()
    assert set(ours.locks) == {"requirements.lock", "requirements-dev.lock"}
    assert "snapshot dated 2024-10-10" in ours.text()


def test_live_unscored_when_the_snapshot_does_not_hold_the_advisory(
        tmp_path: Path, snapshot: Snapshot) -> None:
    empty = tmp_path / "advisories-pypa-2024-10-10"
    (empty / "vulns").mkdir(parents=True)
    with osv_standin(snapshot) as url:
        report = audit_live([_lock(tmp_path, "cryptography==41.0.0")],
                            snapshot=load_snapshot(empty), osv_url=url)
    assert report.findings and all(f.severity == "UNSCORED" and f.blocking
                                   for f in report.findings)


def test_live_exits_3_when_pypi_is_unreachable(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    env = {**os.environ, "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "NO_PROXY": ""}
    env.pop("https_proxy", None)
    run = _run("--live", "--lock", "requirements.lock", env=env)
    assert run.returncode == EXIT_UNREACHABLE, run.stdout + run.stderr
    assert "unreachable" in run.stdout and "NOT AUDITED" in run.stdout


def test_the_gate_refuses_when_unreachable_and_audits_the_snapshot_when_told(
        tmp_path: Path) -> None:
    report = gate(offline_audit=False, osv_url=f"http://127.0.0.1:{_closed_port()}/v1/query")
    assert report.exit_code == EXIT_UNREACHABLE
    assert "Refusing to build" in report.text() and "--offline-audit" in report.text()
    offline = gate(offline_audit=True)
    assert offline.exit_code == EXIT_PASS
    assert "snapshot dated 2024-10-10" in offline.text()
    blocked = gate(offline_audit=True, locks=[_lock(tmp_path, "cryptography==41.0.0")])
    assert blocked.exit_code == EXIT_BLOCKED


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
