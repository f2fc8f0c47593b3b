"""Builds one zip per function for a provider: `python -m deploy.package aws|scaleway`.

Each `dist/<provider>/<name>.zip` holds only what that function needs
(deploy/contents.py): its project code, Chalice's runtime module where app.py
is the handler (copied from the installed chalice, as Chalice's own packager
does), and its third-party distributions installed by pip from wheels built
for the provider's Linux (`--only-binary=:all:`: never a source build), then
compiled to bytecode. `dist/<provider>/manifest.json` records each zip's
size, unzipped size, SHA-256, handler, the provider's limits and whether it
fits; the command exits non-zero when one does not (docs/deploy/packaging.md).

Wheels, per provider and libc (docs/deploy/packaging.md says how each was
established):
- AWS Lambda python3.11 runs on Amazon Linux 2, glibc 2.26: manylinux wheels
  up to manylinux_2_26, distributions at the zip's root (/var/task);
- Scaleway's Python runtimes run on Alpine Linux (musl): musllinux wheels,
  distributions under `package/` (the runtime puts it on the path). saxonche
  ships no musllinux wheel, so conformance-check is built for glibc there,
  to run as a container (its zip carries the Dockerfile).

The installer's input is a requirements file (`--requirements`, default
requirements.lock, the hash lock): pins, optionally with hashes. The wheels are downloaded
once per libc for all functions (with `--require-hashes` when the file has
hashes: every distribution of the closure must then be in the file); each
function then installs its share from those wheels only (no index), and its
packaged files are linked from one shared install.

Before building, the command audits the locks (deploy/audit.py): against the
live vulnerability service, refusing to build when it cannot be reached
unless told `--offline-audit` (then the dated OSV snapshot). After building,
it writes each package's CycloneDX SBOM beside its zip (`<name>.cdx.json`),
from the distributions the zip really holds, each checked against the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from deploy.contents import Contents, contents
from deploy.manifest import FUNCTIONS, Function
from deploy.supply_chain import SupplyChainError

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.11"
Provider = Literal["aws", "scaleway"]
Libc = Literal["glibc", "musl"]

# Lambda's python3.11 runtime: Amazon Linux 2, glibc 2.26. pip's --platform
# matches tags literally (it expands only the manylinux2014/2010 aliases), so
# every glibc level a wheel may be tagged with is listed, newest first.
GLIBC_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(26, 16, -1)),
    "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
    "manylinux_2_5_x86_64", "manylinux1_x86_64")
# Scaleway's Alpine runtimes: musl 1.2 (Alpine 3.13 and later), and 1.1 wheels.
MUSL_PLATFORMS: tuple[str, ...] = ("musllinux_1_2_x86_64", "musllinux_1_1_x86_64")
PLATFORMS: dict[Libc, tuple[str, ...]] = {"glibc": GLIBC_PLATFORMS, "musl": MUSL_PLATFORMS}

# Where the platform puts the code: the paths compiled into the bytecode.
CODE_ROOT: dict[Provider, str] = {"aws": "/var/task", "scaleway": "/home/app/function"}
# Only the distributions a function runs with its package; the conformance
# check's engine nowhere else.
SCHEMATRON_ENGINE = "saxonche"
CONFORMANCE_CHECK = "conformance-check"

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries' date: the same bytes from the same inputs
_STRIPPED_DIRS = ("tests", "SelfTest")  # test suites inside third-party packages
_STRIPPED_SUFFIXES = (".c", ".h", ".pyx", ".pxd", ".pxi")  # C sources and headers
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==")


@dataclass(frozen=True)
class Limits:
    max_zip_bytes: int | None  # what the provider accepts as an upload
    max_unzipped_bytes: int  # the code once unpacked
    direct_upload_max_zip_bytes: int | None = None  # above it, upload through object storage


LIMITS: dict[Provider, Limits] = {
    # Lambda: 250 MB unzipped including layers; a zip over 50 MB goes through S3.
    "aws": Limits(max_zip_bytes=None, max_unzipped_bytes=262_144_000,
                  direct_upload_max_zip_bytes=52_428_800),
    # Scaleway Functions: zip 100 MiB, code 500 MiB.
    "scaleway": Limits(max_zip_bytes=100 * 1024 * 1024, max_unzipped_bytes=500 * 1024 * 1024),
}


@dataclass(frozen=True)
class Target:
    """How one function's package is laid out for one provider."""

    provider: Provider
    libc: Libc
    deps_dir: str  # where distributions go inside the zip ("" = its root)
    handler: str
    container: bool = False  # the zip is a container build context (Dockerfile at its root)

    @property
    def platforms(self) -> tuple[str, ...]:
        return PLATFORMS[self.libc]


def target(provider: Provider, function: Function, libc: Libc | None = None) -> Target:
    """The layout of `function` on `provider`; `libc` overrides Scaleway's musl
    (a glibc twin of the Scaleway layout, to run it on a glibc machine)."""
    if provider == "aws":
        return Target("aws", "glibc", "", function.aws_handler)
    needs_glibc = SCHEMATRON_ENGINE in contents(function).distributions
    chosen: Libc = "glibc" if needs_glibc else (libc or "musl")
    return Target("scaleway", chosen, "package", function.scaleway_handler,
                  container=needs_glibc)


@dataclass
class Built:
    """One package as manifest.json records it."""

    name: str
    zip: str
    handler: str
    libc: str
    platforms: list[str]
    container: bool
    zip_bytes: int
    unzipped_bytes: int
    sha256: str
    distributions: list[str]  # name==version of every distribution in the package
    limits: dict[str, int | None]
    fits: bool
    problems: list[str] = field(default_factory=list)
    direct_upload: bool | None = None  # AWS: small enough to upload without S3


class PackagingError(RuntimeError):
    pass


# ---------------------------------------------------------------- requirements

def pins(requirements: Path) -> dict[str, str]:
    """Each pinned distribution of a requirements file, by normalised name: its
    whole requirement (continuation lines joined, hashes kept)."""
    found: dict[str, str] = {}
    for line in _logical_lines(requirements.read_text(encoding="utf-8")):
        match = _PIN.match(line)
        if match:
            found[normalise(match.group(1))] = line
    return found


def _logical_lines(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            yield " ".join(current.split())
        current = ""
    if current.strip():
        yield " ".join(current.split())


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_for(names: Iterable[str], available: dict[str, str], *,
                     hashes: bool = True) -> str:
    """A requirements file of these distributions: the pin of each, with its
    hashes when the source file has them and `hashes` is true."""
    chosen = list(dict.fromkeys(names))
    missing = [n for n in chosen if normalise(n) not in available]
    if missing:
        raise PackagingError(f"not pinned in the requirements file: {', '.join(missing)}")
    lines = [available[normalise(n)] for n in chosen]
    if not hashes:
        lines = [line.split(" --hash", 1)[0] for line in lines]
    return "".join(line + "\n" for line in lines)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
            "--no-input"]


def _platform_args(platforms: tuple[str, ...]) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def _hash_args(requirements_text: str) -> list[str]:
    return ["--require-hashes"] if "--hash=" in requirements_text else []


def download(requirements: Path, constraints: Path, platforms: tuple[str, ...],
             wheelhouse: Path, pip_cache: Path | None) -> None:
    """Every wheel the requirements need on these platforms (and their own
    dependencies), into `wheelhouse`: where hashes are checked, when the
    file has them."""
    cache = ["--cache-dir", str(pip_cache)] if pip_cache else []
    text = requirements.read_text(encoding="utf-8")
    _run(_pip("download", "--quiet", "-d", str(wheelhouse), "-r", str(requirements),
              "-c", str(constraints), *_platform_args(platforms), *_hash_args(text), *cache))


def install(requirements: Path, constraints: Path, platforms: tuple[str, ...],
            wheelhouse: Path, into: Path) -> None:
    """Installs a requirements file from the wheelhouse only (no index:
    nothing but the wheels `download` fetched, and checked)."""
    _run(_pip("install", "--quiet", "--no-index", "--find-links", str(wheelhouse),
              "--target", str(into), "--no-compile", "--no-warn-script-location",
              "-r", str(requirements), "-c", str(constraints), *_platform_args(platforms)))


def resolve(requirements: Path, constraints: Path, platforms: tuple[str, ...],
            wheelhouse: Path | None, report: Path) -> dict[str, str]:
    """The distributions pip would install for a requirements file (its own
    dependencies included), by normalised name, with their versions: from
    the wheelhouse, or the index when there is none yet."""
    report.parent.mkdir(parents=True, exist_ok=True)
    source = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    _run(_pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
              *source, "--target", str(report.parent), "-r", str(requirements),
              "-c", str(constraints), *_platform_args(platforms)))
    chosen = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {normalise(item["metadata"]["name"]): item["metadata"]["version"] for item in chosen}


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackagingError(f"{' '.join(command[2:5])} failed:\n{done.stdout}{done.stderr}")


# ---------------------------------------------------------------- the tree

def project_files(wanted: Contents, root: Path = ROOT) -> list[Path]:
    """The project files a function's globs select (relative to `root`)."""
    found: set[Path] = set()
    for pattern in wanted.project:
        matched = [p for p in root.glob(pattern) if p.is_file()]
        if not matched:
            raise PackagingError(f"{pattern}: no such file in the project")
        found.update(p.relative_to(root) for p in matched)
    if wanted.chalice_runtime:
        found.add(Path("app.py"))
    return sorted(found)


def chalice_runtime_files() -> dict[str, Path]:
    """Chalice's runtime module from the installed chalice (never its CLI):
    what Chalice's own packager puts next to app.py."""
    import chalice
    import chalice.app

    return {"chalice/__init__.py": Path(chalice.__file__),
            "chalice/app.py": Path(chalice.app.__file__)}


def strip(deps: Path) -> None:
    """Removes what no function imports at run time: console scripts, test
    suites shipped inside packages, C sources and headers, stray bytecode."""
    shutil.rmtree(deps / "bin", ignore_errors=True)
    for top in deps.iterdir():
        if top.is_dir() and not top.name.endswith((".dist-info", ".libs")):
            for name in _STRIPPED_DIRS:
                shutil.rmtree(top / name, ignore_errors=True)
    for path in list(deps.rglob("*")):
        if path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in _STRIPPED_SUFFIXES:
            path.unlink()


def compile_tree(tree: Path, code_root: str, files: Iterable[Path] | None = None) -> None:
    """Bytecode for every module of `tree` (or these files of it), valid
    whatever the files' times (unchecked hash: the platform never re-checks
    the source, and never needs to write), naming the paths the platform
    sees. In a process with a fixed hash seed: sets and frozensets among the
    constants are written in hash order, so this is what makes it
    reproducible."""
    targets = [str(tree)] if files is None else [str(tree / f) for f in files
                                                   if f.suffix == ".py"]
    if not targets:
        return
    command = [sys.executable, "-m", "compileall", "-q", "-j", "0",
               "--invalidation-mode", "unchecked-hash", "-s", str(tree), "-p", code_root,
               *targets]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise PackagingError(f"bytecode compilation failed in {tree}:\n{done.stdout}"
                             f"{done.stderr}")


def _files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() or p.is_symlink())


def write_zip(tree: Path, destination: Path) -> None:
    """A reproducible zip of `tree`: sorted entries, fixed times and modes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in _files(tree):
            if path.is_symlink():
                raise PackagingError(f"{path}: a symlink cannot be packaged")
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), _FIXED_TIME)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
    partial.replace(destination)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_distributions(deps: Path) -> list[str]:
    """name==version of each distribution installed in `deps`."""
    found = []
    for info in sorted(deps.glob("*.dist-info")):
        name, version = info.name[: -len(".dist-info")].rsplit("-", 1)
        found.append(f"{normalise(name)}=={version}")
    return found


def handler_sources(function: Function) -> list[str]:
    """The project files holding a function's two handlers."""
    return [handler_file(function.aws_handler, "aws"),
            handler_file(function.scaleway_handler, "scaleway")]


def handler_file(handler: str, provider: Provider) -> str:
    """The file a handler string names (`module.attr` on AWS, `path/file.attr`
    on Scaleway)."""
    module = handler.rsplit(".", 1)[0]
    return (module.replace(".", "/") if provider == "aws" else module) + ".py"


# ---------------------------------------------------------------- one package

CONTAINERFILE = """\
# The conformance check on Scaleway: saxonche has no musl wheel, so it runs as
# a Serverless Container on a glibc base rather than on the Alpine function
# runtime. Build context: this unzipped package. docs/deploy/packaging.md.
FROM python:3.11-slim-bookworm
COPY . /home/app/function
WORKDIR /home/app/function
ENV PYTHONPATH=/home/app/function:/home/app/function/package \\
    PYTHONDONTWRITEBYTECODE=1 PORT=8080
USER nobody
CMD ["python", "serve.py", "functions/conformance_check.handle"]
"""


@dataclass(frozen=True)
class Shared:
    """The distributions every function of one libc draws from: installed,
    stripped and compiled once; each package links the files of its own."""

    libc: Libc
    wheelhouse: Path
    deps: Path  # the installed distributions, laid out as in a package


def link_distributions(shared: Path, names: dict[str, str], into: Path) -> None:
    """Each file of these distributions (by their RECORD), and its bytecode,
    from the shared install into `into` (hard links where possible)."""
    infos = {normalise(i.name[: -len(".dist-info")].rsplit("-", 1)[0]): i
             for i in shared.glob("*.dist-info")}
    for name, version in names.items():
        info = infos.get(name)
        if info is None or not info.name.endswith(f"-{version}.dist-info"):
            raise PackagingError(f"{name}=={version} is not in the shared install")
        for line in (info / "RECORD").read_text(encoding="utf-8").splitlines():
            relative = line.rsplit(",", 2)[0]
            if not relative or relative.startswith(".."):
                continue  # console scripts, outside the package
            source = shared / relative
            if not source.is_file():
                continue  # stripped
            _link(source, into / relative)
            if source.suffix == ".py":
                cached = Path(importlib.util.cache_from_source(str(source)))
                if cached.is_file():
                    _link(cached, into / cached.relative_to(shared))


def _link(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def build_function(function: Function, provider: Provider, out: Path, work: Path,
                   shared: dict[Libc, Shared], available: dict[str, str],
                   constraints: Path, libc: Libc | None = None) -> Built:
    """Builds dist/<provider>/<name>.zip for one function."""
    wanted = contents(function)
    layout = target(provider, function, libc)
    source = shared[layout.libc]
    tree = work / function.name
    shutil.rmtree(tree, ignore_errors=True)
    deps = tree / layout.deps_dir if layout.deps_dir else tree
    deps.mkdir(parents=True)
    scratch = work / "requirements" / function.name
    scratch.mkdir(parents=True, exist_ok=True)
    requirements = scratch / "requirements.txt"
    requirements.write_text(requirements_for(wanted.distributions, available, hashes=False),
                            encoding="utf-8")
    closure = resolve(requirements, constraints, layout.platforms, source.wheelhouse,
                      scratch / "report.json")
    link_distributions(source.deps, closure, deps)
    copied = project_files(wanted)
    for relative in copied:
        _copy(ROOT / relative, tree / relative)
    if wanted.chalice_runtime:
        for relative_name, origin in chalice_runtime_files().items():
            _copy(origin, tree / relative_name)
            copied.append(Path(relative_name))
    if layout.container:
        _copy(ROOT / "deploy" / "serve.py", tree / "serve.py")
        copied.append(Path("serve.py"))
        (tree / "Dockerfile").write_text(CONTAINERFILE, encoding="utf-8")
    compile_tree(tree, CODE_ROOT[provider], copied)
    problems = _check_tree(tree, deps, function, layout)
    destination = out / f"{function.name}.zip"
    write_zip(tree, destination)
    limits = LIMITS[provider]
    unzipped = sum(p.stat().st_size for p in _files(tree))
    zipped = destination.stat().st_size
    if unzipped > limits.max_unzipped_bytes:
        problems.append(f"unzipped {unzipped:,} B over the {limits.max_unzipped_bytes:,} B limit")
    if limits.max_zip_bytes is not None and zipped > limits.max_zip_bytes:
        problems.append(f"zip {zipped:,} B over the {limits.max_zip_bytes:,} B limit")
    direct = (zipped <= limits.direct_upload_max_zip_bytes
              if limits.direct_upload_max_zip_bytes is not None else None)
    return Built(
        name=function.name, zip=destination.name, handler=layout.handler, libc=layout.libc,
        platforms=list(layout.platforms), container=layout.container, zip_bytes=zipped,
        unzipped_bytes=unzipped, sha256=sha256_of(destination),
        distributions=[f"{name}=={version}" for name, version in sorted(closure.items())],
        limits={"max_zip_bytes": limits.max_zip_bytes,
                "max_unzipped_bytes": limits.max_unzipped_bytes,
                "direct_upload_max_zip_bytes": limits.direct_upload_max_zip_bytes},
        fits=not problems, problems=problems, direct_upload=direct)


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def _check_tree(tree: Path, deps: Path, function: Function, layout: Target) -> list[str]:
    """What would make the package wrong whatever its size."""
    problems = []
    if not (tree / handler_file(layout.handler, layout.provider)).is_file():
        problems.append(f"the handler {layout.handler} names no file of the package")
    engine = [d for d in installed_distributions(deps) if d.startswith(SCHEMATRON_ENGINE + "==")]
    if engine and function.name != CONFORMANCE_CHECK:
        problems.append(f"{SCHEMATRON_ENGINE} is in {function.name}: only "
                        f"{CONFORMANCE_CHECK} may hold it")
    if layout.provider == "scaleway":
        # Scaleway's runtime appends the handler's folder to sys.path and
        # imports the file by its bare name: nothing else may answer to it.
        stem = Path(handler_file(layout.handler, "scaleway")).stem
        for place in (tree, deps):
            if (place / f"{stem}.py").exists() or (place / stem).is_dir():
                problems.append(f"the handler module name {stem!r} is taken in "
                                f"{place.relative_to(tree.parent)}")
        if stem in sys.stdlib_module_names:
            problems.append(f"the handler module name {stem!r} is a standard library module")
    return problems


# ---------------------------------------------------------------- all of them

def build(provider: Provider, out: Path, *, requirements: Path = ROOT / "requirements.lock",
          libc: Libc | None = None, pip_cache: Path | None = None,
          only: Iterable[str] | None = None) -> list[Built]:
    """Every function's package for `provider` into `out`, and manifest.json."""
    if sys.version_info[:2] != (3, 11):
        raise PackagingError(f"bytecode is for the runtime's Python {PYTHON}: run this "
                             f"with Python {PYTHON}, not {sys.version.split()[0]}")
    chosen = [f for f in FUNCTIONS if only is None or f.name in set(only)]
    absent = [f"{f.name} ({path})" for f in chosen for path in sorted(set(handler_sources(f)))
              if not (ROOT / path).is_file()]
    if absent:
        raise PackagingError("no handler file for " + ", ".join(absent))
    out.mkdir(parents=True, exist_ok=True)
    available = pins(requirements)
    with tempfile.TemporaryDirectory(prefix=f"einvoice-package-{provider}-") as scratch:
        work = Path(scratch)
        # Every pin holds wherever its distribution lands, even pulled in by
        # another one (pip's own choice would be the newest).
        constraints = work / "constraints.txt"
        constraints.write_text(requirements_for(available, available, hashes=False),
                               encoding="utf-8")
        shared: dict[Libc, Shared] = {}
        for wanted_libc in sorted({target(provider, f, libc).libc for f in chosen}):
            users = [f for f in chosen if target(provider, f, libc).libc == wanted_libc]
            shared[wanted_libc] = prepare(provider, wanted_libc, users, available, constraints,
                                          work, pip_cache)

        def one(function: Function) -> Built:
            done = build_function(function, provider, out, work / "trees", shared, available,
                                  constraints, libc)
            shutil.rmtree(work / "trees" / function.name, ignore_errors=True)
            return done

        # Two at a time: compressing releases the GIL, and this is a 2-core machine.
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            built = list(pool.map(one, chosen))
    write_manifest(provider, out, built)
    return built


def prepare(provider: Provider, libc: Libc, users: list[Function], available: dict[str, str],
            constraints: Path, work: Path, pip_cache: Path | None) -> Shared:
    """One download, install, strip and compile of what these functions need."""
    names = [n for f in users for n in contents(f).distributions]
    union = work / f"requirements-{libc}.txt"
    union.write_text(requirements_for(names, available), encoding="utf-8")
    if _hash_args(union.read_text(encoding="utf-8")):
        # Hash-checking needs every distribution pip installs listed with its
        # hashes: the closure, resolved on the index, then taken from the file.
        closure = resolve(_without_hashes(union), constraints, PLATFORMS[libc], None,
                          work / f"closure-{libc}" / "report.json")
        union.write_text(requirements_for(closure, available), encoding="utf-8")
    wheelhouse = work / f"wheels-{libc}"
    download(union, constraints, PLATFORMS[libc], wheelhouse, pip_cache)
    deps_dir = target(provider, users[0], libc).deps_dir
    deps = work / f"shared-{libc}" / deps_dir if deps_dir else work / f"shared-{libc}"
    deps.mkdir(parents=True)
    install(_without_hashes(union), constraints, PLATFORMS[libc], wheelhouse, deps)
    strip(deps)
    compile_tree(deps, str(Path(CODE_ROOT[provider]) / deps_dir) if deps_dir
                 else CODE_ROOT[provider])
    return Shared(libc, wheelhouse, deps)


def _without_hashes(requirements: Path) -> Path:
    """The same pins without their hashes (checked once, at download)."""
    plain = requirements.with_name(requirements.stem + "-pins.txt")
    plain.write_text(requirements_for(pins(requirements), pins(requirements), hashes=False),
                     encoding="utf-8")
    return plain


def write_manifest(provider: Provider, out: Path, built: list[Built]) -> Path:
    path = out / "manifest.json"
    document = {"provider": provider, "python": PYTHON, "architecture": "x86_64",
                "functions": {b.name: asdict(b) for b in built}}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _report(built: list[Built]) -> str:
    lines = [f"{'function':<20} {'zip':>12} {'unzipped':>13}  fits"]
    for b in built:
        lines.append(f"{b.name:<20} {b.zip_bytes:>12,} {b.unzipped_bytes:>13,}  "
                     f"{'yes' if b.fits else 'NO: ' + '; '.join(b.problems)}")
    return "\n".join(lines)


def zip_distributions(package: Path) -> dict[str, str]:
    """Name -> version of every distribution a package zip holds (its
    *.dist-info/METADATA, at the root or under package/)."""
    from email.parser import HeaderParser

    found: dict[str, str] = {}
    with zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if parts[-1] != "METADATA" or not parts[-2].endswith(".dist-info") \
                    or len(parts) > 3:
                continue
            meta = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
            found[meta["Name"]] = meta["Version"]
    return found


def write_sboms(out: Path, built: list[Built], *, lock: Path) -> list[Path]:
    """One CycloneDX SBOM per package, `<name>.cdx.json` beside its zip."""
    from packaging.utils import canonicalize_name

    from deploy.supply_chain import lock_subset, write_sbom

    written = []
    with tempfile.TemporaryDirectory(prefix="einvoice-sbom-") as scratch:
        for b in built:
            names = {canonicalize_name(name): version
                     for name, version in zip_distributions(out / f"{b.name}.zip").items()}
            requirements = Path(scratch) / f"{b.name}.txt"
            requirements.write_text(lock_subset(names, lock), encoding="utf-8")
            written.append(write_sbom(requirements, out / f"{b.name}.cdx.json",
                                      component=(f"einvoice-{b.name}", b.sha256[:12]),
                                      lock=lock))
    return written


def audit_before_build(*, offline_audit: bool, locks: tuple[Path, ...] | None = None) -> bool:
    """The locks' vulnerability audit, printed; whether building may go on."""
    from deploy.audit import DEFAULT_LOCKS, EXIT_PASS, gate

    report = gate(offline_audit=offline_audit, locks=locks or DEFAULT_LOCKS)
    print(report.text())
    if report.exit_code != EXIT_PASS:
        print("deploy.package: the dependency audit did not pass: nothing built"
              + ("" if offline_audit else " (if the live service cannot be reached, "
                 "--offline-audit audits against the dated snapshot instead)"),
              file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("provider", choices=("aws", "scaleway"))
    parser.add_argument("--out", type=Path, help="default: dist/<provider>")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.lock",
                        help="pins (optionally with hashes) the packages install from")
    parser.add_argument("--offline-audit", action="store_true",
                        help="audit against the dated OSV snapshot, not the live service")
    parser.add_argument("--libc", choices=("glibc", "musl"),
                        help="Scaleway only: glibc builds a twin to run on a glibc machine")
    parser.add_argument("--pip-cache", type=Path, help="pip's cache folder (default: pip's)")
    parser.add_argument("--only", action="append", help="build only this function (repeatable)")
    args = parser.parse_args(argv)
    provider: Provider = args.provider
    out: Path = args.out or ROOT / "dist" / provider
    if not audit_before_build(offline_audit=args.offline_audit):
        return 3
    try:
        built = build(provider, out, requirements=args.requirements, libc=args.libc,
                      pip_cache=args.pip_cache, only=args.only)
        for sbom in write_sboms(out, built, lock=args.requirements):
            print(f"sbom: {sbom}")
    except (PackagingError, SupplyChainError) as error:
        print(f"deploy.package: {error}", file=sys.stderr)
        return 2
    print(_report(built))
    print(f"manifest: {out / 'manifest.json'}")
    return 0 if all(b.fits for b in built) else 1


if __name__ == "__main__":
    sys.exit(main())
