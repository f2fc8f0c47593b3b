"""Every ledger kind name the service writes is spelt once, in domain/kinds.py
(the offline verifier keeps its own copy, in verify.py and the standard-library
closing_totals.py it shares with the online verifier, so that it needs no other module)."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from chalicelib.audit import verify
from chalicelib.domain import closing_totals, kinds, witness

ROOT = Path(__file__).resolve().parents[2]
NAMES = {kinds.INVOICE_ISSUED, kinds.CREDIT_NOTE_ISSUED, kinds.INVOICE_ARCHIVED,
         kinds.QUOTE_CREATED, kinds.QUOTE_CONVERTED, kinds.CLOSING_SEALED}
SPELT_HERE = {ROOT / "chalicelib" / "domain" / "kinds.py",
              ROOT / "chalicelib" / "audit" / "verify.py",
              ROOT / "chalicelib" / "domain" / "closing_totals.py"}


def test_the_verifier_names_the_same_kinds() -> None:
    assert verify.SEALED == kinds.CLOSING_SEALED
    assert verify.MONEY_KINDS == kinds.MONEY_KINDS
    assert closing_totals.MONEY_KINDS == kinds.MONEY_KINDS


def test_witness_keys_take_the_witness_kinds() -> None:
    tenant = uuid.UUID(int=1)
    assert witness.witness_key(tenant, 7, kinds.WITNESS_OF_HEAD).endswith("-head.json")
    assert witness.witness_key(tenant, 7, kinds.WITNESS_OF_CLOSING).endswith("-closing.json")
    with pytest.raises(ValueError):
        witness.witness_key(tenant, 7, kinds.CLOSING_SEALED)


def test_no_other_python_file_spells_a_kind_name() -> None:
    spelt = []
    for path in sorted([*(ROOT / "chalicelib").rglob("*.py"), *(ROOT / "bench").rglob("*.py"),
                        *(ROOT / "functions").rglob("*.py"), ROOT / "app.py"]):
        if path in SPELT_HERE or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in NAMES:
                spelt.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert spelt == []
