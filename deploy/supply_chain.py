"""A CycloneDX SBOM for each built package, made by cyclonedx-py (cyclonedx-bom,
in .venv-tools) from the package's hashed requirements, so each zip ships with
the exact list of what is inside it: name, version, purl and the locked hashes.

The packager calls write_sbom() once per package, either with the function's
requirements subset (hashed lines of requirements.lock) or with the folder it
installed them into; a folder is read back from its *.dist-info and must match
the lock exactly, so nothing unlocked slips into a zip.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from deploy.locks import ROOT, read_lock

TOOLS_BIN = ROOT / ".venv-tools" / "bin"
RUNTIME_LOCK = ROOT / "requirements.lock"
SPEC_VERSION = "1.6"


class SupplyChainError(Exception):
    """A tool is missing, a package holds something the lock does not, or an SBOM is invalid."""


def tool(name: str) -> Path:
    """A tool of .venv-tools; missing means bin/_ensure.sh has not run."""
    path = TOOLS_BIN / name
    if not path.exists():
        raise SupplyChainError(f"{path} is missing: bin/_ensure.sh (bin/test) installs .venv-tools")
    return path


def lock_subset(names: dict[NormalizedName, str], lock: Path = RUNTIME_LOCK) -> str:
    """The lock's hashed entries for these distributions, each at its locked version."""
    entries = read_lock(lock)
    lines = []
    for name, version in sorted(names.items()):
        entry = entries.get(canonicalize_name(name))
        if entry is None or entry.version != version:
            locked = entry.version if entry else "not locked"
            raise SupplyChainError(f"{name}=={version} is not what {lock.name} holds ({locked})")
        hashes = " \\\n".join(f"    --hash={h}" for h in sorted(entry.hashes))
        lines.append(f"{entry.name}=={entry.version} \\\n{hashes}\n")
    return "".join(lines)


def installed(target: Path) -> dict[NormalizedName, str]:
    """Each distribution a `pip install --target` folder holds, from its *.dist-info."""
    found: dict[NormalizedName, str] = {}
    for info in sorted(target.glob("*.dist-info")):
        meta = PathDistribution(info).metadata
        found[canonicalize_name(meta["Name"])] = meta["Version"]
    return found


def write_sbom(source: Path, out_path: Path, *, component: tuple[str, str] | None = None,
               lock: Path = RUNTIME_LOCK) -> Path:
    """Write the CycloneDX 1.6 JSON SBOM of `source` (a hashed requirements file, or an
    installed target folder checked against `lock`) to out_path, validated, byte-stable
    (no timestamp or serial number). `component` names the package: (name, version)."""
    with tempfile.TemporaryDirectory(prefix="einvoice-sbom-") as scratch:
        requirements = source
        if source.is_dir():
            requirements = Path(scratch) / "requirements.txt"
            requirements.write_text(lock_subset(installed(source), lock), encoding="utf-8")
        command = [str(tool("cyclonedx-py")), "requirements", str(requirements),
                   "--schema-version", SPEC_VERSION, "--output-format", "JSON",
                   "--output-reproducible", "--validate", "--outfile", str(out_path)]
        if component is not None:
            pyproject = Path(scratch) / "pyproject.toml"
            pyproject.write_text(f'[project]\nname = "{component[0]}"\n'
                                 f'version = "{component[1]}"\n', encoding="utf-8")
            command += ["--pyproject", str(pyproject)]
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise SupplyChainError(f"cyclonedx-py failed on {source}: {run.stderr.strip()}")
    validate_sbom(out_path)
    return out_path


_VALIDATE = """
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.from_version(sys.argv[2])).validate_str(
    open(sys.argv[1], encoding="utf-8").read())
if error:
    sys.exit(str(error)[:2000])
"""


def validate_sbom(path: Path) -> None:
    """Check the SBOM against the CycloneDX JSON schema (strict), with cyclonedx-python-lib."""
    run = subprocess.run([str(tool("python")), "-c", _VALIDATE, str(path), SPEC_VERSION],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SupplyChainError(f"{path} is not valid CycloneDX {SPEC_VERSION}: "
                               f"{run.stderr.strip()}")


def sbom_components(path: Path) -> dict[NormalizedName, dict[str, Any]]:
    """The SBOM's components by name: version, purl and the SHA-256 hashes it records."""
    document = json.loads(path.read_text(encoding="utf-8"))
    components: dict[NormalizedName, dict[str, Any]] = {}
    for item in document.get("components", []):
        hashes = {f"sha256:{h['content']}" for ref in item.get("externalReferences", [])
                  for h in ref.get("hashes", []) if h.get("alg") == "SHA-256"}
        components[canonicalize_name(item["name"])] = {
            "version": item.get("version"), "purl": item.get("purl"), "hashes": hashes}
    return components
