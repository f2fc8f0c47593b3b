"""The hash locks agree with the pinned inputs, and any drift is caught: a pin
changed or dropped without bin/lock, a dev lock that strays from the runtime
lock, an entry without a hash. The running .venv and .venv-tools are the locks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy.locks import LOCKS, ROOT, lock_problems, read_lock, read_pins

INPUTS = ["requirements.txt", "requirements-dev.txt", "requirements-tools.txt"]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in [*INPUTS, *LOCKS]:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_committed_locks_agree_with_the_inputs() -> None:
    assert lock_problems() == []


def test_every_pin_is_locked_at_its_version_with_hashes() -> None:
    runtime = read_lock(ROOT / "requirements.lock")
    for name, req in read_pins(ROOT / "requirements.txt").items():
        assert str(req.specifier) == f"=={runtime[name].version}"
        assert runtime[name].hashes
    assert "saxonche" in runtime and "botocore" in runtime  # pins and what they pull in


def test_a_pin_changed_without_relocking_is_caught(copy: Path) -> None:
    pillow = read_pins(ROOT / "requirements.txt")[canonicalize_name("pillow")]
    _edit(copy / "requirements.txt", str(pillow), "pillow==12.0.0")
    problems = lock_problems(copy)
    assert any("pillow" in p and "12.0.0" in p and "bin/lock" in p for p in problems), problems
    assert all("requirements-tools" not in p for p in problems)


def test_a_dropped_pin_left_in_the_lock_is_caught(copy: Path) -> None:
    text = (copy / "requirements.txt").read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.startswith("rfc8785==")]
    (copy / "requirements.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
    problems = lock_problems(copy)
    assert any("rfc8785" in p and "no longer pinned" in p for p in problems), problems


def test_a_dev_lock_straying_from_the_runtime_lock_is_caught(copy: Path) -> None:
    botocore = read_lock(ROOT / "requirements.lock")[canonicalize_name("botocore")]
    _edit(copy / "requirements-dev.lock", f"botocore=={botocore.version}", "botocore==1.0.0")
    problems = lock_problems(copy)
    assert any("requirements-dev.lock: botocore differs" in p for p in problems), problems


def test_an_entry_without_a_hash_is_caught(copy: Path) -> None:
    lock = copy / "requirements-tools.lock"
    text = lock.read_text(encoding="utf-8")
    start = text.index("\nbandit==")
    end = text.index("\n    # via", start)
    version_line = text[start:end].split(" \\", 1)[0]
    lock.write_text(text[:start] + version_line + text[end:], encoding="utf-8")
    assert "requirements-tools.lock: bandit has no sha256 hash" in lock_problems(copy)


def test_the_running_environment_is_the_dev_lock() -> None:
    """bin/_ensure.sh installed .venv from requirements-dev.lock, versions exact."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in metadata.distributions()}
    locked = {name: e.version for name, e in read_lock(ROOT / "requirements-dev.lock").items()}
    wrong = {n: (v, installed.get(n)) for n, v in locked.items() if installed.get(n) != v}
    assert wrong == {}, f"{sys.executable} differs from requirements-dev.lock"


def test_the_tools_environment_is_the_tools_lock() -> None:
    python = ROOT / ".venv-tools" / "bin" / "python"
    assert python.exists(), ".venv-tools is missing: bin/_ensure.sh (bin/test) installs it"
    listing = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
         "{d.metadata['Name']: d.version for d in m.distributions()}))"],
        check=True, capture_output=True, text=True).stdout
    installed = {canonicalize_name(k): v for k, v in json.loads(listing).items()}
    locked = read_lock(ROOT / "requirements-tools.lock")
    wrong = {n: (e.version, installed.get(n)) for n, e in locked.items()
             if installed.get(n) != e.version}
    assert wrong == {}


_CLASHES = """
import collections, importlib.metadata as m, json
owners = collections.defaultdict(set)
for d in m.distributions():
    dist = d.metadata["Name"]
    for f in d.files or []:
        name = str(f)
        if not (name.endswith(".pyc") or ".dist-info" in name or name.startswith("..")):
            owners[name].add(dist)
print(json.dumps(sorted({" + ".join(sorted(v)) for v in owners.values() if len(v) > 1})))
"""


@pytest.mark.parametrize("python", [Path(sys.executable), ROOT / ".venv-tools" / "bin" / "python"],
                         ids=["venv", "venv-tools"])
def test_no_two_locked_distributions_write_the_same_file(python: Path) -> None:
    """Two distributions unpacking the same module (detect-secrets and checkov's fork of
    it did) leave whichever was installed last: a scanner chosen by install order."""
    run = subprocess.run([str(python), "-c", _CLASHES], capture_output=True, text=True,
                         check=True)
    assert json.loads(run.stdout) == []
