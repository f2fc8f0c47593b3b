"""The packages, built once per session from the package index as CI builds
them (`deploy.package`, both providers), and unzipped read-only."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import clean
from deploy.manifest import FUNCTIONS, Function
from deploy.package import ROOT, Built, build, handler_sources


def present(function: Function) -> bool:
    return all((ROOT / path).is_file() for path in handler_sources(function))


PACKAGED = [f for f in FUNCTIONS if present(f)]
PROJECT_TOPS = ("app.py", "chalice/", "chalicelib/", "functions/", "serve.py", "Dockerfile")


@dataclass
class Packages:
    out: dict[str, Path]  # provider -> dist folder
    built: dict[str, dict[str, Built]]  # provider -> function -> what manifest.json says
    unpacked: dict[str, dict[str, Path]]  # provider -> function -> read-only tree
    twins: dict[str, Path]  # function -> Scaleway layout with the glibc distributions


def _twin(scaleway_zip: Path, aws_zip: Path, into: Path) -> Path:
    """The Scaleway package's own files, with its distributions (package/)
    taken from the AWS package: the same names and versions built for glibc,
    so this machine can run the Scaleway layout."""
    with zipfile.ZipFile(scaleway_zip) as scaleway:
        for name in scaleway.namelist():
            if not name.startswith("package/"):
                scaleway.extract(name, into)
    with zipfile.ZipFile(aws_zip) as aws:
        for info in aws.infolist():
            if not info.filename.startswith(PROJECT_TOPS):
                info.filename = "package/" + info.filename
                aws.extract(info, into)
    return clean.unpack_in_place(into)


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Packages]:
    missing = {f.name for f in FUNCTIONS if not present(f)}
    assert not missing, f"no handler file for {sorted(missing)}"
    base = tmp_path_factory.mktemp("packages")
    names = [f.name for f in PACKAGED]
    out = {provider: base / "dist" / provider for provider in ("aws", "scaleway")}
    built = {provider: {b.name: b for b in build(provider, folder, only=names)}  # type: ignore[arg-type]
             for provider, folder in out.items()}
    unpacked = {provider: {name: clean.unpack(folder / f"{name}.zip", base / provider / name)
                           for name in names}
                for provider, folder in out.items()}
    twins = {}
    for name in names:
        if built["scaleway"][name].libc == "musl":
            twins[name] = _twin(out["scaleway"] / f"{name}.zip", out["aws"] / f"{name}.zip",
                                base / "scaleway-twin" / name)
        else:
            twins[name] = unpacked["scaleway"][name]
    try:
        yield Packages(out, built, unpacked, twins)
    finally:
        clean.make_writable(base)
