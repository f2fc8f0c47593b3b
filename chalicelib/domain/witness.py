"""Witnesses of a tenant's chain in the Object Lock bucket.

Deleting the newest entries of a chain (someone with database superuser rights,
who also rewinds the head) leaves a shorter chain that verifies. A witness is a
signed statement "entry S of tenant T has hash H", written where no one can
delete it for 11 years; verification compares the chain with the newest one.

Object key: tenants/{tenant}/witness/{10^16 - S, 16 digits}-{kind}.json (kind:
"closing" or "head"), so the newest witness is the first key a listing returns.
Content (format 1): RFC 8785 JSON of
    {"head": H, "signature": hex Ed25519 over the UTF-8 bytes of H, "key_id": ...,
     "closing": {"closing": text, "signature": hex, "key_id": ...} or null}
    H = RFC 8785 JSON of {"type": "einvoice.chain_head", "v": 1, "tenant_id": uuid,
                          "seq": S, "hash": hex, "at": the entry's recorded time}
Every field of H comes from the entry itself, so a retry writes the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import rfc8785

from chalicelib.domain.closing import signed_by
from chalicelib.domain.kinds import WITNESS_KINDS

HEAD_TYPE = "einvoice.chain_head"
_SEQ_SPACE = 10**16


def witness_prefix(tenant_id: UUID) -> str:
    return f"tenants/{tenant_id}/witness/"


def witness_key(tenant_id: UUID, seq: int, kind: str) -> str:
    if kind not in WITNESS_KINDS or not 0 <= seq < _SEQ_SPACE:
        raise ValueError("a witness is of a closing or a head, with 0 <= seq < 10^16")
    return f"{witness_prefix(tenant_id)}{_SEQ_SPACE - seq:016d}-{kind}.json"


def head_text(tenant_id: UUID, seq: int, entry_hash: bytes, at: str) -> str:
    return rfc8785.dumps({"type": HEAD_TYPE, "v": 1, "tenant_id": str(tenant_id),
                          "seq": seq, "hash": entry_hash.hex(), "at": at}).decode("utf-8")


def witness_object(head: str, signature: bytes, key_id: str,
                   closing: Mapping[str, str] | None = None) -> bytes:
    return rfc8785.dumps({"head": head, "signature": signature.hex(), "key_id": key_id,
                          "closing": dict(closing) if closing is not None else None})


@dataclass(frozen=True)
class WitnessedHead:
    tenant_id: str
    seq: int
    hash: bytes
    at: str
    key_id: str


def read_witness(content: bytes, public_keys: Mapping[str, bytes]) -> WitnessedHead:
    """The witnessed head, after checking its signature; ValueError names the problem."""
    try:
        outer: Any = json.loads(content)
        head: Any = json.loads(outer["head"])
        signature = bytes.fromhex(outer["signature"])
        key_id = str(outer["key_id"])
        witnessed = WitnessedHead(str(head["tenant_id"]), int(head["seq"]),
                                  bytes.fromhex(head["hash"]), str(head["at"]), key_id)
        if head.get("type") != HEAD_TYPE or head.get("v") != 1:
            raise ValueError("not a chain head of format 1")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the witness is malformed ({type(exc).__name__})") from None
    key = public_keys.get(key_id)
    if key is None:
        raise ValueError(f"the witness is signed with an unknown key {key_id}")
    if not signed_by(key, signature, outer["head"]):
        raise ValueError(f"the witness's signature does not verify with {key_id}")
    return witnessed
