"""The ledger core: canonical entries, their hash chain, and its verification.

It knows nothing of invoices (the Trillian split): an entry is a `kind` and a
JSON object of business data. Byte layout of an entry's hash (format 1):

    hash = SHA-256( prev_hash                  32 bytes (genesis: 32 zero bytes)
                  || seq                       8 bytes, unsigned big-endian
                  || len(kind)                 4 bytes, unsigned big-endian
                  || kind                      ASCII, e.g. b"invoice.issued"
                  || len(payload)              4 bytes, unsigned big-endian
                  || payload )                 UTF-8 bytes of the canonical JSON

    payload = RFC 8785 (JCS) canonical JSON of {"at": T, "data": D, "v": 1}
      T: the time of recording, UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ"
      D: the business data; money and other decimals as strings, no floats
      v: the format version of the entry

Only business values are hashed, never database ids, so a dump/restore or a
migration keeps the chain valid. PostgreSQL recomputes the same hash on insert.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import rfc8785

from chalicelib.domain import canonical_json
from chalicelib.domain.errors import InvalidInput, Violation
from chalicelib.domain.text import text_problem

FORMAT_VERSION = 1
GENESIS_HASH = bytes(32)
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
PAYLOAD_MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
SAFE_INTEGER = canonical_json.SAFE_INTEGER  # I-JSON / RFC 8785 integer domain

_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_HEADER = struct.Struct(">Q")
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class ChainHead:
    """The last entry of a chain: its seq (0 for an empty chain) and hash."""

    seq: int
    hash: bytes


GENESIS = ChainHead(seq=0, hash=GENESIS_HASH)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    kind: str
    payload: str
    prev_hash: bytes
    hash: bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "payload": self.payload,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }


def entry_hash(prev_hash: bytes, seq: int, kind: str, payload: str) -> bytes:
    kind_bytes = kind.encode("utf-8")
    payload_bytes = payload.encode("utf-8")
    return hashlib.sha256(b"".join((prev_hash, _HEADER.pack(seq), _LENGTH.pack(len(kind_bytes)),
                                    kind_bytes, _LENGTH.pack(len(payload_bytes)),
                                    payload_bytes))).digest()


def utc_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Business data as plain JSON values, or InvalidInput naming every bad path.

    Decimals become decimal strings and aware datetimes UTC ISO-8601 strings;
    floats are refused (money is never binary floating point).
    """
    violations: list[Violation] = []
    normalised = _normalise(data, "payload", violations, depth=0)
    if violations:
        raise InvalidInput(violations)
    return dict(normalised)


def canonical_payload(data: dict[str, Any], recorded_at: datetime) -> str:
    """The hashed payload: RFC 8785 JSON of {"at", "data", "v"}."""
    text = rfc8785.dumps({"at": utc_timestamp(recorded_at), "data": data,
                          "v": FORMAT_VERSION}).decode("utf-8")
    if len(text.encode("utf-8")) > PAYLOAD_MAX_BYTES:
        raise InvalidInput([Violation("payload", f"must be at most {PAYLOAD_MAX_BYTES} "
                                      "bytes as canonical JSON")])
    return text


def same_data(entry: LedgerEntry, data: dict[str, Any]) -> bool:
    """Whether `entry` carries exactly `data` (canonical comparison: 1 != true)."""
    stored = json.loads(entry.payload)["data"]
    return bool(rfc8785.dumps(stored) == rfc8785.dumps(data))


def next_entry(head: ChainHead, kind: str, payload: str) -> LedgerEntry:
    seq = head.seq + 1
    return LedgerEntry(seq=seq, kind=kind, payload=payload, prev_hash=head.hash,
                       hash=entry_hash(head.hash, seq, kind, payload))


def _normalise(value: Any, path: str, violations: list[Violation], depth: int) -> Any:
    if depth > MAX_DEPTH:
        violations.append(Violation(path, f"nesting deeper than {MAX_DEPTH} levels"))
        return None
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            violations.extend(_text_violations(value, path))
        return value
    if isinstance(value, int):
        if abs(value) > SAFE_INTEGER:
            violations.append(Violation(path, "integers must be within ±(2^53-1); "
                                        "send larger numbers as decimal strings"))
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            violations.append(Violation(path, "must be a finite number"))
            return None
        return format(value, "f")
    if isinstance(value, float):
        violations.append(Violation(path, "non-integer JSON numbers are not accepted: "
                                    "send amounts as decimal strings such as \"12.50\""))
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            violations.append(Violation(path, "dates and times must be timezone-aware"))
            return None
        return utc_timestamp(value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                violations.append(Violation(path, "object keys must be strings"))
                continue
            violations.extend(_text_violations(key, f"{path} (key)"))
            result[key] = _normalise(item, f"{path}.{key}", violations, depth + 1)
        return result
    if isinstance(value, list | tuple):
        return [_normalise(item, f"{path}[{i}]", violations, depth + 1)
                for i, item in enumerate(value)]
    violations.append(Violation(path, f"a {type(value).__name__} is not a JSON value"))
    return None


def _text_violations(text: str, path: str) -> list[Violation]:
    problem = text_problem(text)
    return [Violation(path, problem)] if problem else []


class JSONFormatError(ValueError):
    """Valid-looking JSON that is ambiguous: a repeated key, NaN/Infinity, or
    (where refused) a non-integer number."""


def _refuse_float(text: str) -> object:
    raise JSONFormatError(f"non-integer number {text}")


def _refuse_constant(text: str) -> object:
    raise JSONFormatError(f"{text} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONFormatError(f"an object repeats the key {key!r}")
        result[key] = value
    return result


def strict_json(text: str, *, floats: bool) -> Any:
    """json.loads, refusing repeated keys and NaN/Infinity, and non-integer
    numbers unless `floats` (ValueError for text that is not JSON at all)."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant,
                      parse_float=None if floats else _refuse_float)


def payload_format_problem(payload: str) -> str | None:
    """Why `payload` is not a canonical format-1 envelope, or None.

    The hash proves a payload unchanged, not well formed: this catches what
    an engine-side check cannot see (repeated keys, floats, non-canonical
    text), should anything but this code have written an entry.
    """
    return payload_envelope(payload)[0]


def payload_envelope(payload: str) -> tuple[str | None, dict[str, Any]]:
    """(why `payload` is not a canonical format-1 envelope or None, the envelope
    parsed); canonical form is decided by canonical_json, which the offline
    verifier shares."""
    try:
        parsed = canonical_json.parse(payload)
    except canonical_json.NotCanonical as exc:
        return str(exc), {}
    if not isinstance(parsed, dict) or set(parsed) != {"at", "data", "v"}:
        return "not an {at, data, v} envelope", {}
    if parsed["v"] != FORMAT_VERSION or isinstance(parsed["v"], bool):
        return f"unknown format version {parsed['v']!r}", {}
    if not isinstance(parsed["at"], str) or not _TIMESTAMP_RE.match(parsed["at"]):
        return "recording time is not a UTC timestamp", {}
    if not isinstance(parsed["data"], dict):
        return "data is not a JSON object", {}
    return None, parsed


@dataclass(frozen=True)
class Verification:
    """The outcome of a chain check: ok, or the first broken seq and why."""

    ok: bool
    entries_checked: int
    head: ChainHead
    first_broken_seq: int | None = None
    # seq_gap | seq_out_of_order | prev_link_mismatch | hash_mismatch | non_canonical
    # (chain) and truncated | head_behind | head_mismatch (against the stored head)
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "last_seq": self.head.seq,
            "last_hash": self.head.hash.hex(),
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
            "detail": self.detail,
        }


def verify_chain(entries: Iterable[LedgerEntry], start: ChainHead = GENESIS,
                 observe: Callable[[LedgerEntry, dict[str, Any]], None] | None = None
                 ) -> Verification:
    """Check entries in seq order, from `start`, holding one entry at a time.

    `observe(entry, envelope)` is given each entry that passed, with its payload
    parsed (so a caller summing closings' totals parses nothing twice)."""
    expected_seq = start.seq + 1
    prev = start.hash
    checked = 0

    def broken(seq: int, reason: str, detail: str) -> Verification:
        return Verification(False, checked, ChainHead(expected_seq - 1, prev), seq, reason,
                            detail)

    for entry in entries:
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                return broken(expected_seq, "seq_gap", f"entry {expected_seq} is missing "
                              f"(the next stored entry is {entry.seq})")
            return broken(entry.seq, "seq_out_of_order",
                          f"entry {entry.seq} appears after entry {expected_seq - 1}")
        if entry.prev_hash != prev:
            return broken(entry.seq, "prev_link_mismatch",
                          f"entry {entry.seq} does not link to the hash of entry {entry.seq - 1}")
        if entry_hash(entry.prev_hash, entry.seq, entry.kind, entry.payload) != entry.hash:
            return broken(entry.seq, "hash_mismatch",
                          f"entry {entry.seq}: its stored hash does not match its content")
        problem, envelope = payload_envelope(entry.payload)
        if problem:
            return broken(entry.seq, "non_canonical", f"entry {entry.seq}: payload {problem}")
        if observe is not None:
            observe(entry, envelope)
        prev = entry.hash
        expected_seq += 1
        checked += 1
    return Verification(True, checked, ChainHead(expected_seq - 1, prev))
