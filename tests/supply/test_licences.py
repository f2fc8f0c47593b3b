"""The licence check: every runtime dependency (and only those) is on the
allow-list, copyleft ones by name with a reason; an unknown, unlisted or changed
licence fails; the allow-list cannot smuggle a copyleft licence in as permissive."""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy.licences import POLICY, check_licences, judge, load_policy
from deploy.locks import ROOT, read_lock
from deploy.supply_chain import SupplyChainError

COPYLEFT_RUNTIME = {"certifi", "saxonche", "opentimestamps", "python-bitcoinlib",
                    "python-stdnum", "pycountry"}


def test_every_runtime_dependency_has_an_allowed_licence() -> None:
    results = check_licences(Path(sys.executable))
    assert [r for r in results if r.refused] == []
    assert {r.package for r in results} == set(read_lock(ROOT / "requirements.lock"))
    assert "pytest" not in {r.package for r in results}  # dev tools are not checked
    accepted = {r.package for r in results if r.verdict.startswith("accepted")}
    assert accepted == COPYLEFT_RUNTIME


def test_each_copyleft_dependency_is_named_with_its_reason() -> None:
    data = tomllib.loads(POLICY.read_text(encoding="utf-8"))
    for item in data["accepted"]:
        assert len(item["reason"]) > 40, item["package"]
        assert "unmodified" in item["reason"] or "as shipped" in item["reason"]
    saxon = load_policy().accepted[canonicalize_name("saxonche")]
    assert saxon.licence == "UNKNOWN" and saxon.actual == "MPL-2.0"


def test_unknown_unlisted_and_changed_licences_are_refused() -> None:
    policy = load_policy()
    name = canonicalize_name
    assert judge(name("newlib"), "UNKNOWN", policy).startswith("REFUSED: unknown")
    assert judge(name("newlib"), "", policy).startswith("REFUSED: unknown")
    assert "allow-list" in judge(name("newlib"), "GNU General Public License v3 (GPLv3)", policy)
    assert "allow-list" in judge(name("newlib"), "MIT License; Eclipse Public License 2.0", policy)
    assert judge(name("newlib"), "MIT License; BSD License", policy) == "permissive"
    changed = judge(name("python-stdnum"), "GNU General Public License v2 (GPLv2)", policy)
    assert changed.startswith("REFUSED") and "review it again" in changed


def test_the_real_check_fails_when_an_accepted_entry_is_removed(tmp_path: Path) -> None:
    text = POLICY.read_text(encoding="utf-8")
    start = text.index('[[accepted]]\npackage = "certifi"')
    end = text.index("[[accepted]]", start + 1)
    policy = tmp_path / "licences.toml"
    policy.write_text(text[:start] + text[end:], encoding="utf-8")
    refused = [r for r in check_licences(Path(sys.executable), policy_path=policy) if r.refused]
    assert [r.package for r in refused] == ["certifi"]
    assert "Mozilla Public License 2.0" in refused[0].verdict


def test_copyleft_cannot_be_listed_as_permissive(tmp_path: Path) -> None:
    policy = tmp_path / "licences.toml"
    policy.write_text('permissive = ["MIT", "GNU Lesser General Public License v3 (LGPLv3)"]\n',
                      encoding="utf-8")
    with pytest.raises(SupplyChainError, match="may not be permissive"):
        load_policy(policy)
    policy.write_text('permissive = ["MPL-2.0"]\n', encoding="utf-8")
    with pytest.raises(SupplyChainError, match="may not be permissive"):
        load_policy(policy)


def test_our_licence_is_the_standard_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == (
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30")
    assert b"Apache License\n                           Version 2.0, January 2004" in text


def test_the_supply_chain_doc_credits_the_advisory_snapshot() -> None:
    doc = " ".join((ROOT / "docs" / "deploy" / "supply-chain.md").read_text().split())
    for needed in ("dated 2024-10-10", "CC-BY 4.0", "Advisories published after 2024-10-10 are"
                   " not seen", "bin/lock", "--offline-audit", "PyPA Advisory Database"):
        assert needed in doc, needed
