"""What pip's --platform really accepts, with the packager's own tag lists,
on wheels made here (no index): pip matches tags literally and expands only
the manylinux2014/2010 aliases, so the glibc list must name every level up
to Lambda's 2.26 (saxonche is tagged manylinux_2_24 alone, lxml 2_26), and
never one above it; musl wheels only for Scaleway. Plus the requirements
file the installer takes: pins, continuation lines, hashes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.package import GLIBC_PLATFORMS, MUSL_PLATFORMS, pins, requirements_for


def wheel(folder: Path, tag: str) -> Path:
    """A minimal binary wheel of `demo` 1.0 tagged cp311-cp311-<tag>."""
    path = folder / f"demo-1.0-cp311-cp311-{tag}.whl"
    with zipfile.ZipFile(path, "w") as made:
        made.writestr("demo/__init__.py", "")
        made.writestr("demo-1.0.dist-info/METADATA",
                      "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        made.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                      f"Root-Is-Purelib: false\nTag: cp311-cp311-{tag}\n")
        made.writestr("demo-1.0.dist-info/RECORD", "")
    return path


def accepted(tmp_path: Path, tag: str, platforms: tuple[str, ...]) -> bool:
    index = tmp_path / f"index-{tag}"
    index.mkdir()
    wheel(index, tag)
    args = [sys.executable, "-m", "pip", "download", "--quiet", "--no-index",
            "--find-links", str(index), "--dest", str(tmp_path / f"got-{tag}"),
            "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            "--disable-pip-version-check", "demo==1.0"]
    for platform in platforms:
        args += ["--platform", platform]
    return subprocess.run(args, capture_output=True, text=True, timeout=120).returncode == 0


@pytest.mark.parametrize(("tag", "ok"), [
    ("manylinux_2_24_x86_64", True),  # saxonche
    ("manylinux_2_26_x86_64", True),  # lxml, argon2-cffi-bindings: Amazon Linux 2's own level
    ("manylinux_2_17_x86_64", True),
    ("manylinux2014_x86_64", True),
    ("manylinux1_x86_64", True),
    ("manylinux_2_28_x86_64", False),  # needs a newer glibc than Lambda's
    ("musllinux_1_2_x86_64", False),
    ("manylinux2014_aarch64", False),
])
def test_the_glibc_list_takes_every_level_up_to_lambdas(tmp_path: Path, tag: str,
                                                        ok: bool) -> None:
    assert accepted(tmp_path, tag, GLIBC_PLATFORMS) is ok


def test_the_manylinux2014_alias_alone_would_miss_saxonche(tmp_path: Path) -> None:
    assert not accepted(tmp_path, "manylinux_2_24_x86_64", ("manylinux2014_x86_64",))


@pytest.mark.parametrize(("tag", "ok"), [
    ("musllinux_1_2_x86_64", True), ("musllinux_1_1_x86_64", True),
    ("manylinux2014_x86_64", False),
])
def test_the_musl_list_takes_only_musl_wheels(tmp_path: Path, tag: str, ok: bool) -> None:
    assert accepted(tmp_path, tag, MUSL_PLATFORMS) is ok


def test_pins_keep_hashes_and_join_continuation_lines(tmp_path: Path) -> None:
    locked = tmp_path / "requirements.lock"
    locked.write_text("# a lock\nPg8000==1.31.6 \\\n    --hash=sha256:aa \\\n"
                      "    --hash=sha256:bb\nrfc8785==0.1.4  # canonical JSON\n-r other.txt\n")
    found = pins(locked)
    assert found == {"pg8000": "Pg8000==1.31.6 --hash=sha256:aa --hash=sha256:bb",
                     "rfc8785": "rfc8785==0.1.4"}
    assert requirements_for(["pg8000"], found) == found["pg8000"] + "\n"
    assert requirements_for(["pg8000"], found, hashes=False) == "Pg8000==1.31.6\n"
    with pytest.raises(RuntimeError, match="not pinned"):
        requirements_for(["boto3"], found)
