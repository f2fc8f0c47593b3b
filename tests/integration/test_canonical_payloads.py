"""One table of payload texts, and whether each is the canonical RFC 8785 text of
the ledger's JSON subset; the engine (migration 0023), the online verifier
(verify_chain) and the offline verifier (verify-bundle) must each give exactly
the table's verdict, and `rfc8785` (the library the app writes payloads with) is
the oracle the table itself is checked against. Before 0023 the engine took every
text, and verify-bundle every one that parsed as JSON."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import rfc8785
from pg8000.exceptions import DatabaseError

from chalicelib.audit.verify import entry_hash, verify_bundle
from chalicelib.domain.ledger import GENESIS, next_entry, verify_chain
from tests.conftest import Connect, in_tenant

AT = "2026-11-23T10:00:00.000000Z"


def envelope(data: str) -> str:
    return '{"at":"' + AT + '","data":' + data + ',"v":1}'


# (name, payload text, canonical?)
TABLE: list[tuple[str, str, bool]] = [
    ("plain", envelope('{"a":1,"b":"x"}'), True),
    ("empty data", envelope("{}"), True),
    ("nested", envelope('{"a":[1,{"b":null,"c":true}],"d":false,"e":{},"f":[]}'), True),
    ("space after a colon", envelope('{"a": 1}'), False),
    ("space in an array", envelope('{"a":[1, 2]}'), False),
    ("leading space", " " + envelope("{}"), False),
    ("trailing newline", envelope("{}") + "\n", False),
    ("keys out of order", envelope('{"b":1,"a":2}'), False),
    ("envelope out of order", '{"data":{},"at":"' + AT + '","v":1}', False),
    ("astral before U+FF61 (UTF-16 order)", envelope('{"\U0001f600":1,"\uff61":2}'), True),
    ("U+FF61 before astral (code point order)", envelope('{"\uff61":2,"\U0001f600":1}'), False),
    ("BMP keys in code point order", envelope('{"Z":1,"a":2,"\u00e9":3}'), True),
    ("\\u escape of a letter", envelope('{"a":"\\u0041"}'), False),
    ("\\u escape of é", envelope('{"a":"\\u00e9"}'), False),
    ("é as itself", envelope('{"a":"\u00e9"}'), True),
    ("\\u escape of DEL", envelope('{"a":"\\u007f"}'), False),
    ("DEL as itself", envelope('{"a":"\x7f"}'), True),
    ("U+2028 as itself", envelope('{"a":"\u2028"}'), True),
    ("\\/ escape", envelope('{"a":"\\/"}'), False),
    ("required \\u001f", envelope('{"a":"\\u001f"}'), True),
    ("uppercase \\u001F", envelope('{"a":"\\u001F"}'), False),
    ("raw U+001F", envelope('{"a":"\x1f"}'), False),
    ("short \\n", envelope('{"a":"\\n"}'), True),
    ("long \\u000a", envelope('{"a":"\\u000a"}'), False),
    ("quote and backslash", envelope('{"a":"\\"\\\\"}'), True),
    ("\\u0000 (not storable text)", envelope('{"a":"\\u0000"}'), False),
    ("zero", envelope('{"a":0}'), True),
    ("-0", envelope('{"a":-0}'), False),
    ("2^53-1", envelope('{"a":9007199254740991}'), True),
    ("-(2^53-1)", envelope('{"a":-9007199254740991}'), True),
    ("2^53", envelope('{"a":9007199254740992}'), False),
    ("2^53+1", envelope('{"a":9007199254740993}'), False),
    ("-(2^53)", envelope('{"a":-9007199254740992}'), False),
    ("a float", envelope('{"a":1.5}'), False),
    ("1.0", envelope('{"a":1.0}'), False),
    ("1e2", envelope('{"a":1e2}'), False),
    ("1E2", envelope('{"a":1E2}'), False),
    ("leading zero", envelope('{"a":01}'), False),
    ("repeated key", envelope('{"a":1,"a":1}'), False),
    ("repeated envelope key", '{"at":"' + AT + '","data":{},"v":1,"v":1}', False),
    ("lone high surrogate", envelope('{"a":"\\ud800"}'), False),
    ("lone low surrogate", envelope('{"a":"\\udc00x"}'), False),
    ("escaped surrogate pair", envelope('{"a":"\\ud83d\\ude00"}'), False),
    ("astral as itself", envelope('{"a":"\U0001f600"}'), True),
    ("NaN", envelope('{"a":NaN}'), False),
    ("not JSON", envelope('{"a":}'), False),
]
IDS = [name for name, _, _ in TABLE]


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("repeated key")
    return dict(pairs)


def _no(text: str) -> Any:
    raise ValueError(text)


def _has_nul(value: Any) -> bool:
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return isinstance(value, str) and "\x00" in value


def oracle(text: str) -> bool:
    """rfc8785's verdict on the ledger's subset: no repeated key, no non-integer
    number (amounts are strings), no U+0000 (not storable); then canonical iff
    the library writes exactly this text."""
    try:
        parsed = json.loads(text, object_pairs_hook=_unique, parse_float=_no,
                            parse_constant=_no)
    except ValueError:
        return False
    if _has_nul(parsed):
        return False
    try:
        return bool(rfc8785.dumps(parsed) == text.encode("utf-8"))
    except rfc8785.CanonicalizationError:
        return False


@pytest.mark.parametrize(("text", "canonical"), [(t, c) for _, t, c in TABLE], ids=IDS)
def test_the_table_agrees_with_rfc8785(text: str, canonical: bool) -> None:
    assert oracle(text) is canonical


@pytest.mark.parametrize(("text", "canonical"), [(t, c) for _, t, c in TABLE], ids=IDS)
def test_the_online_verifier_gives_the_tables_verdict(text: str, canonical: bool) -> None:
    result = verify_chain([next_entry(GENESIS, "audit.note", text)])
    assert result.ok is canonical
    if not canonical:
        assert (result.reason, result.first_broken_seq) == ("non_canonical", 1)


def one_entry_bundle(folder: Path, payload: str) -> Path:
    """A bundle holding one audit.note entry with this payload, all else consistent."""
    folder.mkdir()
    digest = entry_hash(bytes(32), 1, "audit.note", payload)
    entry = {"seq": 1, "kind": "audit.note", "payload": payload, "prev_hash": "00" * 32,
             "hash": digest.hex()}
    files = {"entries.jsonl": json.dumps(entry) + "\n", "closings.jsonl": "",
             "keys.json": '{"keys":[]}', "proofs.jsonl": "", "anchors.jsonl": ""}
    for name, text in files.items():
        (folder / name).write_text(text, "utf-8")
    manifest = {"format": "einvoice-audit-bundle", "version": 1, "tenant_id": str(uuid.uuid4()),
                "exported_at": AT, "entries": 1, "closings": 0,
                "head": {"seq": 1, "hash": digest.hex()},
                "inclusion_proofs": {"kinds": ["invoice.issued", "credit_note.issued"],
                                     "through_seq": 0, "count": 0},
                "files": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                          for name in files}}
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return folder


@pytest.mark.parametrize(("text", "canonical"), [(t, c) for _, t, c in TABLE], ids=IDS)
def test_the_offline_verifier_gives_the_tables_verdict(
        text: str, canonical: bool, tmp_path: Path) -> None:
    report = verify_bundle(one_entry_bundle(tmp_path / "bundle", text))
    assert report.ok is canonical, report.problem
    if not canonical:
        assert report.problem is not None and report.problem.startswith("entry 1: payload: ")


def test_the_engine_gives_the_tables_verdict(as_app: Connect, tenant: uuid.UUID) -> None:
    """As the app role, each payload appended in a savepoint (then rolled back)."""
    conn: pg8000.native.Connection = in_tenant(as_app, tenant)
    verdicts = {}
    try:
        for name, text, _ in TABLE:
            conn.run("SAVEPOINT one")
            try:
                conn.run("SELECT * FROM ledger_append('audit.note', :p, NULL)", p=text)
                verdicts[name] = True
            except DatabaseError as refused:
                # 23514: a CHECK (0023's, or the envelope's on text it cannot read);
                # 22P02 / 22P05: text that is not JSON, or that jsonb cannot hold
                assert refused.args[0]["C"] in ("23514", "22P02", "22P05"), refused
                verdicts[name] = False
            conn.run("ROLLBACK TO SAVEPOINT one")
    finally:
        conn.close()
    assert verdicts == {name: canonical for name, _, canonical in TABLE}
