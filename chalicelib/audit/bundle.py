"""Export a tenant's audit bundle: everything an auditor needs to check the
ledger, its closings and their proofs offline (`verify.py`), from one
REPEATABLE READ snapshot, so every file describes the same state.

Memory stays bounded whatever the chain's length: entries are streamed page by
page (the ledger adapter's keyset pages) straight to entries.jsonl; inclusion
proofs are made in batches, each from one read of the O(log n) stored Merkle
nodes per proof (`uow.closings.merkle_nodes`), never from the tree. Only the
closings (a few hundred a year) are held at once.

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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from chalicelib.domain import merkle
from chalicelib.domain.errors import NotFound, Violation
from chalicelib.domain.kinds import MONEY_KINDS
from chalicelib.domain.ledger import utc_timestamp
from chalicelib.ports import ClosingStore, StoredClosing, UnitOfWorkFactory

FORMAT = "einvoice-audit-bundle"
VERSION = 1
FILES = ("entries.jsonl", "closings.jsonl", "keys.json", "proofs.jsonl", "anchors.jsonl")
PROOF_BATCH = 256  # inclusion proofs whose nodes are read in one query
_ALL_CLOSINGS = 2**62


class _Writer:
    """A bundle file written once, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("xb", buffering=1 << 16)
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)

    def line(self, value: Any) -> None:
        self.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                   + b"\n")

    def close(self) -> str:
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
            with zipfile.ZipFile(partial, "x", zipfile.ZIP_DEFLATED) as archive:
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
        # The first closing covering seq: the smallest last_seq >= seq (as proofs.py says).
        covering = iter(sorted(closings, key=lambda c: (c.last_seq, c.entry_seq)))
        cover = next(covering, None)
        batch: list[tuple[int, StoredClosing]] = []
        count = last_seq = proven = 0
        for entry in uow.ledger.entries():
            entries.line(entry.as_dict())
            count, last_seq = count + 1, entry.seq
            while cover is not None and cover.last_seq < entry.seq:
                cover = next(covering, None)
            if cover is not None and entry.kind in MONEY_KINDS:
                batch.append((entry.seq, cover))
                proven += 1
                if len(batch) >= PROOF_BATCH:
                    _inclusion_proofs(proofs, store, batch)
                    batch = []
        _inclusion_proofs(proofs, store, batch)
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
    if count != last_seq:
        raise RuntimeError(f"the ledger read {count} entries ending at entry {last_seq}")
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


def _inclusion_proofs(proofs: _Writer, store: ClosingStore,
                      batch: Iterable[tuple[int, StoredClosing]]) -> None:
    batch = list(batch)
    if not batch:
        return
    coords = sorted({c for seq, closing in batch
                     for c in merkle.inclusion_coords(seq - 1, closing.last_seq)})
    nodes = store.merkle_nodes(coords)
    for seq, closing in batch:
        path = merkle.inclusion_proof(seq - 1, closing.last_seq, nodes)
        proofs.line({"type": "inclusion", "seq": seq, "closing_entry_seq": closing.entry_seq,
                     "tree_size": closing.last_seq, "path": [h.hex() for h in path]})


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
