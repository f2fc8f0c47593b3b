"""The pinned inputs (requirements*.txt) and their hash locks (*.lock, written
by bin/lock): reading both, and telling where they disagree, so a pin changed
without relocking fails the tests instead of shipping what nobody locked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# Each lock, the input it is compiled from, and the lock it is constrained to.
LOCKS: dict[str, tuple[str, str | None]] = {
    "requirements.lock": ("requirements.txt", None),
    "requirements-dev.lock": ("requirements-dev.txt", "requirements.lock"),
    "requirements-tools.lock": ("requirements-tools.txt", None),
}


@dataclass(frozen=True)
class Locked:
    """One locked distribution: exact version, its allowed file hashes, and who wants it."""

    name: NormalizedName
    version: str
    hashes: frozenset[str]
    via: tuple[str, ...]


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def read_pins(path: Path) -> dict[NormalizedName, Requirement]:
    """The requirements a pinned input file names, `-r` includes followed."""
    pins: dict[NormalizedName, Requirement] = {}
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        if line.startswith(("-r ", "--requirement ")):
            pins.update(read_pins(path.parent / line.split(maxsplit=1)[1]))
            continue
        if line.startswith("-"):
            raise ValueError(f"{path.name}: option {line!r} is not supported in an input file")
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{path.name}: {line!r} is not a requirement: {exc}") from exc
        pins[canonicalize_name(req.name)] = req
    return pins


def read_lock(path: Path) -> dict[NormalizedName, Locked]:
    """Every `name==version --hash=...` entry of a lock, with its `# via` annotation."""
    entries: dict[NormalizedName, Locked] = {}
    text = path.read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        head = block.split("\n", 1)[0]
        if head.startswith("#") or not head.strip():
            continue
        body = re.sub(r"\\\n", " ", block)
        spec, *options = body.split("\n", 1)[0].split(" --hash=")
        req = Requirement(spec.strip())
        versions = [s.version for s in req.specifier if s.operator == "=="]
        if len(versions) != 1:
            raise ValueError(f"{path.name}: {head!r} is not pinned to one version")
        via_text = block.split("# via", 1)[1] if "# via" in block else ""
        via = tuple(v.strip().lstrip("#").strip() for v in via_text.splitlines())
        hashes = frozenset(o.strip() for o in options if o.strip())
        name = canonicalize_name(req.name)
        entries[name] = Locked(name, versions[0], hashes, tuple(v for v in via if v))
    return entries


def lock_problems(root: Path = ROOT) -> list[str]:
    """Every disagreement between the inputs and the locks; empty when all agree.

    A pin must be locked at its exact version, with sha256 hashes for every entry;
    an entry that only an input wanted must still be pinned there; the dev lock
    must hold the runtime lock's versions and hashes (tests run what is packaged).
    """
    problems: list[str] = []
    locks = {lock: read_lock(root / lock) for lock in LOCKS}
    for lock, (source, constraint) in LOCKS.items():
        pins = read_pins(root / source)
        entries = locks[lock]
        for name, req in sorted(pins.items()):
            wanted = [s.version for s in req.specifier if s.operator == "=="]
            if len(wanted) != 1:
                problems.append(f"{source}: {req} is not pinned with =="
                                " (every input names an exact version)")
                continue
            got = entries.get(name)
            if got is None:
                problems.append(f"{lock}: {name} is pinned in {source} but not locked")
            elif got.version != wanted[0]:
                problems.append(f"{lock}: {name}=={got.version} but {source} pins "
                                f"{wanted[0]}: run bin/lock")
        for name, entry in sorted(entries.items()):
            if not entry.hashes or not all(h.startswith("sha256:") for h in entry.hashes):
                problems.append(f"{lock}: {name} has no sha256 hash")
            wanted_by = [v for v in entry.via if not v.startswith("-c ")]
            only_inputs = wanted_by and all(v.startswith("-r ") for v in wanted_by)
            if only_inputs and name not in pins:
                problems.append(f"{lock}: {name} is locked for {', '.join(wanted_by)} "
                                f"but no longer pinned there: run bin/lock")
        if constraint is not None:
            for name, base in sorted(locks[constraint].items()):
                got = entries.get(name)
                if got is None or got.version != base.version or got.hashes != base.hashes:
                    problems.append(f"{lock}: {name} differs from {constraint} "
                                    f"({got.version if got else 'absent'} vs {base.version})"
                                    ": run bin/lock")
    return problems
