"""The export writes entries.jsonl's lines by hand for speed (chalicelib/audit/bundle.py);
they must stay byte for byte what `json.dumps(..., ensure_ascii=False, separators=(",",
":"))` writes, whatever the text: quotes, backslashes, control characters, non-ASCII."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.audit.bundle import _entry_line
from chalicelib.domain.ledger import LedgerEntry


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(min_value=1, max_value=2**63 - 1), kind=st.text(max_size=40),
       payload=st.text(max_size=300), prev_hash=st.binary(min_size=32, max_size=32),
       digest=st.binary(min_size=32, max_size=32))
def test_an_entry_line_is_what_json_dumps_writes(seq: int, kind: str, payload: str,
                                                 prev_hash: bytes, digest: bytes) -> None:
    entry = LedgerEntry(seq=seq, kind=kind, payload=payload, prev_hash=prev_hash, hash=digest)
    expected = json.dumps(entry.as_dict(), ensure_ascii=False, separators=(",", ":"))
    assert _entry_line(entry) == expected.encode("utf-8") + b"\n"


def test_an_entry_line_escapes_what_json_must() -> None:
    entry = LedgerEntry(seq=7, kind="invoice.issued", payload='{"a":"\\"\n\x00é\u2028"}',
                        prev_hash=bytes(32), hash=b"\xff" * 32)
    line = _entry_line(entry)
    assert json.loads(line) == entry.as_dict()
    assert b"\\u0000" in line and b"\\n" in line and "é\u2028".encode() in line
