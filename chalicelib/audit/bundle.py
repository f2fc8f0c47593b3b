"""Export a tenant's audit bundle: everything an auditor needs to check the
ledger, its closings and their proofs offline (`verify.py`), from one
REPEATABLE READ snapshot, so every file describes the same state.

Memory stays bounded whatever the chain's length: entries are streamed page by
page (the ledger adapter's keyset pages) straight to entries.jsonl; inclusion
proofs are made a block of 2^PROOF_BLOCK_BITS consecutive entries at a time
(`merkle.block_paths`): the levels inside the block are hashed from the entries
just read, and the O(log n) stored nodes above it are read in one query per
block (`uow.closings.merkle_nodes`), never the tree. Only the closings (a few
hundred a year) and one block are held at once. Lines are written as
`json.dumps(..., ensure_ascii=False, separators=(",", ":"))` would write them,
without its per-call set-up (the export's hot path, bench/closing.py).

Layout (format 1): entries.jsonl, closings.jsonl, keys.json, proofs.jsonl,
anchors.jsonl, then manifest.json, written last, with the SHA-256 of each and
the entries that have an inclusion proof (every sealed money entry).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring as _string  # how json.dumps writes a str
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from chalicelib.domain import merkle
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.kinds import MONEY_KINDS
from chalicelib.domain.ledger import LedgerEntry, utc_timestamp
from chalicelib.ports import ClosingStore, StoredClosing, UnitOfWorkFactory

FORMAT = "einvoice-audit-bundle"
VERSION = 1
FILES = ("entries.jsonl", "closings.jsonl", "keys.json", "proofs.jsonl", "anchors.jsonl")
PROOF_BLOCK_BITS = 10  # inclusion proofs are made for 1,024 consecutive entries at a time
_FLUSH = 1 << 16  # bytes buffered before a write
ZIP_LEVEL = 1
_ALL_CLOSINGS = 2**62


class _Writer:
    """A bundle file written once, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        # Buffered: a raw write may write only part of a chunk; a buffered one loops.
        self._file: IO[bytes] = path.open("xb", buffering=_FLUSH)
        self._digest = hashlib.sha256()
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        self._file.write(self._buffer)
        self._digest.update(self._buffer)
        self._buffer.clear()

    def line(self, value: Any) -> None:
        self.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                   + b"\n")

    def close(self) -> str:
        self._flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._digest.hexdigest()


def export_audit_bundle(tenant_id: UUID, snapshot: UnitOfWorkFactory, out: Path, *,
                        keys: Mapping[str, bytes], zip: bool = False,
                        anchors: Callable[[UUID], list[Any]] | None = None) -> dict[str, Any]:
    """Write the bundle to the folder `out` (or, with `zip`, the .zip file `out`); returns
    the manifest. `out` must not exist yet; nothing is left behind on failure.
    `keys`: the pinned public keys (runtime.pinned_keys), of which keys.json
    holds those the closings name. `anchors(closing_id)`: that closing's anchors,
    read after the snapshot (anchors live outside the chain and keep changing)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _write(tenant_id, snapshot, work, keys, anchors)
        if zip:
            partial = work / "bundle.zip"
            # Deflate level 1: half the time of the default 6, for a zip about a fifth
            # larger (the proofs' hex compresses well at any level).
            with zipfile.ZipFile(partial, "x", zipfile.ZIP_DEFLATED,
                                 compresslevel=ZIP_LEVEL) as archive:
                for name in (*FILES, "manifest.json"):
                    archive.write(work / name, name)
            os.replace(partial, out)
        else:
            os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def export_from_database(tenant_id: UUID, database: Any, out: Path, *,
                         keys: Mapping[str, bytes], zip: bool = False) -> dict[str, Any]:
    """The export commands' call: the chain from one snapshot, then each closing's anchors."""
    from chalicelib.adapters.postgres import read_anchors

    return export_audit_bundle(tenant_id, database.snapshot, out, keys=keys, zip=zip,
                               anchors=lambda closing: read_anchors(database, tenant_id, closing))


def _write(tenant_id: UUID, snapshot: UnitOfWorkFactory, folder: Path,
           keys: Mapping[str, bytes],
           anchors: Callable[[UUID], list[Any]] | None) -> dict[str, Any]:
    files: dict[str, str] = {}
    with snapshot(tenant_id) as uow:
        store = uow.closings
        head = uow.ledger.head()
        if head is None:
            raise NotFound([Violation("tenant_id", "no such tenant")])
        closings = sorted(store.recent(_ALL_CLOSINGS), key=lambda c: c.entry_seq)
        files["closings.jsonl"] = _closings(folder, closings)
        files["keys.json"] = _keys(folder, keys, closings)

        entries, proofs = _Writer(folder / "entries.jsonl"), _Writer(folder / "proofs.jsonl")
        inclusion = _InclusionProofs(proofs, store)
        # The first closing covering seq: the smallest last_seq >= seq (as proofs.py says).
        covering = iter(sorted(closings, key=lambda c: (c.last_seq, c.entry_seq)))
        cover = next(covering, None)
        count = last_seq = proven = 0
        for entry in uow.ledger.entries():
            entries.write(_entry_line(entry))
            count, last_seq = count + 1, entry.seq
            if count != last_seq:  # a leaf index is seq - 1: a gap would misplace every proof
                break
            while cover is not None and cover.last_seq < last_seq:
                cover = next(covering, None)
            inclusion.add(entry.hash)
            if cover is not None and entry.kind in MONEY_KINDS:
                inclusion.prove(last_seq, cover)
                proven += 1
        if count != last_seq:
            raise RuntimeError(f"the ledger read {count} entries ending at entry {last_seq}")
        inclusion.flush()
        _consistency_proofs(proofs, store, closings)
        files["entries.jsonl"] = entries.close()
        files["proofs.jsonl"] = proofs.close()
    listed = _Writer(folder / "anchors.jsonl")
    for closing in closings:
        if anchors is None:
            break
        from chalicelib.usecases.anchor import anchor_view

        for anchor in anchors(closing.closing_id):
            listed.line({"closing_entry_seq": closing.entry_seq,
                         "closing_id": str(closing.closing_id), **anchor_view(anchor)})
    files["anchors.jsonl"] = listed.close()

    manifest = {
        "format": FORMAT, "version": VERSION, "tenant_id": str(tenant_id),
        "exported_at": utc_timestamp(datetime.now(UTC)),
        "entries": count, "closings": len(closings),
        # The stored head, not the last entry read: entries missing at the end of the
        # chain then show in the bundle as a truncation.
        "head": {"seq": head.seq, "hash": head.hash.hex()},
        # Which entries have an inclusion proof, so that one removed is missed: every
        # entry of these kinds up to the widest closing (the verifier checks all three).
        "inclusion_proofs": {"kinds": list(MONEY_KINDS), "through_seq": max(
            (c.last_seq for c in closings), default=0), "count": proven},
        "files": {name: files[name] for name in FILES},
    }
    writer = _Writer(folder / "manifest.json")
    writer.write(json.dumps(manifest, indent=2).encode("utf-8") + b"\n")
    writer.close()
    return manifest


def _closings(folder: Path, closings: list[StoredClosing]) -> str:
    writer = _Writer(folder / "closings.jsonl")
    for c in closings:
        writer.line({"id": str(c.closing_id), "kind": c.period_kind,
                     "period_start": c.period_start.isoformat(), "first_seq": c.first_seq,
                     "last_seq": c.last_seq, "entry_seq": c.entry_seq, "closing": c.text,
                     "signature": c.signature.hex(), "key_id": c.key_id})
    return writer.close()


def _keys(folder: Path, pinned: Mapping[str, bytes], closings: list[StoredClosing]) -> str:
    """The pinned public keys of the tenant's closings, in order of first use (the
    rotated ones included; keys that signed none of them are left out). A
    closing signed with a key that is not pinned stops the export."""
    used = list(dict.fromkeys(c.key_id for c in closings))
    missing = [key_id for key_id in used if key_id not in pinned]
    if missing:
        raise RuntimeError(f"no pinned public key for {', '.join(sorted(missing))}")
    keys = [{"key_id": key_id, "algorithm": "Ed25519", "public_key": pinned[key_id].hex()}
            for key_id in used]
    writer = _Writer(folder / "keys.json")
    writer.write(json.dumps({"keys": keys}, indent=2).encode("utf-8") + b"\n")
    return writer.close()


def _entry_line(entry: LedgerEntry) -> bytes:
    """entries.jsonl's line for `entry`: `as_dict()` as `_Writer.line` writes it."""
    return (f'{{"seq":{int(entry.seq)},"kind":{_string(entry.kind)},'
            f'"payload":{_string(entry.payload)},"prev_hash":"{entry.prev_hash.hex()}",'
            f'"hash":"{entry.hash.hex()}"}}\n').encode()


class _InclusionProofs:
    """proofs.jsonl's inclusion proofs, in seq order, one block of leaves at a time:
    the entry hashes of the current block are kept until it is full (or the chain
    ends), then every proof asked in it is made from them and one read of the nodes
    above the block."""

    def __init__(self, proofs: _Writer, store: ClosingStore) -> None:
        self._proofs, self._store = proofs, store
        self._start = 0  # the block's first leaf index (entry seq - 1)
        self._leaves: list[bytes] = []
        self._wanted: list[tuple[int, StoredClosing]] = []

    def add(self, entry_hash: bytes) -> None:
        """The next entry of the chain (leaf index start + len(leaves))."""
        if len(self._leaves) == 1 << PROOF_BLOCK_BITS:
            self.flush()
            self._start += 1 << PROOF_BLOCK_BITS
        self._leaves.append(entry_hash)

    def prove(self, seq: int, cover: StoredClosing) -> None:
        """Entry `seq`, the last one added, gets its proof in `cover`'s tree."""
        self._wanted.append((seq, cover))

    def flush(self) -> None:
        wanted, leaves = self._wanted, self._leaves
        self._wanted, self._leaves = [], []
        if not wanted:
            return
        sizes = {cover.last_seq for _, cover in wanted}
        coords = sorted({c for size in sizes
                         for c in merkle.block_coords(self._start, PROOF_BLOCK_BITS, size)})
        paths = merkle.block_paths(self._start, PROOF_BLOCK_BITS, leaves,
                                   [(seq - 1, cover.last_seq) for seq, cover in wanted],
                                   self._store.merkle_nodes(coords), _quoted_hex)
        write = self._proofs.write
        for (seq, cover), path in zip(wanted, paths, strict=True):
            write(f'{{"type":"inclusion","seq":{int(seq)},"closing_entry_seq":'
                  f'{int(cover.entry_seq)},"tree_size":{int(cover.last_seq)},'
                  f'"path":[{",".join(path)}]}}\n'.encode())


def _quoted_hex(value: bytes) -> str:
    return f'"{value.hex()}"'


def _consistency_proofs(proofs: _Writer, store: ClosingStore,
                        closings: list[StoredClosing]) -> None:
    """From each closing to the next one in the chain that covers more (a month
    is sealed after the next month's first day: it covers less than that day),
    or else to the widest one (a month sealed last may cover less than a day
    sealed before it), so every closing's tree is proven to extend into a wider one."""
    widest = max(closings, key=lambda c: c.last_seq, default=None)
    for i, old in enumerate(closings):
        new = next((c for c in closings[i + 1:] if c.last_seq > old.last_seq), widest)
        if new is None or new.last_seq <= old.last_seq:
            continue
        path = merkle.consistency_proof(old.last_seq, new.last_seq, store.merkle_nodes(
            merkle.consistency_coords(old.last_seq, new.last_seq)))
        proofs.line({"type": "consistency", "from_entry_seq": old.entry_seq,
                     "to_entry_seq": new.entry_seq, "from_size": old.last_seq,
                     "to_size": new.last_seq, "path": [h.hex() for h in path]})
