"""Vulnerability audit of the locked versions.

Offline (the default): every version in the locks is matched against a dated
snapshot of the PyPA advisory database in OSV form (../shared/advisories-pypa-
<date>/, CC-BY 4.0). A finding blocks when it is HIGH or CRITICAL by its CVSS
vector, or when the advisory states no severity at all (fail closed: nobody
scored it, so nobody may assume it is harmless), unless deploy/audit-exceptions.toml
accepts it by id with a reason and an unexpired date. Advisories published after
the snapshot's date are not seen: every report says so.

Live (`--live`): pip-audit asks PyPI's vulnerability data (its default service)
about the same locks. That answer carries no severity, so each finding is scored
from the snapshot when it holds the same advisory, and blocks otherwise.
A service that cannot be reached, or that cannot answer for a locked package,
exits with EXIT_UNREACHABLE: the packager then refuses to build unless told to
use the snapshot (`--gate --offline-audit`).

    python -m deploy.audit                    # snapshot audit of the runtime and dev locks
    python -m deploy.audit --live             # live audit (pip-audit, PyPI)
    python -m deploy.audit --gate [--offline-audit]   # what bin/package runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from deploy.locks import ROOT, read_lock

EXIT_PASS = 0
EXIT_BLOCKED = 1
EXIT_ERROR = 2  # the audit could not run: no snapshot, unreadable lock or exceptions file
EXIT_UNREACHABLE = 3  # live only: the service did not answer (for every package)

SNAPSHOT_NAME = "advisories-pypa-2024-10-10"
SNAPSHOT_ENV = "EINVOICE_ADVISORIES_DIR"
EXCEPTIONS = ROOT / "deploy" / "audit-exceptions.toml"
DEFAULT_LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-dev.lock")
PIP_AUDIT = ROOT / ".venv-tools" / "bin" / "pip-audit"
BLOCKING = ("CRITICAL", "HIGH")
UNSCORED = "UNSCORED"
_RANK = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_MAX_EXCEPTION_DAYS = 366
_UNREACHABLE = re.compile(
    r"ConnectionError|ConnectTimeout|ReadTimeout|Could not connect|Max retries exceeded|"
    r"NameResolution|Name or service not known|ProxyError|Connection refused|"
    r"Temporary failure in name resolution|timed out")


class AuditError(Exception):
    """The audit could not run (EXIT_ERROR): missing snapshot, bad exceptions file."""


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str  # CRITICAL, HIGH, MEDIUM, LOW, NONE or UNSCORED
    score: float | None
    vector: str | None
    affected: tuple[dict[str, Any], ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    date: dt.date
    by_package: dict[str, list[Advisory]]  # canonical names
    withdrawn: int

    def advisory(self, ids: Iterable[str]) -> Advisory | None:
        """The snapshot's advisory with any of these ids or aliases, if it has one."""
        wanted = set(ids)
        for advisories in self.by_package.values():
            for advisory in advisories:
                if wanted & set(advisory.ids):
                    return advisory
        return None

    def banner(self) -> str:
        return (f"Advisories: PyPA advisory database snapshot dated {self.date.isoformat()} "
                f"(OSV format, CC-BY 4.0, {self.path}); advisories published after "
                f"{self.date.isoformat()} are not seen by this audit.")


@dataclass(frozen=True)
class Exception_:
    id: str
    package: NormalizedName
    reason: str
    expires: dt.date


@dataclass
class Finding:
    lock: str
    package: str
    version: str
    advisory: str
    aliases: list[str]
    severity: str
    score: float | None
    fixed: list[str]
    summary: str
    blocking: bool = True
    accepted: str | None = None  # the exception's reason and expiry, when one applies
    note: str | None = None

    def line(self) -> str:
        state = "BLOCKING" if self.blocking else ("accepted" if self.accepted else "reported")
        score = f" {self.score:.1f}" if self.score is not None else ""
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fixed = f"; fixed in {', '.join(self.fixed)}" if self.fixed else "; no fixed version"
        tail = f" -- {self.accepted}" if self.accepted else ""
        note = f" [{self.note}]" if self.note else ""
        return (f"  {state:9} {self.package}=={self.version} {self.advisory}{aliases} "
                f"{self.severity}{score}{fixed}{tail}{note}")


@dataclass
class Report:
    mode: str  # "snapshot" or "live"
    banner: str
    locks: dict[str, int] = field(default_factory=dict)  # lock -> packages audited
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exit_code: int = EXIT_PASS

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    def text(self) -> str:
        lines = [f"Vulnerability audit ({self.mode}). {self.banner}",
                 f"Blocking: {', '.join(BLOCKING)}, and advisories without a severity "
                 f"({UNSCORED}), unless accepted in {_shown(EXCEPTIONS)}."]
        for lock, count in self.locks.items():
            found = [f for f in self.findings if f.lock == lock]
            lines.append(f"{lock}: {count} packages, {len(found)} findings")
            lines += [f.line() for f in found]
        lines += self.notes
        if self.exit_code == EXIT_UNREACHABLE:
            lines.append("Result: NOT AUDITED: the live service did not answer")
        elif self.exit_code == EXIT_BLOCKED:
            lines.append(f"Result: FAIL: {len(self.blocking)} blocking")
        else:
            lines.append("Result: PASS")
        return "\n".join(lines)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def snapshot_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The snapshot: explicit, else $EINVOICE_ADVISORIES_DIR, else the first
    shared/advisories-pypa-2024-10-10 beside the repository or an ancestor
    (CI has ../shared beside its clone; a worktree may sit one level deeper)."""
    chosen = explicit or os.environ.get(SNAPSHOT_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_absolute():
            path = ROOT.parent / path
        if not (path / "vulns").is_dir():
            raise AuditError(f"advisory snapshot not found: {path} has no vulns/ folder")
        return path
    for parent in ROOT.parents:
        candidate = parent / "shared" / SNAPSHOT_NAME
        if (candidate / "vulns").is_dir():
            return candidate
    raise AuditError(f"advisory snapshot not found: no shared/{SNAPSHOT_NAME} beside "
                     f"{ROOT} or above it; set {SNAPSHOT_ENV}")


def score(entry: dict[str, Any]) -> tuple[str, float | None, str | None]:
    """The advisory's severity: the highest of its CVSS vectors (v4, v3, v2), else its
    stated database severity, else UNSCORED. A vector that does not parse is unscored."""
    best: tuple[str, float | None, str | None] = (UNSCORED, None, None)
    for item in entry.get("severity") or []:
        kind, vector = item.get("type", ""), item.get("score", "")
        try:
            if kind == "CVSS_V4":
                v4 = CVSS4(vector)
                label, value = str(v4.severity).upper(), float(v4.base_score)
            elif kind == "CVSS_V3":
                v3 = CVSS3(vector)
                label, value = str(v3.severities()[0]).upper(), float(v3.scores()[0])
            elif kind == "CVSS_V2":
                value = float(CVSS2(vector).scores()[0])
                label = "HIGH" if value >= 7.0 else "MEDIUM" if value >= 4.0 else "LOW"
            else:
                continue
        except (CVSSError, ValueError, KeyError):
            continue
        if best[0] == UNSCORED or _RANK.get(label, 0) > _RANK.get(best[0], 0):
            best = (label, value, vector)
    stated = str((entry.get("database_specific") or {}).get("severity", "")).upper()
    stated = {"MODERATE": "MEDIUM"}.get(stated, stated)
    if best[0] == UNSCORED and stated in _RANK:
        best = (stated, None, None)
    return best


def load_snapshot(path: Path) -> Snapshot:
    """Every advisory of the snapshot, by affected PyPI package; withdrawn ones left out."""
    match = re.search(r"(\d{4}-\d{2}-\d{2})$", path.resolve().name)
    if match is None:
        raise AuditError(f"{path}: the folder name must end with the snapshot's date "
                         "(advisories-pypa-YYYY-MM-DD)")
    by_package: dict[str, list[Advisory]] = {}  # by canonical name
    withdrawn = 0
    for file in sorted((path / "vulns").glob("*/*.yaml")):
        # BaseLoader: every scalar kept as text (a version 1.10 stays "1.10"), no object built.
        text = file.read_text(encoding="utf-8")
        entry = yaml.load(text, Loader=yaml.CBaseLoader)  # noqa: S506  # nosec B506: builds no object
        if not isinstance(entry, dict) or "id" not in entry:
            raise AuditError(f"{file}: not an OSV advisory")
        if entry.get("withdrawn"):
            withdrawn += 1
            continue
        label, value, vector = score(entry)
        affected = tuple(a for a in entry.get("affected") or []
                         if (a.get("package") or {}).get("ecosystem") == "PyPI")
        advisory = Advisory(entry["id"], tuple(entry.get("aliases") or ()),
                            str(entry.get("summary") or entry.get("details") or "")[:200],
                            label, value, vector, affected)
        for name in {canonicalize_name(a["package"]["name"]) for a in affected}:
            by_package.setdefault(name, []).append(advisory)
    return Snapshot(path, dt.date.fromisoformat(match.group(1)), by_package, withdrawn)


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV's ECOSYSTEM range walk: events in version order, introduced opens,
    fixed (at or below us) and last_affected (below us) close."""
    def key(event: dict[str, str]) -> Version:
        value = next(iter(event.values()))
        return Version("0") if value == "0" else Version(value)

    affected = False
    for event in sorted((e for e in events if "limit" not in e), key=key):
        if "introduced" in event and version >= key(event):
            affected = True
        elif ("fixed" in event and version >= key(event)) or (
                "last_affected" in event and version > key(event)):
            affected = False
    return affected


def affects(advisory: Advisory, name: str, version: str) -> bool | None:
    """Whether the advisory covers this exact version: its `versions` list, or an
    ECOSYSTEM range. None when a range cannot be read (then it counts as covered)."""
    wanted = Version(version)
    undecided = False
    for affected in advisory.affected:
        if canonicalize_name(affected["package"]["name"]) != canonicalize_name(name):
            continue
        for listed in affected.get("versions") or []:
            try:
                if Version(listed) == wanted:
                    return True
            except InvalidVersion:
                continue
        for span in affected.get("ranges") or []:
            if span.get("type") != "ECOSYSTEM":
                continue
            try:
                if _in_range(wanted, span.get("events") or []):
                    return True
            except InvalidVersion:
                undecided = True
    return None if undecided else False


def fixed_versions(advisory: Advisory, name: str) -> list[str]:
    return sorted({e["fixed"] for a in advisory.affected
                   if canonicalize_name(a["package"]["name"]) == canonicalize_name(name)
                   for r in a.get("ranges") or [] if r.get("type") == "ECOSYSTEM"
                   for e in r.get("events") or [] if "fixed" in e})


def load_exceptions(path: Path = EXCEPTIONS, today: dt.date | None = None) -> list[Exception_]:
    """The accepted advisories: each with id, package, reason and an expiry at most a
    year ahead (acceptances are reviewed, not forgotten)."""
    today = today or dt.date.today()
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AuditError(f"{path}: {exc}") from exc
    accepted = []
    for i, item in enumerate(data.get("accept", [])):
        where = f"{path.name}: accept[{i}]"
        missing = [k for k in ("id", "package", "reason", "expires") if not item.get(k)]
        if missing:
            raise AuditError(f"{where}: missing {', '.join(missing)}")
        if not isinstance(item["expires"], dt.date):
            raise AuditError(f"{where}: expires must be a TOML date (YYYY-MM-DD)")
        if (item["expires"] - today).days > _MAX_EXCEPTION_DAYS:
            raise AuditError(f"{where}: expires more than a year ahead")
        accepted.append(Exception_(str(item["id"]), canonicalize_name(str(item["package"])),
                                   str(item["reason"]), item["expires"]))
    return accepted


def _judge(finding: Finding, ids: Sequence[str], accepted: list[Exception_],
           today: dt.date) -> None:
    """Blocking or not, and which exception (if any) accepts it."""
    blocking = finding.severity in BLOCKING or finding.severity == UNSCORED
    for exc in accepted:
        if exc.id in ids and exc.package == canonicalize_name(finding.package):
            if exc.expires < today:
                finding.note = f"exception expired on {exc.expires.isoformat()}"
                break
            finding.accepted = f"accepted until {exc.expires.isoformat()}: {exc.reason}"
            blocking = False
            break
    finding.blocking = blocking


def audit_snapshot(locks: Sequence[Path] = DEFAULT_LOCKS, *, snapshot: Snapshot | None = None,
                   exceptions: Path = EXCEPTIONS, today: dt.date | None = None) -> Report:
    """Match every locked version against the snapshot."""
    today = today or dt.date.today()
    snapshot = snapshot or load_snapshot(snapshot_path())
    accepted = load_exceptions(exceptions, today)
    report = Report("snapshot", snapshot.banner())
    for lock in locks:
        entries = read_lock(lock)
        report.locks[_shown(lock)] = len(entries)
        for name, entry in sorted(entries.items()):
            for advisory in snapshot.by_package.get(name, []):
                covered = affects(advisory, name, entry.version)
                if covered is False:
                    continue
                finding = Finding(_shown(lock), name, entry.version, advisory.id,
                                  list(advisory.aliases), advisory.severity, advisory.score,
                                  fixed_versions(advisory, name), advisory.summary)
                if covered is None:
                    finding.note = "a range of this advisory could not be read: counted in"
                _judge(finding, advisory.ids, accepted, today)
                report.findings.append(finding)
    report.notes.append(f"{snapshot.withdrawn} withdrawn advisories ignored.")
    report.exit_code = EXIT_BLOCKED if report.blocking else EXIT_PASS
    return report


def audit_live(locks: Sequence[Path] = DEFAULT_LOCKS, *, snapshot: Snapshot | None = None,
               exceptions: Path = EXCEPTIONS, osv_url: str | None = None, timeout: int = 20,
               today: dt.date | None = None) -> Report:
    """pip-audit over each lock against the live service (PyPI; an OSV API with
    osv_url). Severity from the snapshot's copy of the advisory, else UNSCORED."""
    today = today or dt.date.today()
    accepted = load_exceptions(exceptions, today)
    service = f"OSV API at {osv_url}" if osv_url else "PyPI's vulnerability data"
    banner = f"Service: {service}, queried now through pip-audit."
    if snapshot is not None:
        banner += (f" Severities from the PyPA snapshot dated {snapshot.date.isoformat()}; "
                   "an advisory it does not hold counts as unscored.")
    else:
        banner += " No advisory snapshot found: every live finding counts as unscored."
    report = Report("live", banner)
    if not PIP_AUDIT.exists():
        raise AuditError(f"{PIP_AUDIT} is missing: bin/_ensure.sh installs .venv-tools")
    for lock in locks:
        with tempfile.TemporaryDirectory(prefix="einvoice-pip-audit-") as scratch:
            out = Path(scratch) / "audit.json"
            command = [str(PIP_AUDIT), "--requirement", str(lock), "--disable-pip",
                       "--require-hashes", "--format", "json", "--output", str(out),
                       "--progress-spinner", "off", "--timeout", str(timeout),
                       "--cache-dir", str(Path(scratch) / "cache")]
            if osv_url:
                command += ["--vulnerability-service", "osv", "--osv-url", osv_url]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            if run.returncode not in (0, 1) or (run.returncode == 1 and not out.exists()):
                tail = run.stderr.strip().splitlines()[-1:]
                if _UNREACHABLE.search(run.stderr):
                    report.notes.append(f"{_shown(lock)}: {service} unreachable: "
                                        + " | ".join(tail))
                    report.exit_code = EXIT_UNREACHABLE
                    return report
                raise AuditError(f"pip-audit failed on {lock}: " + " | ".join(tail))
            dependencies = json.loads(out.read_text())["dependencies"] if out.exists() else []
        entries = read_lock(lock)
        skipped = [d["name"] for d in dependencies if "skip_reason" in d]
        if skipped:
            report.notes.append(f"{_shown(lock)}: {service} could not answer for "
                                f"{len(skipped)} of {len(entries)} packages "
                                f"({', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})"
                                ": not audited")
            report.exit_code = EXIT_UNREACHABLE
            return report
        report.locks[_shown(lock)] = len(entries)
        for dep in dependencies:
            for vuln in dep.get("vulns", []):
                ids = [vuln["id"], *vuln.get("aliases", [])]
                known = snapshot.advisory(ids) if snapshot else None
                finding = Finding(_shown(lock), canonicalize_name(dep["name"]), dep["version"],
                                  vuln["id"], list(vuln.get("aliases", [])),
                                  known.severity if known else UNSCORED,
                                  known.score if known else None,
                                  list(vuln.get("fix_versions", [])),
                                  str(vuln.get("description", ""))[:200])
                _judge(finding, ids, accepted, today)
                report.findings.append(finding)
    report.exit_code = EXIT_BLOCKED if report.blocking else EXIT_PASS
    return report


def _optional_snapshot(advisories: str | None) -> Snapshot | None:
    """The snapshot for scoring live findings; without it every live finding is unscored."""
    try:
        return load_snapshot(snapshot_path(advisories))
    except AuditError:
        return None


def gate(*, offline_audit: bool, locks: Sequence[Path] = DEFAULT_LOCKS,
         advisories: str | None = None, exceptions: Path = EXCEPTIONS,
         osv_url: str | None = None) -> Report:
    """The packager's audit: live; with offline_audit, the snapshot instead (no network).
    Build only when the report's exit_code is EXIT_PASS."""
    if offline_audit:
        report = audit_snapshot(locks, snapshot=load_snapshot(snapshot_path(advisories)),
                                exceptions=exceptions)
        report.notes.append("Offline audit requested (--offline-audit): live service not asked.")
        return report
    snapshot = _optional_snapshot(advisories)
    report = audit_live(locks, snapshot=snapshot, exceptions=exceptions, osv_url=osv_url)
    if report.exit_code == EXIT_UNREACHABLE:
        report.notes.append("Refusing to build: the live audit did not run. Retry, or pass "
                            "--offline-audit to audit against the dated snapshot instead.")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", action="append", type=Path,
                        help="a lock to audit (repeatable; default: runtime and dev locks)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", action="store_true", help="ask the live service (pip-audit)")
    mode.add_argument("--gate", action="store_true",
                      help="the packager's audit: live, or the snapshot with --offline-audit")
    parser.add_argument("--offline-audit", action="store_true",
                        help="with --gate: audit against the snapshot, not the live service")
    parser.add_argument("--advisories", help=f"snapshot folder (default ${SNAPSHOT_ENV}, "
                        f"else shared/{SNAPSHOT_NAME} beside the repository)")
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS)
    parser.add_argument("--osv-url", help="live: an OSV query API instead of PyPI")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.offline_audit and not args.gate:
        parser.error("--offline-audit goes with --gate")
    locks = [p.resolve() for p in args.lock] if args.lock else list(DEFAULT_LOCKS)
    try:
        if args.gate:
            report = gate(offline_audit=args.offline_audit, locks=locks,
                          advisories=args.advisories, exceptions=args.exceptions,
                          osv_url=args.osv_url)
        elif args.live:
            report = audit_live(locks, snapshot=_optional_snapshot(args.advisories),
                                exceptions=args.exceptions, osv_url=args.osv_url)
        else:
            report = audit_snapshot(locks, snapshot=load_snapshot(snapshot_path(args.advisories)),
                                    exceptions=args.exceptions)
    except (AuditError, OSError, ValueError) as exc:
        print(f"deploy.audit: cannot audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
