"""Witnesses of a tenant's chain in the Object Lock bucket.

Deleting the newest entries of a chain (someone with database superuser rights,
who also rewinds the head) leaves a shorter chain that verifies. A witness is a
signed statement "entry S of tenant T has hash H", written where no one can
delete it for 11 years; verification compares the chain with the highest one in
the whole history of the bucket's versions (`newest_witnessed`), so a delete
marker, a later version or a key that sorts first cannot hide it.

Object key: tenants/{tenant}/witness/{10^16 - S, 16 digits}-{kind}.json (kind:
"closing" or "head"); each key holds one version, whose content states the same.
Content (format 1): RFC 8785 JSON of
    {"head": H, "signature": hex Ed25519 over the UTF-8 bytes of H, "key_id": ...,
     "closing": {"closing": text, "signature": hex, "key_id": ...} or null}
    H = RFC 8785 JSON of {"type": "einvoice.chain_head", "v": 1, "tenant_id": uuid,
                          "seq": S, "hash": hex, "at": the entry's recorded time}
Every field of H comes from the entry itself, so a retry writes the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import rfc8785

from chalicelib.domain.closing import signature_problem
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
    kind: str  # "closing" when it carries a closing, else "head"


class WitnessAlarm(ValueError):
    """The bucket's witness history is not what we wrote: `reason` names how."""

    def __init__(self, reason: str, key: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.key, self.detail = reason, key, detail


def read_witness(content: bytes, public_keys: Mapping[str, bytes],
                 key: str | None = None) -> WitnessedHead:
    """The witnessed head, after checking its signature (and its closing's) with
    the pinned keys; WitnessAlarm names the problem (witness_invalid, or
    witness_key_unpinned for a key we do not pin, whatever its signature)."""
    try:
        outer: Any = json.loads(content)
        head: Any = json.loads(outer["head"])
        signature = bytes.fromhex(outer["signature"])
        closing = outer["closing"]
        witnessed = WitnessedHead(str(head["tenant_id"]), int(head["seq"]),
                                  bytes.fromhex(head["hash"]), str(head["at"]),
                                  str(outer["key_id"]), "head" if closing is None else "closing")
        if head.get("type") != HEAD_TYPE or head.get("v") != 1:
            raise ValueError("not a chain head of format 1")
        signed = [(witnessed.key_id, signature, outer["head"], "witness")]
        if closing is not None:
            signed.append((str(closing["key_id"]), bytes.fromhex(closing["signature"]),
                           str(closing["closing"]), "closing it carries"))
    except (ValueError, KeyError, TypeError) as exc:
        raise WitnessAlarm("witness_invalid", key,
                           f"the witness is malformed ({type(exc).__name__})") from None
    for key_id, sig, text, what in signed:
        problem = signature_problem(public_keys, key_id, sig, text)
        if problem == "key_unpinned":
            raise WitnessAlarm("witness_key_unpinned", key, f"the {what} is signed with "
                               f"{key_id}, a key that is not pinned")
        if problem is not None:
            raise WitnessAlarm("witness_invalid", key, f"the {what}'s signature does not "
                               f"verify with {key_id}")
    return witnessed


def _named(tenant_id: UUID, key: str) -> tuple[int, str] | None:
    """(seq, kind) the key's name states, or None if it is not a witness key."""
    name = key.removeprefix(witness_prefix(tenant_id))
    digits, _, rest = name.partition("-")
    kind = rest.removesuffix(".json")
    if name == key or len(digits) != 16 or not digits.isdigit() or kind not in WITNESS_KINDS \
            or not rest.endswith(".json"):
        return None
    return _SEQ_SPACE - int(digits), kind


def newest_witnessed(tenant_id: UUID, history: Iterable[tuple[str, str, bytes | None]],
                     public_keys: Mapping[str, bytes]) -> tuple[str, WitnessedHead] | None:
    """The highest witnessed head in a tenant's whole witness history (every
    version, (key, version id, bytes or None for a delete marker)), with its
    key; None when there is none. Any sign that the history was tampered with
    is a WitnessAlarm: a delete marker (witness_deleted), a key holding two
    different witnesses, so a later one stands over an earlier one
    (witness_overwritten), a witness that is invalid or signed by an unpinned
    key, or one whose key's name does not state its tenant, seq and kind
    (witness_misnamed: what a witness copied under another key gives)."""
    versions = list(history)
    for key, version_id, content in versions:
        if content is None:
            raise WitnessAlarm("witness_deleted", key, f"{key} has a delete marker (version "
                               f"{version_id}): a witness was hidden, never deleted")
    contents: dict[str, set[bytes]] = {}
    for key, _, content in versions:
        contents.setdefault(key, set()).add(content or b"")
    for key, held in sorted(contents.items()):
        if len(held) > 1:
            raise WitnessAlarm("witness_overwritten", key, f"{key} holds {len(held)} different "
                               "versions: a witness is written once, never replaced")
    best: tuple[str, WitnessedHead] | None = None
    for key in sorted(contents):
        [content] = contents[key]
        seen = read_witness(content, public_keys, key)
        if seen.tenant_id != str(tenant_id) or _named(tenant_id, key) != (seen.seq, seen.kind):
            raise WitnessAlarm("witness_misnamed", key, f"{key} holds the witness of "
                               f"{seen.kind} {seen.seq} of tenant {seen.tenant_id}")
        if best is None or seen.seq > best[1].seq:
            best = (key, seen)
    return best
