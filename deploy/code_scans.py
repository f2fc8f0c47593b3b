"""Scans of our own code: bandit (SAST) over what is shipped and built, and a
secrets scan (detect-secrets) of every tracked file against an audited baseline.

Bandit fails on any HIGH finding; its skips live in pyproject.toml with their
reasons, and every `# nosec` in the code must name its test and say why. The
secrets scan fails on any finding .secrets.baseline does not hold, and on a
baseline finding whose file has no reason in deploy/secrets-allowed.toml.

    python -m deploy.code_scans                    # both scans
    python -m deploy.code_scans --update-baseline  # after adding a reason per new file
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tokenize
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.locks import ROOT
from deploy.supply_chain import SupplyChainError, tool

BANDIT_TARGETS = ("app.py", "chalicelib", "functions", "deploy", "devstack")
BASELINE = ROOT / ".secrets.baseline"
REASONS = ROOT / "deploy" / "secrets-allowed.toml"
_NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
_JUSTIFIED = re.compile(r"^\s*B\d{3}(\s*,\s*B\d{3})*\s*:\s*\S.{8,}")


@dataclass(frozen=True)
class BanditReport:
    findings: list[dict[str, Any]]
    errors: list[dict[str, Any]]

    @property
    def high(self) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["issue_severity"] == "HIGH"]

    def counts(self) -> dict[str, int]:
        out = {"HIGH": 0, "MEDIUM": 0, "LOW": 0}
        for f in self.findings:
            out[f["issue_severity"]] = out.get(f["issue_severity"], 0) + 1
        return out

    def text(self) -> str:
        counts = self.counts()
        lines = [f"bandit over {', '.join(BANDIT_TARGETS)}: {counts['HIGH']} HIGH, "
                 f"{counts['MEDIUM']} MEDIUM, {counts['LOW']} LOW "
                 "(HIGH fails; skips and their reasons in pyproject.toml [tool.bandit])"]
        for f in sorted(self.findings, key=lambda f: (f["issue_severity"] != "HIGH",
                                                      f["filename"], f["line_number"])):
            if f["issue_severity"] in ("HIGH", "MEDIUM"):
                lines.append(f"  {f['issue_severity']:6} {f['test_id']} {f['filename']}:"
                             f"{f['line_number']} {f['issue_text']}")
        lines += [f"  ERROR {e.get('filename')}: {e.get('reason')}" for e in self.errors]
        return "\n".join(lines)


def run_bandit(targets: Iterable[str] = BANDIT_TARGETS, root: Path = ROOT) -> BanditReport:
    """Bandit with the project's configuration; its JSON, parsed."""
    run = subprocess.run([str(tool("bandit")), "-c", str(ROOT / "pyproject.toml"), "-r",
                          *targets, "-f", "json", "-q"],
                         cwd=root, capture_output=True, text=True, check=False)
    if run.returncode not in (0, 1) or not run.stdout.strip():
        raise SupplyChainError(f"bandit failed: {run.stderr.strip()[-500:]}")
    data = json.loads(run.stdout)
    return BanditReport(data["results"], data["errors"])


def unjustified_nosec(targets: Iterable[str] = BANDIT_TARGETS, root: Path = ROOT) -> list[str]:
    """Each `# nosec` comment that does not name its test (B506) and give a reason
    after a colon. Comments only (tokenize), not text that mentions the marker."""
    found = []
    for target in targets:
        path = root / target
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            with file.open("rb") as source:
                for token in tokenize.tokenize(source.readline):
                    if token.type != tokenize.COMMENT:
                        continue
                    match = _NOSEC.search(token.string)
                    if match and not _JUSTIFIED.match(match.group("rest")):
                        found.append(f"{file.relative_to(root)}:{token.start[0]}: "
                                     f"{token.string}")
    return found


def tracked_files(root: Path = ROOT) -> list[str]:
    """Every file git tracks (that exists in the work tree), relative to root; not the
    baseline itself, whose hashed values would read as secrets."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                             check=True).stdout.decode()
    return [name for name in listing.split("\0")
            if name and name != BASELINE.name and (root / name).is_file()]


def scan_secrets(files: Sequence[str], root: Path = ROOT) -> dict[str, Any]:
    """detect-secrets over these files (relative to root): its report. detect-secrets
    silently skips a path outside its working folder, so such a path is an error."""
    outside = [f for f in files if Path(f).is_absolute() or ".." in Path(f).parts]
    if outside:
        raise SupplyChainError(f"scan_secrets takes paths relative to {root}: {outside[:3]}")
    if not files:  # detect-secrets given no file scans the whole folder
        return {"results": {}}
    run = subprocess.run([str(tool("detect-secrets")), "scan", *files], cwd=root,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SupplyChainError(f"detect-secrets failed: {run.stderr.strip()[-500:]}")
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def _keys(report: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    return {(name, r["type"], r["hashed_secret"]): r["line_number"]
            for name, results in report["results"].items() for r in results}


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


def _reasons(path: Path = REASONS) -> dict[str, str]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {item["path"]: item["reason"] for item in data.get("file", [])
            if item.get("path") and item.get("reason")}


def secret_problems(files: Sequence[str] | None = None, *, root: Path = ROOT,
                    baseline: Path = BASELINE, reasons: Path = REASONS) -> list[str]:
    """Every finding the audited baseline does not hold, and every baseline entry that
    is not marked audited (is_secret false) or whose file has no reason."""
    if not baseline.exists():
        raise SupplyChainError(f"{baseline} is missing: python -m deploy.code_scans "
                               "--update-baseline writes it")
    found = _keys(scan_secrets(tracked_files(root) if files is None else files, root))
    audited = json.loads(baseline.read_text(encoding="utf-8"))
    why = _reasons(reasons)
    problems = [f"{name}:{line}: {kind} not in {baseline.name}"
                for (name, kind, secret), line in sorted(found.items())
                if not any(name == n and r["type"] == kind and r["hashed_secret"] == secret
                           for n, rs in audited["results"].items() for r in rs)]
    pragma = "pragma: allowlist" + " secret"  # split, or this line would be one
    problems += [f"{name}: an inline '{pragma}' comment: record the finding in the baseline "
                 f"with a reason instead" for name in (tracked_files(root) if files is None
                                                        else files)
                 if pragma in _text(root / name)]
    for name, results in sorted(audited["results"].items()):
        if name not in why:
            problems.append(f"{baseline.name}: {name} has no reason in {reasons.name}")
        problems += [f"{baseline.name}: {name}:{r['line_number']} {r['type']} is not audited "
                     "(is_secret must be false)"
                     for r in results if r.get("is_secret") is not False]
    return problems


def update_baseline(root: Path = ROOT, baseline: Path = BASELINE,
                    reasons: Path = REASONS) -> list[str]:
    """Rewrite the baseline from a fresh scan of the tracked tree, each finding audited
    as not a secret; refuses (returns the files) while a file with findings has no reason."""
    report = scan_secrets(tracked_files(root), root)
    why = _reasons(reasons)
    missing = sorted(name for name in report["results"] if name not in why)
    if missing:
        return missing
    for results in report["results"].values():
        for result in results:
            result["is_secret"] = False
    report.pop("generated_at", None)
    baseline.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.code_scans", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-baseline", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.update_baseline:
            missing = update_baseline()
            for name in missing:
                print(f"no reason for {name} in {REASONS.name}: add one first", file=sys.stderr)
            return 1 if missing else 0
        bandit = run_bandit()
        print(bandit.text())
        nosec = unjustified_nosec()
        print("\n".join(f"  unjustified nosec: {n}" for n in nosec))
        secrets = secret_problems()
        print(f"secrets scan of the tracked tree: {len(secrets)} problems "
              f"(baseline {BASELINE.name}, reasons {REASONS.name})")
        print("\n".join(f"  {p}" for p in secrets))
        if secrets:
            print(f"A real secret: remove it from the tree and rotate it. A fake one: give its "
                  f"file a reason in {REASONS.relative_to(ROOT)}, then run "
                  "python -m deploy.code_scans --update-baseline and commit both.")
    except SupplyChainError as exc:
        print(f"deploy.code_scans: {exc}", file=sys.stderr)
        return 2
    return 1 if bandit.high or bandit.errors or nosec or secrets else 0


if __name__ == "__main__":
    sys.exit(main())
