"""Offline verifier of an audit bundle (format 1), for auditors.

Imports the standard library, `cryptography` (Ed25519) and three modules of
chalicelib/domain that are standard library only: merkle.py, canonical_json.py
(RFC 8785 form) and closing_totals.py (a closing's sequence and totals, shared
with the online verifier), and chalicelib/audit/anchors.py (the anchors'
readers); these five files are all an auditor needs to run it. It trusts
nothing in the bundle but the mathematics; keys.json is checked against the
key ids, and `trusted_keys` pins the service's keys when the auditor has them
from elsewhere.

One pass over entries.jsonl, in bounded memory: closings.jsonl (small) is read
first to know at which entries a snapshot is needed (Merkle root, entry hash,
cumulative totals); proofs.jsonl is read alongside the entries (inclusion
proofs come in entry order, so each leaf hash is at hand when its proof is
read). Problems are reported in this order, the first one only: keys.json and
closings.jsonl well formed; then, entry by entry, the chain and each closing at
its entry; then the head and counts of the manifest; then the proofs; last
the SHA-256 of each file against the manifest (so a byte changed inside an
entry is named as that entry, not as a file).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from chalicelib.audit import anchors
from chalicelib.domain import canonical_json, closing_totals, merkle

FORMAT = "einvoice-audit-bundle"
VERSION = 1
FILES = ("entries.jsonl", "closings.jsonl", "keys.json", "proofs.jsonl", "anchors.jsonl")
# The ledger kinds of chalicelib/domain/kinds.py, spelt again so that this file needs no
# other module of ours (a unit test keeps the two equal).
SEALED = "closing.sealed"
MONEY_KINDS = closing_totals.MONEY_KINDS
PERIOD_KINDS = closing_totals.PERIOD_KINDS
ZERO_HASH = bytes(32)
PROGRESS_THRESHOLD = 10_000
# Input bounds, generous for real bundles (an entry is a few KB; manifest.json and
# keys.json are read whole, so they are bounded as one line is): a longer line, or a
# member (or file) whose declared or actual size is larger, is refused before it
# costs memory or hours.
MAX_LINE_BYTES = 1 << 20  # 1 MiB
MAX_MEMBER_BYTES = 16 << 30  # 16 GiB: about eight million entries of 2 KB

_ENTRY_FIELDS = {"seq", "kind", "payload", "prev_hash", "hash"}
_CLOSING_RECORD_FIELDS = {"id", "kind", "period_start", "first_seq", "last_seq", "entry_seq",
                          "closing", "signature", "key_id"}
_HEX = re.compile(r"[0-9a-f]*")
_KEY_ID = re.compile(r"ed25519:[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_SEQ = struct.Struct(">Q")
_LENGTH = struct.Struct(">I")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Report:
    """The verdict: ok, or the first problem found, named precisely."""

    ok: bool
    problem: str | None = None
    entries: int = 0
    closings: int = 0
    proofs: int = 0
    head_seq: int = 0
    head_hash: str = ZERO_HASH.hex()
    notes: tuple[str, ...] = ()  # what stayed unverified (anchors.py), one line each

    def summary(self) -> str:
        if self.ok:
            return "\n".join((f"OK: {self.entries} entries, {self.closings} closings, "
                              f"{self.proofs} proofs; head {self.head_hash}", *self.notes))
        return f"FAIL: {self.problem}"


class BundleProblem(Exception):
    """The first problem found in a bundle."""


def _fail(message: str) -> NoReturn:
    raise BundleProblem(message)


# --- JSON, strictly: no repeated key, no NaN/Infinity, no non-integer number --------------
class _JSONProblem(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONProblem(f"repeats the key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise _JSONProblem(f"holds the non-integer number {text}")


def _no_constant(text: str) -> Any:
    raise _JSONProblem(f"holds {text}, which is not JSON")


_STRICT = json.JSONDecoder(object_pairs_hook=_unique, parse_float=_no_float,
                           parse_constant=_no_constant)  # built once, not per line


def _json(text: str | bytes, what: str) -> Any:
    try:
        return _STRICT.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except _JSONProblem as exc:
        _fail(f"{what}: {exc}")
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        _fail(f"{what}: not valid JSON")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hex(value: Any, size: int) -> bytes | None:
    """The bytes of a lowercase hex string of `size` bytes, or None."""
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def _hex_hashes(values: list[Any]) -> list[bytes] | None:
    """_hex(v, 32) of each value, or None if one is not: decoded in one call (a proof
    per entry, about 17 hashes each). bytes.fromhex(t).hex() == t holds exactly for
    lowercase hex without spaces, _hex's rule; each value is 64 characters."""
    try:
        text = "".join(values)  # TypeError unless every value is a str
        raw = bytes.fromhex(text)
    except (TypeError, ValueError):
        return None
    if set(map(len, values)) - {64}:
        return None
    if raw.hex() != text:
        return None
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


def _object(value: Any, fields: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{what}: not a JSON object")
    if set(value) != fields:
        missing, extra = sorted(fields - set(value)), sorted(set(value) - fields)
        _fail(f"{what}: " + "; ".join(
            ([f"misses {', '.join(missing)}"] if missing else [])
            + ([f"has unknown {', '.join(extra)}"] if extra else [])))
    return value


def entry_hash(prev_hash: bytes, seq: int, kind: str, payload: str) -> bytes:
    """The ledger's hash (format 1): SHA-256(prev_hash || seq:u64be || len(kind):u32be ||
    kind || len(payload):u32be || payload), texts as UTF-8."""
    k, p = kind.encode("utf-8"), payload.encode("utf-8")
    return hashlib.sha256(prev_hash + _SEQ.pack(seq) + _LENGTH.pack(len(k)) + k
                          + _LENGTH.pack(len(p)) + p).digest()


def key_id_for(public_key: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:32]


# --- the bundle's files: a folder or a .zip, each file hashed as it is read ----------------
class _Bundle:
    def __init__(self, path: Path, max_line: int = MAX_LINE_BYTES,
                 max_member: int = MAX_MEMBER_BYTES) -> None:
        self.digests: dict[str, str] = {}
        self.max_line, self.max_member = max_line, max_member
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_dir():
            self._dir = path
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                _fail(f"{path}: neither a bundle folder nor a .zip")
            self._dir = path
            self._zip = zipfile.ZipFile(path)
            _check_members(self._zip.infolist(), max_member)
            names = [n for n in self._zip.namelist()
                     if n == "manifest.json" or (n.endswith("/manifest.json")
                                                 and n.count("/") == 1)]
            if len(names) != 1:
                _fail(f"{path}: the .zip holds no manifest.json (at its root or in one folder)")
            self._prefix = names[0][: -len("manifest.json")]
        else:
            _fail(f"{path}: no such folder or file")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _open(self, name: str) -> IO[bytes]:
        try:
            if self._zip is not None:
                return self._zip.open(self._prefix + name)
            return (self._dir / name).open("rb")
        except (KeyError, FileNotFoundError):
            _fail(f"file {name}: missing from the bundle")
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile) as exc:  # encrypted...
            _fail(f"file {name}: cannot be read from the .zip ({exc})")

    def read(self, name: str) -> bytes:
        """A file read whole (manifest.json, keys.json): bounded as one line is."""
        chunks, size = [], 0
        with self._open(name) as f:  # in chunks: read(n) would allocate n bytes at once
            while size <= self.max_line and (chunk := f.read(1 << 16)):
                chunks.append(chunk)
                size += len(chunk)
        data = b"".join(chunks)
        if len(data) > self.max_line:
            _fail(f"file {name}: larger than {self.max_line} bytes")
        self.digests[name] = hashlib.sha256(data).hexdigest()
        return data

    def lines(self, name: str) -> Iterator[tuple[int, bytes]]:
        """(line number from 1, raw bytes without the newline), each at most `max_line`
        bytes and the file at most `max_member`; the file's SHA-256 is recorded once it
        has been read to its end."""
        digest = hashlib.sha256()
        size = 0
        with self._open(name) as raw:
            number = 0
            while line := raw.readline(self.max_line + 1):
                number += 1
                if len(line) > self.max_line:
                    _fail(f"file {name}: line {number} is longer than {self.max_line} bytes")
                size += len(line)
                if size > self.max_member:
                    _fail(f"file {name}: larger than {self.max_member} bytes")
                digest.update(line)
                yield number, line.rstrip(b"\n")
        self.digests[name] = digest.hexdigest()

    def digest(self, name: str) -> str:
        if name not in self.digests:
            digest = hashlib.sha256()
            size = 0
            with self._open(name) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    size += len(chunk)
                    if size > self.max_member:
                        _fail(f"file {name}: larger than {self.max_member} bytes")
                    digest.update(chunk)
            self.digests[name] = digest.hexdigest()
        return self.digests[name]


def _check_members(members: list[zipfile.ZipInfo], max_member: int) -> None:
    """Refuse a .zip that tools would unpack differently from what is verified: a
    name given twice (this reads the last, `unzip` extracts the first), or one that
    escapes the folder it is unpacked in; and a member declared larger than the bound."""
    seen: set[str] = set()
    for info in members:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if (name.startswith("/") or "\\" in name or "\0" in name or _DRIVE.match(name)
                or any(part in ("", ".", "..") for part in parts)):
            _fail(f".zip member {name!r}: not a plain relative name (absolute, '..', "
                  "backslash or drive letter)")
        if name.casefold() in seen:
            _fail(f".zip member {name!r}: its name is given twice")
        seen.add(name.casefold())
        if info.file_size > max_member:
            _fail(f".zip member {name!r}: declares {info.file_size} bytes, more than "
                  f"{max_member}")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"{what}: not UTF-8")


# --- state at the entries where a closing begins or ends ----------------------------------
@dataclass(frozen=True)
class _Snapshot:
    root: bytes
    hash: bytes
    tally: closing_totals.Tally


@dataclass(frozen=True)
class _ClosingRecord:
    line: int
    entry_seq: int
    first_seq: int
    last_seq: int
    fields: dict[str, Any]
    size: int | None  # merkle size and root as the text claims them (for the proofs)
    root: bytes | None


class _Verifier:
    def __init__(self, bundle: _Bundle, progress: bool, threshold: int,
                 trusted_keys: set[str] | None) -> None:
        self.bundle = bundle
        self.progress = progress
        self.threshold = threshold
        self.trusted = trusted_keys
        self.tenant = ""
        self.manifest: dict[str, Any] = {}
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.records: list[_ClosingRecord] = []
        self.boundaries: set[int] = set()
        self.snapshots = {0: _Snapshot(merkle.EMPTY_ROOT, ZERO_HASH,
                                       closing_totals.Running().snapshot())}
        self.previous = closing_totals.Sequence()
        self.proof_problem: str | None = None
        self.proofs = 0
        self.tsa_certificates: Sequence[x509.Certificate] = ()
        self.notes: tuple[str, ...] = ()

    # -- the small files, read before the entries ------------------------------------------
    def read_manifest(self) -> None:
        manifest = _json(self.bundle.read("manifest.json"), "manifest.json")
        if not isinstance(manifest, dict):
            _fail("manifest.json: not a JSON object")
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            _fail(f"manifest.json: not an {FORMAT} of version {VERSION}")
        wanted = {"format", "version", "tenant_id", "exported_at", "entries", "closings",
                  "head", "inclusion_proofs", "files"}
        _object(manifest, wanted, "manifest.json")
        if not isinstance(manifest["tenant_id"], str) or not manifest["tenant_id"]:
            _fail("manifest.json: tenant_id is not text")
        if not isinstance(manifest["exported_at"], str) or not _TIMESTAMP.fullmatch(
                manifest["exported_at"]):
            _fail("manifest.json: exported_at is not a UTC timestamp")
        for name in ("entries", "closings"):
            if not _int(manifest[name]) or manifest[name] < 0:
                _fail(f"manifest.json: {name} is not a count")
        head = _object(manifest["head"], {"seq", "hash"}, "manifest.json: head")
        if not _int(head["seq"]) or head["seq"] < 0 or _hex(head["hash"], 32) is None:
            _fail("manifest.json: head is not {seq, hash}")
        listed = _object(manifest["inclusion_proofs"], {"kinds", "through_seq", "count"},
                         "manifest.json: inclusion_proofs")
        if listed["kinds"] != list(MONEY_KINDS) or not all(
                _int(listed[n]) and listed[n] >= 0 for n in ("through_seq", "count")):
            _fail(f"manifest.json: inclusion_proofs is not {{kinds: {list(MONEY_KINDS)}, "
                  "through_seq, count}")
        files = manifest["files"]
        if not isinstance(files, dict):
            _fail("manifest.json: files is not an object")
        for name in FILES:
            if name not in files:
                _fail(f"manifest.json: files does not list {name}")
        for name, digest in files.items():
            if name == "manifest.json" or "/" in name or "\\" in name or name.startswith("."):
                _fail(f"manifest.json: files lists {name!r}, which cannot be a bundle file")
            if _hex(digest, 32) is None:
                _fail(f"manifest.json: the SHA-256 of {name} is not 64 hex digits")
        self.manifest = manifest
        self.tenant = manifest["tenant_id"]

    def read_keys(self) -> None:
        keys = _object(_json(self.bundle.read("keys.json"), "keys.json"), {"keys"}, "keys.json")
        if not isinstance(keys["keys"], list):
            _fail("keys.json: keys is not a list")
        for i, key in enumerate(keys["keys"]):
            key = _object(key, {"key_id", "algorithm", "public_key"}, f"keys.json: key {i + 1}")
            key_id, raw = key["key_id"], _hex(key["public_key"], 32)
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                _fail(f"keys.json: key {i + 1} has no ed25519:<32 hex> key_id")
            if key["algorithm"] != "Ed25519" or raw is None:
                _fail(f"keys.json: key {key_id} is not a raw 32-byte Ed25519 public key")
            if key_id_for(raw) != key_id:
                _fail(f"keys.json: key_id {key_id} does not match its public key "
                      f"(whose key_id is {key_id_for(raw)})")
            if key_id in self.keys:
                _fail(f"keys.json: key {key_id} is listed twice")
            try:
                self.keys[key_id] = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                _fail(f"keys.json: key {key_id} is not a valid Ed25519 public key")

    def read_closings(self) -> None:
        last_entry = 0
        for number, raw in self.bundle.lines("closings.jsonl"):
            where = f"closings.jsonl line {number}"
            record = _object(_json(_text(raw, where), where), _CLOSING_RECORD_FIELDS, where)
            for name in ("first_seq", "last_seq", "entry_seq"):
                if not _int(record[name]) or record[name] < 0:
                    _fail(f"{where}: {name} is not a seq")
            for name in ("id", "kind", "period_start", "closing", "key_id"):
                if not isinstance(record[name], str):
                    _fail(f"{where}: {name} is not text")
            if _hex(record["signature"], 64) is None:
                _fail(f"{where}: signature is not 64 bytes in hex")
            if record["entry_seq"] <= last_entry:
                _fail(f"{where}: closings must come in entry order (entry "
                      f"{record['entry_seq']} after entry {last_entry})")
            last_entry = record["entry_seq"]
            size = root = None
            try:
                claimed = json.loads(record["closing"])["merkle"]
                if _int(claimed["size"]):
                    size, root = claimed["size"], _hex(claimed["root"], 32)
            except (ValueError, TypeError, KeyError, RecursionError):
                pass  # the closing's own check, at its entry, names what is wrong
            self.records.append(_ClosingRecord(number, record["entry_seq"], record["first_seq"],
                                               record["last_seq"], record, size, root))
            self.boundaries.update((record["last_seq"], max(record["first_seq"] - 1, 0)))

    # -- the entries, once ------------------------------------------------------------------
    def run(self) -> Report:
        self.read_manifest()
        self.read_keys()
        self.read_closings()
        boundaries = self.boundaries
        proofs = _ProofCursor(self, self.bundle.lines("proofs.jsonl"),
                              {r.entry_seq: r for r in self.records})
        frontier = merkle.Frontier()
        tally = closing_totals.Running()
        pending = iter(self.records)
        record = next(pending, None)
        prev, seq = ZERO_HASH, 0
        # Every money entry a closing covers has an inclusion proof, and no other entry.
        sealed_through = max((r.last_seq for r in self.records), default=0)
        sealed_money = 0
        total = self.manifest["entries"]
        show = self.progress and total > self.threshold
        step = max(1, total // 200)
        for number, raw in self.bundle.lines("entries.jsonl"):
            expected = seq + 1
            where = f"entry {expected} (entries.jsonl line {number})"
            entry = _object(_json(_text(raw, where), where), _ENTRY_FIELDS, where)
            seq_value, kind, payload = entry["seq"], entry["kind"], entry["payload"]
            prev_hash, stored = _hex(entry["prev_hash"], 32), _hex(entry["hash"], 32)
            if not _int(seq_value):
                _fail(f"{where}: seq is not an integer")
            if not isinstance(kind, str) or not kind or not isinstance(payload, str):
                _fail(f"{where}: kind and payload must be text")
            if prev_hash is None or stored is None:
                _fail(f"{where}: prev_hash and hash must be 64 lowercase hex digits")
            try:
                computed = entry_hash(prev_hash, expected, kind, payload)
            except UnicodeEncodeError:
                _fail(f"{where}: kind or payload is not encodable as UTF-8")
            if seq_value != expected:
                if prev_hash == prev and computed == stored:  # only the seq field changed
                    _fail(f"entry {expected}: its seq field reads {seq_value}")
                if seq_value > expected:
                    _fail(f"entry {expected}: missing (entries.jsonl line {number} holds entry "
                          f"{seq_value})")
                _fail(f"entries.jsonl line {number}: entry {seq_value} comes after entry "
                      f"{expected - 1}")
            if prev_hash != prev:
                _fail(f"entry {seq_value}: does not link to entry {seq_value - 1} (prev_hash)")
            if computed != stored:
                _fail(f"entry {seq_value}: hash does not match")
            seq, prev = seq_value, stored
            try:  # RFC 8785 form, the hashed text being the one canonical text
                body = canonical_json.parse(payload)
            except canonical_json.NotCanonical as exc:
                _fail(f"entry {seq}: payload: {exc}")
            if not isinstance(body, dict) or set(body) != {"at", "data", "v"}:
                _fail(f"entry {seq}: payload is not an {{at, data, v}} envelope")
            if not _int(body["v"]) or body["v"] != 1:
                _fail(f"entry {seq}: payload has unknown format version {body['v']!r}")
            if not isinstance(body["at"], str) or not _TIMESTAMP.fullmatch(body["at"]):
                _fail(f"entry {seq}: payload's at is not a UTC timestamp")
            data = body["data"]
            if not isinstance(data, dict):
                _fail(f"entry {seq}: payload's data is not an object")

            frontier.append(stored)
            tally.add(kind, data)
            if seq in boundaries:
                self.snapshots[seq] = _Snapshot(frontier.root(), stored, tally.snapshot())
            if record is not None and record.entry_seq == seq:
                if kind != SEALED:
                    _fail(f"closings.jsonl line {record.line}: entry {seq} is a {kind} entry, "
                          "not a closing.sealed one")
                self.check_closing(seq, data, record)
                record = next(pending, None)
            elif kind == SEALED:
                _fail(f"entry {seq} (closing.sealed): its closing is not in closings.jsonl")
            proofs.advance(seq, stored)
            proven = proofs.last_inclusion == seq
            if kind in MONEY_KINDS and seq <= sealed_through:
                sealed_money += 1
                if not proven:
                    proofs.problem(f"entry {seq} ({kind}): sealed, but proofs.jsonl has no "
                                    "inclusion proof for it (the manifest lists every sealed "
                                    "money entry)")
            elif proven:
                proofs.problem(f"proofs.jsonl line {proofs.last_inclusion_line}: an inclusion "
                                f"proof for entry {seq}, which is not a sealed money entry "
                                "(the manifest lists no such proof)")
            if show and seq % step == 0:
                print(f"\rverifying entries: {seq:,} / {total:,} ({100 * seq // total}%)",
                      end="", file=sys.stderr, flush=True)
        if show:
            print(f"\rverifying entries: {seq:,} / {total:,} (100%)", file=sys.stderr,
                  flush=True)

        head = self.manifest["head"]
        if seq != head["seq"]:
            _fail(f"entries.jsonl ends at entry {seq}, but the manifest's head is entry "
                  f"{head['seq']}")
        if prev.hex() != head["hash"]:
            _fail(f"entry {seq}: its hash is not the manifest's head hash")
        if seq != self.manifest["entries"]:
            _fail(f"manifest.json: entries is {self.manifest['entries']}, the bundle holds {seq}")
        if record is not None:
            _fail(f"closings.jsonl line {record.line}: no closing.sealed entry {record.entry_seq} "
                  "in entries.jsonl")
        if len(self.records) != self.manifest["closings"]:
            _fail(f"manifest.json: closings is {self.manifest['closings']}, the bundle holds "
                  f"{len(self.records)}")
        proofs.finish(seq)
        if self.proof_problem:
            _fail(self.proof_problem)
        listed = self.manifest["inclusion_proofs"]
        if listed["through_seq"] != sealed_through:
            _fail(f"manifest.json: inclusion_proofs.through_seq is {listed['through_seq']}, but "
                  f"the widest closing ends at entry {sealed_through}")
        if listed["count"] != sealed_money:
            _fail(f"manifest.json: inclusion_proofs.count is {listed['count']}, but "
                  f"{sealed_money} money entries are sealed")
        self.check_anchors()
        for name, digest in self.manifest["files"].items():
            if self.bundle.digest(name) != digest:
                _fail(f"file {name}: SHA-256 does not match the manifest")
        return Report(True, None, seq, len(self.records), self.proofs, seq, prev.hex(),
                      self.notes)

    def check_anchors(self) -> None:
        """Each anchor's closing, status and proof (chalicelib/audit/anchors.py)."""
        checker = anchors.AnchorChecker(
            {r.entry_seq: (r.fields["id"], r.fields["closing"]) for r in self.records},
            self.tsa_certificates)
        for number, raw in self.bundle.lines("anchors.jsonl"):
            where = f"anchors.jsonl line {number}"
            try:
                checker.check(number, _json(_text(raw, where), where))
            except anchors.AnchorProblem as exc:
                _fail(str(exc))
        self.notes = tuple(checker.notes())

    # -- one closing, at its closing.sealed entry -------------------------------------------
    def check_closing(self, seq: int, data: dict[str, Any], record: _ClosingRecord) -> None:
        at = f"entry {seq} (closing.sealed)"
        _object(data, {"closing", "signature", "key_id"}, f"{at}: data")
        text, key_id = data["closing"], data["key_id"]
        signature = _hex(data["signature"], 64)
        if not isinstance(text, str) or not isinstance(key_id, str) or signature is None:
            _fail(f"{at}: data is not {{closing: text, signature: 64 bytes hex, key_id}}")
        for name in ("closing", "signature", "key_id"):
            if record.fields[name] != data[name]:
                _fail(f"closings.jsonl line {record.line}: {name} differs from entry {seq}'s")
        key = self.keys.get(key_id)
        if key is None:
            _fail(f"{at}: key {key_id} is not in keys.json")
        if self.trusted is not None and key_id not in self.trusted:
            _fail(f"{at}: key {key_id} is not one of the trusted keys")
        try:
            key.verify(signature, text.encode("utf-8"))
        except InvalidSignature:
            _fail(f"{at}: signature does not verify with key {key_id}")
        closing = _json(text, f"{at}: the closing")
        if not isinstance(closing, dict):
            _fail(f"{at}: the closing is not a JSON object")
        period = closing_totals.period(closing.get("period"))
        name = (f"closing of {period[0]} {closing_totals.label(*period)} (entry {seq})" if period
                else f"closing at entry {seq}")

        def fail(message: str) -> NoReturn:
            _fail(f"{name}: {message}")

        wanted = {"type", "v", "tenant_id", "period", "first_seq", "last_seq", "count",
                  "totals", "grand_totals", "last_entry_hash", "merkle",
                  "previous_closing_sha256", "sealed_at", "key_id"}
        if set(closing) != wanted:
            missing, extra = sorted(wanted - set(closing)), sorted(set(closing) - wanted)
            fail("fields " + "; ".join(([f"missing: {', '.join(missing)}"] if missing else [])
                                       + ([f"unknown: {', '.join(extra)}"] if extra else [])))
        if closing["type"] != "einvoice.closing" or not _int(closing["v"]) or closing["v"] != 1:
            fail("not an einvoice.closing of format 1")
        if closing["tenant_id"] != self.tenant:
            fail(f"tenant_id is {closing['tenant_id']!r}, the manifest's is {self.tenant!r}")
        if closing["key_id"] != key_id:
            fail(f"signed key_id {closing['key_id']!r} is not the entry's key {key_id}")
        if period is None:
            fail("period is not a calendar day, month or year {kind, start, end}")
        kind, start = period
        if (record.fields["kind"], record.fields["period_start"]) != (kind, start.isoformat()):
            _fail(f"closings.jsonl line {record.line}: kind and period_start differ from the "
                  f"signed closing's ({kind} {start.isoformat()})")
        first, last, count = closing["first_seq"], closing["last_seq"], closing["count"]
        if not (_int(first) and _int(last) and _int(count)):
            fail("first_seq, last_seq and count must be integers")
        if (record.first_seq, record.last_seq) != (first, last):
            _fail(f"closings.jsonl line {record.line}: first_seq and last_seq differ from the "
                  f"signed closing's ({first}..{last})")
        sequence = self.previous.problem(closing, kind, start, seq)
        if sequence is not None:
            fail(sequence.message)
        if not isinstance(closing["sealed_at"], str) or not _TIMESTAMP.fullmatch(
                closing["sealed_at"]):
            fail("sealed_at is not a UTC timestamp")
        end, begin = self.snapshots[last], self.snapshots[first - 1]
        tree = closing["merkle"]
        if not isinstance(tree, dict) or set(tree) != {"size", "root"}:
            fail("merkle is not {size, root}")
        if tree["size"] != last:
            fail(f"merkle size is {tree['size']!r}, not last_seq {last}")
        if _hex(tree["root"], 32) != end.root:
            fail(f"merkle root does not match entries 1..{last}")
        if _hex(closing["last_entry_hash"], 32) != end.hash:
            fail(f"last_entry_hash is not the hash of entry {last}")
        totals = closing_totals.totals_problem(closing, begin.tally, end.tally, first, last)
        if totals is not None:
            fail(totals.message)
        self.previous.sealed(text, kind, start, last)

class _ProofCursor:
    """proofs.jsonl alongside entries.jsonl: inclusion proofs in entry order (each is
    checked once its entry's hash is known), consistency proofs wherever they are.

    Proofs are checked against the roots the closings claim, before those closings
    are checked at their entries; so a failed proof is only reported once every
    entry and closing has passed (the verifier's `proof_problem`)."""

    def __init__(self, verifier: _Verifier, lines: Iterator[tuple[int, bytes]],
                 closings: dict[int, _ClosingRecord]) -> None:
        self.v = verifier
        self.lines = lines
        self.closings = closings
        self.waiting: tuple[int, dict[str, Any]] | None = None  # an inclusion proof ahead
        self.last_inclusion = self.last_inclusion_line = 0

    def problem(self, message: str) -> None:
        if self.v.proof_problem is None:
            self.v.proof_problem = message

    def _next(self) -> tuple[int, dict[str, Any]] | None:
        for number, raw in self.lines:
            where = f"proofs.jsonl line {number}"
            try:
                proof = _json(_text(raw, where), where)
            except BundleProblem as exc:
                self.problem(str(exc))
                return None
            if not isinstance(proof, dict) or proof.get("type") not in ("inclusion",
                                                                        "consistency"):
                self.problem(f"{where}: not an inclusion or consistency proof")
                return None
            return number, proof
        return None

    def advance(self, seq: int, leaf: bytes | None) -> None:
        """Entry `seq` (hash `leaf`) has been read; check the proofs up to it."""
        while self.v.proof_problem is None:
            if self.waiting is None:
                self.waiting = self._next()
                if self.waiting is None:
                    return
            number, proof = self.waiting
            if proof["type"] == "consistency":
                self.waiting = None
                self.consistency(number, proof)
                continue
            wanted: int = proof["seq"] if _int(proof.get("seq")) else 0
            if wanted < 1:
                self.problem(f"proofs.jsonl line {number}: seq is not an entry")
                return
            if wanted <= self.last_inclusion:
                self.problem(f"proofs.jsonl line {number}: inclusion proofs must come in entry "
                              f"order (entry {wanted} after entry {self.last_inclusion})")
                return
            if leaf is None or wanted > seq:
                if leaf is None:
                    self.problem(f"proofs.jsonl line {number}: entry {wanted} is not in "
                                  "entries.jsonl")
                return
            self.waiting = None
            self.last_inclusion, self.last_inclusion_line = wanted, number
            self.inclusion(number, proof, leaf)

    def finish(self, last_seq: int) -> None:
        self.advance(last_seq, None)

    def _closing(self, number: int, entry_seq: Any) -> _ClosingRecord | None:
        record = self.closings.get(entry_seq) if _int(entry_seq) else None
        if record is None:
            self.problem(f"proofs.jsonl line {number}: no closing at entry {entry_seq!r}")
        elif record.size is None or record.root is None:
            self.problem(f"proofs.jsonl line {number}: the closing at entry {entry_seq} has "
                          "no Merkle size and root")
            return None
        return record

    def _path(self, number: int, proof: dict[str, Any]) -> list[bytes] | None:
        path = proof.get("path")
        hashes = _hex_hashes(path) if isinstance(path, list) else None
        if hashes is None:
            self.problem(f"proofs.jsonl line {number}: path is not a list of 32-byte hex "
                          "hashes")
        return hashes

    def inclusion(self, number: int, proof: dict[str, Any], leaf: bytes) -> None:
        where = f"proofs.jsonl line {number}"
        if set(proof) != {"type", "seq", "closing_entry_seq", "tree_size", "path"}:
            self.problem(f"{where}: an inclusion proof is {{type, seq, closing_entry_seq, "
                          "tree_size, path}")
            return
        closing = self._closing(number, proof["closing_entry_seq"])
        path = self._path(number, proof)
        if closing is None or path is None:
            return
        seq = proof["seq"]
        if proof["tree_size"] != closing.size:
            self.problem(f"{where}: tree_size {proof['tree_size']!r} is not the size of the "
                          f"closing at entry {closing.entry_seq} ({closing.size})")
        elif not merkle.verify_inclusion(leaf, seq - 1, closing.size or 0, path,
                                         closing.root or b""):
            self.problem(f"{where}: inclusion proof for entry {seq} does not verify")
        else:
            self.v.proofs += 1

    def consistency(self, number: int, proof: dict[str, Any]) -> None:
        where = f"proofs.jsonl line {number}"
        if set(proof) != {"type", "from_entry_seq", "to_entry_seq", "from_size", "to_size",
                          "path"}:
            self.problem(f"{where}: a consistency proof is {{type, from_entry_seq, "
                          "to_entry_seq, from_size, to_size, path}")
            return
        old = self._closing(number, proof["from_entry_seq"])
        new = self._closing(number, proof["to_entry_seq"]) if old else None
        path = self._path(number, proof)
        if old is None or new is None or path is None:
            return
        if (proof["from_size"], proof["to_size"]) != (old.size, new.size):
            self.problem(f"{where}: from_size and to_size are not the sizes of the closings "
                          f"at entries {old.entry_seq} and {new.entry_seq}")
        elif not merkle.verify_consistency(old.size or 0, new.size or 0, old.root or b"",
                                           new.root or b"", path):
            self.problem(f"{where}: consistency proof from entry {old.entry_seq} to entry "
                          f"{new.entry_seq} does not verify")
        else:
            self.v.proofs += 1


def trusted_key_ids(values: list[str]) -> set[str]:
    """Key ids from `ed25519:<32 hex>` ids or raw public keys in hex (64 digits)."""
    out = set()
    for value in values:
        raw = _hex(value.lower(), 32)
        if raw is not None:
            out.add(key_id_for(raw))
        elif _KEY_ID.fullmatch(value):
            out.add(value)
        else:
            raise ValueError(f"{value!r} is neither ed25519:<32 hex> nor a 64-hex public key")
    return out


def verify_bundle(path: Path, progress: bool = False, *,
                  progress_threshold: int = PROGRESS_THRESHOLD,
                  trusted_keys: set[str] | None = None,
                  max_line_bytes: int = MAX_LINE_BYTES,
                  max_member_bytes: int = MAX_MEMBER_BYTES,
                  tsa_certificates: Sequence[x509.Certificate] = ()) -> Report:
    """Check a bundle folder or .zip; stops at the first problem and names it.

    `progress` draws a bar on stderr when the bundle holds more than
    `progress_threshold` entries. `trusted_keys` (key ids): if given, every
    closing must be signed by one of them, not merely by a key of keys.json.
    `max_line_bytes`, `max_member_bytes`: the input bounds (MAX_LINE_BYTES...).
    `tsa_certificates` pin the RFC 3161 TSA (its certificate or its issuer's)."""
    bundle: _Bundle | None = None
    try:
        bundle = _Bundle(path, max_line_bytes, max_member_bytes)
        verifier = _Verifier(bundle, progress, progress_threshold, trusted_keys)
        verifier.tsa_certificates = tsa_certificates
        return verifier.run()
    except BundleProblem as exc:
        return Report(False, str(exc))
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
            NotImplementedError, RuntimeError, ValueError) as exc:  # a damaged .zip
        return Report(False, f"{path}: cannot be read ({type(exc).__name__}: {exc})")
    except MemoryError:
        return Report(False, f"{path}: out of memory while reading it")
    finally:
        if bundle is not None:
            bundle.close()
