"""The SBOM of a package: valid CycloneDX 1.6 JSON (checked against the schema),
listing exactly the pinned components with version, purl and the locked hashes,
the same bytes on every run; from a requirements subset or an installed folder,
which must hold nothing the lock does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy.locks import ROOT, read_lock
from deploy.supply_chain import (
    SupplyChainError,
    lock_subset,
    sbom_components,
    validate_sbom,
    write_sbom,
)

PICK = {canonicalize_name(n): "" for n in ("pyotp", "rfc8785", "annotated-types")}


@pytest.fixture
def subset(tmp_path: Path) -> Path:
    locked = read_lock(ROOT / "requirements.lock")
    path = tmp_path / "requirements-health.txt"
    path.write_text(lock_subset({n: locked[n].version for n in PICK}), encoding="utf-8")
    return path


def test_the_sbom_lists_exactly_the_pinned_components(tmp_path: Path, subset: Path) -> None:
    out = write_sbom(subset, tmp_path / "health.cdx.json", component=("einvoice-health", "1.0"))
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["name"] == "einvoice-health"
    locked = read_lock(ROOT / "requirements.lock")
    components = sbom_components(out)
    assert set(components) == set(PICK)
    for name, item in components.items():
        assert item["version"] == locked[name].version
        assert item["purl"] == f"pkg:pypi/{name}@{locked[name].version}"
        assert item["hashes"] == set(locked[name].hashes)


def test_the_sbom_is_the_same_bytes_on_every_run(tmp_path: Path, subset: Path) -> None:
    first = write_sbom(subset, tmp_path / "a.json").read_bytes()
    assert write_sbom(subset, tmp_path / "b.json").read_bytes() == first


def test_an_invalid_sbom_is_refused(tmp_path: Path, subset: Path) -> None:
    out = write_sbom(subset, tmp_path / "sbom.json")
    document = json.loads(out.read_text(encoding="utf-8"))
    document["components"][0]["type"] = "no-such-type"
    out.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(SupplyChainError, match="not valid CycloneDX"):
        validate_sbom(out)


def test_an_installed_folder_is_read_back_and_checked_against_the_lock(
        tmp_path: Path, subset: Path) -> None:
    target = tmp_path / "package"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--require-hashes", "--target", str(target), "-r", str(subset)],
                   check=True, capture_output=True, timeout=300)
    components = sbom_components(write_sbom(target, tmp_path / "sbom.json"))
    assert set(components) == set(PICK)
    assert all(item["hashes"] for item in components.values())

    stray = target / "evil-1.0.dist-info"
    stray.mkdir()
    (stray / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
                                    encoding="utf-8")
    with pytest.raises(SupplyChainError, match=r"evil==1.0 is not what requirements.lock holds"):
        write_sbom(target, tmp_path / "sbom2.json")


def test_a_version_the_lock_does_not_hold_is_refused() -> None:
    with pytest.raises(SupplyChainError, match=r"pyotp==0\.1 is not"):
        lock_subset({canonicalize_name("pyotp"): "0.1"})
