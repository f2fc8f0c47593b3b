"""The offline verifier (chalicelib/audit/verify.py) keeps its own copies of
the ledger entry hash and the signing-key id, so an auditor runs it with the
standard library and `cryptography` alone. Those copies must compute exactly
what the service computes, over any input: a drift would make the verifier
reject every honest bundle, or worse, accept what the service never wrote."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.audit import verify
from chalicelib.domain import closing, closing_totals, ledger
from chalicelib.domain import kinds as ledger_kinds

hashes = st.binary(min_size=32, max_size=32)
seqs = st.integers(min_value=0, max_value=2**64 - 1)
kinds = st.sampled_from(["invoice.issued", "credit_note.issued", "invoice.archived",
                         "closing.sealed", "quote.created"]) | st.text(max_size=80)
payloads = st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(prev_hash=hashes, seq=seqs, kind=kinds, payload=payloads)
def test_the_verifier_hashes_an_entry_as_the_ledger_does(prev_hash: bytes, seq: int,
                                                         kind: str, payload: str) -> None:
    assert verify.entry_hash(prev_hash, seq, kind, payload) == \
        ledger.entry_hash(prev_hash, seq, kind, payload)


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(min_value=0, max_value=10**6), kind=kinds, payload=payloads,
       prev_hash=hashes)
def test_the_verifier_hashes_a_chained_entry_as_the_service_chains_it(
        seq: int, kind: str, payload: str, prev_hash: bytes) -> None:
    entry = ledger.next_entry(ledger.ChainHead(seq, prev_hash), kind, payload)
    assert verify.entry_hash(entry.prev_hash, entry.seq, entry.kind, entry.payload) == \
        entry.hash


@settings(max_examples=500, deadline=None)
@given(public_key=st.binary(min_size=32, max_size=32))
def test_the_verifier_names_a_key_as_the_service_does(public_key: bytes) -> None:
    assert verify.key_id_for(public_key) == closing.key_id_for(public_key)


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_the_verifier_names_a_real_signing_key_as_the_signer_does(seed: bytes) -> None:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = verify.key_id_for(public)
    assert key_id == closing.key_id_for(public)
    assert re.fullmatch(r"ed25519:[0-9a-f]{32}", key_id)


def test_the_verifier_knows_the_service_closing_words() -> None:
    """The constants the verifier copies rather than imports."""
    assert verify.SEALED == ledger_kinds.CLOSING_SEALED
    assert verify.MONEY_KINDS == ledger_kinds.MONEY_KINDS
    assert verify.PERIOD_KINDS == closing.PERIOD_KINDS
    assert closing_totals.MONEY_KINDS == ledger_kinds.MONEY_KINDS
    assert verify.ZERO_HASH == ledger.GENESIS_HASH
    for text in ("0", "-12.50", "1.", ".5", "1e3", "12,5", "+1", "007.10", "--1", ""):
        assert bool(closing_totals.MONEY.fullmatch(text)) == bool(re.match(closing.MONEY_PATTERN,
                                                                    text)), text
