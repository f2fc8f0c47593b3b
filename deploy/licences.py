"""Licence check of the runtime dependencies: pip-licenses (from .venv-tools)
reads the licence of every distribution requirements.lock names, as installed in
the runtime environment (.venv), and each must be on the allow-list of
deploy/licences.toml: permissive, or a copyleft/unknown licence accepted for that
one package with its reason. Anything else, UNKNOWN included, fails.

    python -m deploy.licences [--python .venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from deploy.locks import ROOT, read_lock
from deploy.supply_chain import RUNTIME_LOCK, SupplyChainError, tool

POLICY = ROOT / "deploy" / "licences.toml"
COPYLEFT = re.compile(r"GPL|General Public|MPL|Mozilla|EPL|Eclipse|CDDL|EUPL|OSL|SSPL|"
                      r"Share.?Alike|CC-BY-SA|Commons Clause|UNKNOWN", re.IGNORECASE)


@dataclass(frozen=True)
class Accepted:
    package: NormalizedName
    licence: str  # exactly as pip-licenses reports it
    reason: str
    actual: str | None  # the licence established by hand when the metadata says UNKNOWN


@dataclass(frozen=True)
class Policy:
    permissive: frozenset[str]
    accepted: dict[NormalizedName, Accepted]


@dataclass(frozen=True)
class Licence:
    package: NormalizedName
    version: str
    licence: str
    verdict: str  # "permissive", "accepted: <reason>" or "REFUSED: <why>"

    @property
    def refused(self) -> bool:
        return self.verdict.startswith("REFUSED")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def load_policy(path: Path = POLICY) -> Policy:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    permissive = frozenset(_norm(x) for x in data.get("permissive", []))
    copyleft = sorted(x for x in data.get("permissive", []) if COPYLEFT.search(x))
    if copyleft:
        raise SupplyChainError(f"{path.name}: copyleft or unknown licences may not be "
                               f"permissive: {copyleft}; accept them per package")
    accepted: dict[NormalizedName, Accepted] = {}
    for item in data.get("accepted", []):
        missing = [k for k in ("package", "licence", "reason") if not item.get(k)]
        if missing:
            raise SupplyChainError(f"{path.name}: accepted {item}: missing {', '.join(missing)}")
        name = canonicalize_name(item["package"])
        accepted[name] = Accepted(name, item["licence"], item["reason"], item.get("actual"))
    return Policy(permissive, accepted)


def judge(package: NormalizedName, licence: str, policy: Policy) -> str:
    """The verdict for one package's reported licence string."""
    named = policy.accepted.get(package)
    if named is not None:
        if _norm(named.licence) != _norm(licence):
            return (f"REFUSED: accepted as {named.licence!r} but now reports {licence!r}: "
                    "review it again")
        return f"accepted: {named.actual or named.licence}: {named.reason}"
    parts = [p.strip() for p in licence.split(";") if p.strip()]
    if not parts or any(_norm(p) in ("unknown", "") for p in parts):
        return "REFUSED: unknown licence (establish it and accept it by name)"
    unlisted = [p for p in parts if _norm(p) not in policy.permissive]
    if unlisted:
        return f"REFUSED: licence not on the allow-list: {'; '.join(unlisted)}"
    return "permissive"


def check_licences(python: Path, lock: Path = RUNTIME_LOCK,
                   policy_path: Path = POLICY) -> list[Licence]:
    """Every runtime dependency with its licence and verdict; a package the lock names
    but the environment lacks, or holds at another version, is refused too."""
    policy = load_policy(policy_path)
    locked = read_lock(lock)
    run = subprocess.run([str(tool("pip-licenses")), "--python", str(python), "--from", "mixed",
                          "--format", "json", "--packages", *sorted(locked)],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SupplyChainError(f"pip-licenses failed: {run.stderr.strip()}")
    reported = {canonicalize_name(p["Name"]): p for p in json.loads(run.stdout)}
    results = []
    for name, entry in sorted(locked.items()):
        found = reported.get(name)
        if found is None:
            results.append(Licence(name, entry.version, "", f"REFUSED: not installed in {python}"))
        elif found["Version"] != entry.version:
            results.append(Licence(name, found["Version"], found["License"],
                                   f"REFUSED: {python} holds {found['Version']}, "
                                   f"the lock {entry.version}"))
        else:
            results.append(Licence(name, entry.version, found["License"],
                                   judge(name, found["License"], policy)))
    stale = sorted(set(policy.accepted) - set(locked))
    for name in stale:
        results.append(Licence(name, "", policy.accepted[name].licence,
                               f"REFUSED: accepted in {policy_path.name} but no longer a "
                               "runtime dependency: remove the entry"))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.licences", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="the runtime environment's interpreter (default .venv)")
    parser.add_argument("--lock", type=Path, default=RUNTIME_LOCK)
    args = parser.parse_args(argv)
    try:
        results = check_licences(args.python, args.lock)
    except SupplyChainError as exc:
        print(f"deploy.licences: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.package:28} {r.version:16} {r.licence[:60]:60} {r.verdict[:120]}")
    refused = [r for r in results if r.refused]
    print(f"{len(results)} runtime dependencies from {args.lock.name}: "
          f"{len(refused)} refused" + ("" if refused else ", all licences allowed"))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
