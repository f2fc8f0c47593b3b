"""Runs Python from an unzipped package alone, as the platform does: the
standard library and the package, no site-packages, no writable cache.

Used by the package test (tests/package/) and the cold-start benchmark
(bench/cold_start.py): whatever imports there came from the zip.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

# What the package's interpreter checks about itself before anything else:
# no site-packages on its path, the site module never ran.
SELF_CHECK = """
import sys
assert "site" not in sys.modules, "site ran"
assert not [p for p in sys.path if "site-packages" in p or "dist-packages" in p], sys.path
"""


def base_python() -> str:
    """The interpreter itself (not a virtualenv's launcher): a venv's
    pyvenv.cfg must not bring its site-packages."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(candidate) if candidate.is_file() else sys.executable


def unpack(archive: Path, into: Path, *, read_only: bool = True) -> Path:
    """The zip's files under `into` (made read-only: /var/task is)."""
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(into)
    return unpack_in_place(into) if read_only else into


def unpack_in_place(tree: Path) -> Path:
    """`tree` made read-only, as the platform's code folder is."""
    for path in [tree, *tree.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return tree


def make_writable(tree: Path) -> None:
    """So that the tree can be removed afterwards."""
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def search_path(package: Path, deps_dir: str = "") -> str:
    """PYTHONPATH as the platform sets it: the package, then its
    distributions' folder where they have one (Scaleway's `package/`)."""
    parts = [str(package)] + ([str(package / deps_dir)] if deps_dir else [])
    return os.pathsep.join(parts)


def environment(package: Path, deps_dir: str = "",
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """A bare environment: no PYTHON* setting of this machine, no writes of
    bytecode, the function's own settings."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(package), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": search_path(package, deps_dir)}
    env.update(extra or {})
    return env


def command(code: str) -> list[str]:
    """The clean interpreter running `code` after its self-check."""
    return [base_python(), "-S", "-P", "-c", SELF_CHECK + code]


def run(package: Path, code: str, *, deps_dir: str = "", extra: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(code), cwd=package, env=environment(package, deps_dir, extra),
                          capture_output=True, text=True, timeout=timeout, check=False)
