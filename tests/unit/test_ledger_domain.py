"""The ledger core without any database: encoding, hashing, verification."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.ledger import (
    GENESIS,
    GENESIS_HASH,
    ChainHead,
    LedgerEntry,
    canonical_payload,
    entry_hash,
    next_entry,
    normalise_data,
    payload_format_problem,
    same_data,
    verify_chain,
)
from chalicelib.usecases.append_ledger import AppendRequest

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def chain(n: int, start: ChainHead = GENESIS) -> list[LedgerEntry]:
    entries, head = [], start
    for i in range(n):
        entry = next_entry(head, "invoice.issued",
                           canonical_payload({"number": f"F-{i}", "total": "10.00"}, AT))
        entries.append(entry)
        head = ChainHead(entry.seq, entry.hash)
    return entries


def test_hash_follows_the_documented_byte_layout() -> None:
    payload = canonical_payload({"total": "120.00"}, AT)
    expected = hashlib.sha256(
        bytes(32) + (1).to_bytes(8, "big")
        + len(b"invoice.issued").to_bytes(4, "big") + b"invoice.issued"
        + len(payload.encode()).to_bytes(4, "big") + payload.encode()).digest()
    assert entry_hash(GENESIS_HASH, 1, "invoice.issued", payload) == expected


def test_length_prefixes_make_the_encoding_unambiguous() -> None:
    # Without length prefixes, moving a byte from kind to payload would collide.
    assert entry_hash(GENESIS_HASH, 1, "a.bc", "{}") != entry_hash(GENESIS_HASH, 1, "a.b", "c{}")


def test_payload_is_rfc8785_envelope_with_version_and_utc_time() -> None:
    paris = timezone(timedelta(hours=1))
    payload = canonical_payload(normalise_data({"b": 1, "a": "é"}), AT.astimezone(paris))
    assert payload == '{"at":"2026-11-23T10:00:00.000000Z","data":{"a":"é","b":1},"v":1}'
    assert payload.encode() == rfc8785.dumps(json.loads(payload))


def test_money_as_decimal_becomes_a_decimal_string() -> None:
    assert normalise_data({"total": Decimal("120.50")}) == {"total": "120.50"}


def test_every_bad_value_is_named_by_its_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_data({
            "total": 12.5,
            "lines": [{"qty": 2**60}],
            "when": datetime(2026, 1, 1),
            "nan": Decimal("NaN"),
            "obj": object(),
            "text": "\ud800",
            "nul": "a\x00b",
            "nested": {"k\x00": 1},
        })
    fields = {v.field for v in caught.value.violations}
    assert fields == {"payload.total", "payload.lines[0].qty", "payload.when", "payload.nan",
                      "payload.obj", "payload.text", "payload.nul", "payload.nested (key)"}
    assert "decimal strings" in next(v.rule for v in caught.value.violations
                                     if v.field == "payload.total")


def test_oversized_payload_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        canonical_payload({"blob": "x" * (300 * 1024)}, AT)
    assert caught.value.violations[0].field == "payload"


def test_naive_recording_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        canonical_payload({}, datetime(2026, 1, 1))


@pytest.mark.parametrize("kind,ok", [
    ("note.added", True), ("customer.noted", True), ("note.changed_v2", True),
    ("status.changed", False),
    # The service's own namespaces: their use cases write them, never this path.
    ("invoice.issued", False), ("credit_note.issued", False), ("closing.sealed", False),
    ("quote.created", False), ("payment.received", False), ("invoice.cancelled", False),
    ("invoice", False), ("Invoice.Issued", False), ("invoice..issued", False),
    ("invoice.issued.", False), ("a." + "b" * 70, False), ("", False),
])
def test_kind_rule(kind: str, ok: bool) -> None:
    try:
        AppendRequest(tenant_id=uuid.uuid4(), kind=kind, payload={})
    except ValidationError:
        assert not ok
    else:
        assert ok


def test_same_data_is_canonical_not_python_equality() -> None:
    entry = chain(1)[0]
    assert same_data(entry, {"number": "F-0", "total": "10.00"})
    entry_true = next_entry(GENESIS, "a.b", canonical_payload({"x": True}, AT))
    assert not same_data(entry_true, {"x": 1})  # True == 1 in Python, not in JSON


def test_an_intact_chain_verifies() -> None:
    entries = chain(50)
    result = verify_chain(entries)
    assert result.ok and result.entries_checked == 50
    assert result.head == ChainHead(50, entries[-1].hash)


def test_verification_resumes_from_a_checkpoint() -> None:
    entries = chain(20)
    result = verify_chain(entries[10:], start=ChainHead(10, entries[9].hash))
    assert result.ok and result.entries_checked == 10


def test_tampered_payload_is_reported_at_its_seq() -> None:
    entries = chain(10)
    entries[6] = replace(entries[6], payload=entries[6].payload.replace("10.00", "99.00"))
    result = verify_chain(entries)
    assert (result.ok, result.first_broken_seq, result.reason) == (False, 7, "hash_mismatch")
    assert result.entries_checked == 6


def test_rehashed_entry_breaks_the_next_link() -> None:
    entries = chain(10)
    forged = next_entry(ChainHead(3, entries[2].hash), "invoice.issued",
                        canonical_payload({"number": "FORGED"}, AT))
    entries[3] = forged
    result = verify_chain(entries)
    assert (result.first_broken_seq, result.reason) == (5, "prev_link_mismatch")


def test_missing_entry_is_a_gap_at_the_missing_seq() -> None:
    entries = chain(10)
    del entries[4]
    result = verify_chain(entries)
    assert (result.first_broken_seq, result.reason) == (5, "seq_gap")


def test_duplicated_entry_is_out_of_order() -> None:
    entries = chain(5)
    entries.insert(3, entries[2])
    result = verify_chain(entries)
    assert (result.first_broken_seq, result.reason) == (3, "seq_out_of_order")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
def test_any_flipped_byte_is_located(n: int, data: st.DataObject) -> None:
    entries = chain(n)
    index = data.draw(st.integers(0, n - 1))
    field = data.draw(st.sampled_from(["payload", "kind", "hash", "prev_hash"]))
    entry = entries[index]
    value = getattr(entry, field)
    raw = value.encode() if isinstance(value, str) else value
    pos = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1:]
    new_value: Any = flipped.decode("latin-1") if isinstance(value, str) else flipped
    entries[index] = replace(entry, **{field: new_value})
    result = verify_chain(entries)
    assert not result.ok
    assert result.first_broken_seq == entry.seq


@pytest.mark.parametrize("data,problem", [
    ('{"total":12.5}', "non-integer number 12.5"),
    ('{"a":1,"a":2}', "repeats the key 'a'"),
    ('{"x":NaN}', "NaN is not JSON"),
    ('{"b":1,"a":2}', "not RFC 8785 canonical"),
    ('{"a": 1}', "not RFC 8785 canonical"),
    ('{"n":1e400}', "non-integer number"),
])
def test_verifier_flags_a_hashed_but_non_canonical_payload(data: str, problem: str) -> None:
    """What a compromised writer could chain with valid hashes is still reported."""
    entries = chain(3)
    forged = next_entry(ChainHead(3, entries[-1].hash), "invoice.issued",
                        '{"at":"2026-11-23T10:00:00.000000Z","data":' + data + ',"v":1}')
    result = verify_chain([*entries, forged])
    assert (result.first_broken_seq, result.reason) == (4, "non_canonical")
    assert result.detail is not None and problem in result.detail


@pytest.mark.parametrize("payload", [
    '{"at":"2026-11-23T10:00:00.000000Z","data":{},"v":2}',
    '{"at":"yesterday","data":{},"v":1}',
    '{"at":"2026-11-23T10:00:00.000000Z","data":[],"v":1}',
    '{"data":{},"v":1}',
    '[1]',
])
def test_verifier_flags_a_wrong_envelope(payload: str) -> None:
    forged = next_entry(GENESIS, "invoice.issued", payload)
    assert verify_chain([forged]).reason == "non_canonical"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_fast_canonical_check_agrees_with_rfc8785(data: dict[str, object]) -> None:
    """The verifier's fast path must accept exactly what rfc8785 produces and
    refuse anything else (any Unicode, including keys beyond the BMP)."""
    envelope: Any = {"at": "2026-11-23T10:00:00.000000Z", "data": data, "v": 1}
    try:
        canonical = rfc8785.dumps(envelope).decode("utf-8")
    except rfc8785.CanonicalizationError:
        return  # e.g. an integer beyond 2^53: covered below
    if "\\u0000" in canonical.replace("\\\\", ""):  # U+0000: PostgreSQL cannot store it
        assert payload_format_problem(canonical) is not None
        return
    assert payload_format_problem(canonical) is None
    pretty = json.dumps(envelope, ensure_ascii=False, sort_keys=False, indent=1)
    if pretty != canonical:
        assert payload_format_problem(pretty) is not None


def test_keys_beyond_the_bmp_are_ordered_as_rfc8785_says() -> None:
    data = {"\U0001f600": 1, "\uff61": 2}  # UTF-16 order differs from code point order
    canonical = rfc8785.dumps({"at": "2026-11-23T10:00:00.000000Z", "data": data, "v": 1})
    assert payload_format_problem(canonical.decode()) is None
    python_order = json.dumps({"at": "2026-11-23T10:00:00.000000Z", "data": data, "v": 1},
                              ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert python_order != canonical.decode()
    assert payload_format_problem(python_order) == "not RFC 8785 canonical JSON"


def test_integers_beyond_2_pow_53_are_not_canonical() -> None:
    payload = '{"at":"2026-11-23T10:00:00.000000Z","data":{"n":9007199254740993},"v":1}'
    assert payload_format_problem(payload) is not None
