"""The offline verifier's own readers (chalicelib/audit/anchors.py) against the real
libraries: the same RFC 3161 tokens read by rfc3161-client and asn1crypto, the same
.ots files read by python-opentimestamps, give the same imprint, digest and
attestations; and every bit flip or truncation of a token is an AnchorProblem
(a FAIL), never another exception, and of an .ots file never a crash either."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from asn1crypto import tsp  # type: ignore[import-untyped]
from cryptography import x509
from opentimestamps.core.notary import (  # type: ignore[import-untyped]
    BitcoinBlockHeaderAttestation,
    PendingAttestation,
)
from opentimestamps.core.op import OpAppend, OpPrepend, OpSHA256  # type: ignore[import-untyped]
from opentimestamps.core.serialize import (  # type: ignore[import-untyped]
    BytesDeserializationContext,
    BytesSerializationContext,
)
from opentimestamps.core.timestamp import (  # type: ignore[import-untyped]
    DetachedTimestampFile,
    Timestamp,
)
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response

from chalicelib.audit.anchors import (
    AnchorProblem,
    read_ots,
    read_rfc3161_token,
    verify_rfc3161,
)
from devstack.anchor_standins import TsaStandIn

TEXT = b"closing text"
BITCOIN = bytes.fromhex("0588960d73d71901") + b"\x01\x05"  # the tag, then varbytes(height 5)
DIGEST = hashlib.sha256(TEXT).digest()


@pytest.fixture(scope="module")
def tsa() -> TsaStandIn:
    return TsaStandIn()  # not started: its answers are asked for directly


def token(tsa: TsaStandIn, message: bytes = TEXT, answer: Any = "good") -> bytes:
    request = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    tsa.answer = answer
    try:
        body = tsa._respond(request.as_bytes())
    finally:
        tsa.answer = "good"
    raw: bytes = decode_timestamp_response(body).time_stamp_token()
    return raw


def test_a_token_reads_the_same_as_with_rfc3161_client_and_asn1crypto(tsa: TsaStandIn) -> None:
    for message in (TEXT, b"another closing", b"x" * 5000):
        raw = token(tsa, message)
        ours = read_rfc3161_token(raw)
        wrapped = b"\x30\x82" + (len(raw) + 5).to_bytes(2, "big") + b"\x30\x03\x02\x01\x00" + raw
        theirs = decode_timestamp_response(wrapped).tst_info.message_imprint
        assert ours.imprint == theirs.message == hashlib.sha256(message).digest()
        assert ours.imprint_algorithm == theirs.hash_algorithm.dotted_string
        content = tsp.TimeStampResp.load(wrapped)["time_stamp_token"]["content"]
        signer = content["signer_infos"][0]
        assert ours.signature == signer["signature"].native
        assert ours.message_digest == hashlib.sha256(ours.tst_info).digest()
        assert ours.tst_info == content["encap_content_info"]["content"].parsed.dump()
        assert ours.signed_attrs == signer["signed_attrs"].untag().dump(force=True)
        assert ours.certificates == tuple(c.chosen.dump() for c in content["certificates"])


def root(tsa: TsaStandIn) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(tsa.root_pem)


def test_a_good_token_verifies_pinned_by_its_root_its_certificate_or_carried(
        tsa: TsaStandIn) -> None:
    raw = token(tsa)
    leaf = tsa.authority.certificate
    assert verify_rfc3161(raw, DIGEST, root(tsa)) == leaf
    assert verify_rfc3161(raw, DIGEST, [leaf]) == leaf
    assert verify_rfc3161(raw, DIGEST, []) == leaf


@pytest.mark.parametrize(("answer", "message", "expected"), [
    ("other_digest", TEXT, "message imprint is not SHA-256 of this closing"),
    ("good", b"other", "message imprint is not SHA-256 of this closing"),
    ("other_key", TEXT, "neither pinned by --tsa-cert nor issued by a pinned one"),
])
def test_a_wrong_token_is_refused(tsa: TsaStandIn, answer: str, message: bytes,
                                  expected: str) -> None:
    with pytest.raises(AnchorProblem, match=expected):
        verify_rfc3161(token(tsa, message, answer), DIGEST, root(tsa))


def test_every_bit_flip_and_truncation_of_a_token_fails_cleanly(tsa: TsaStandIn) -> None:
    raw = token(tsa)
    pinned = root(tsa)
    mutants = [raw[:size] for size in range(len(raw))] + [raw + b"\x00"]
    for position in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[position] ^= 1 << bit
            mutants.append(bytes(flipped))
    for mutant in mutants:
        with pytest.raises(AnchorProblem):
            verify_rfc3161(mutant, DIGEST, pinned)


def test_garbage_is_refused() -> None:
    for junk in (b"", b"\x30", b"\x30\x80\x00\x00", b"\x30\x84\xff\xff\xff\xff",
                 b"\x1f\x01\x00", os.urandom(300), b"\x30\x03\x06\x01\x00" * 40):
        with pytest.raises(AnchorProblem):
            verify_rfc3161(junk, DIGEST, [])


# --- OpenTimestamps ------------------------------------------------------------------------
def ots_file(digest: bytes = DIGEST, calendars: int = 2, bitcoin: bool = True) -> bytes:
    """As the anchoring adapter and the calendar stand-in build them."""
    stamp = Timestamp(digest)
    commitment = stamp.ops.add(OpAppend(os.urandom(16))).ops.add(OpSHA256())
    for index in range(calendars):
        node = commitment.ops.add(OpAppend(os.urandom(16))).ops.add(OpSHA256())
        node.attestations.add(PendingAttestation(f"https://calendar{index}.example"))
        if bitcoin and index == 0:
            tx = node.ops.add(OpPrepend(os.urandom(41))).ops.add(OpAppend(os.urandom(12)))
            top = tx.ops.add(OpSHA256()).ops.add(OpSHA256()).ops.add(
                OpAppend(os.urandom(32))).ops.add(OpSHA256()).ops.add(OpSHA256())
            top.attestations.add(BitcoinBlockHeaderAttestation(900123))
    ctx = BytesSerializationContext()
    DetachedTimestampFile(OpSHA256(), stamp).serialize(ctx)
    data: bytes = ctx.getbytes()
    return data


def library(data: bytes) -> tuple[bytes, set[tuple[str, bytes, Any]]]:
    detached = DetachedTimestampFile.deserialize(BytesDeserializationContext(data))
    found = set()
    for msg, attestation in detached.timestamp.all_attestations():
        if isinstance(attestation, PendingAttestation):
            found.add(("pending", msg, attestation.uri))
        elif isinstance(attestation, BitcoinBlockHeaderAttestation):
            found.add(("bitcoin", msg, attestation.height))
        else:
            found.add(("unknown", msg, None))
    return detached.file_digest, found


def ours(data: bytes) -> tuple[bytes, set[tuple[str, bytes, Any]]]:
    proof = read_ots(data)
    return proof.digest, {(a.kind, a.message, a.uri if a.kind == "pending" else
                           a.height if a.kind == "bitcoin" else None)
                          for a in proof.attestations}


@pytest.mark.parametrize(("calendars", "bitcoin"), [(1, False), (2, False), (2, True), (3, True)])
def test_an_ots_file_reads_the_same_as_with_opentimestamps(calendars: int, bitcoin: bool) -> None:
    data = ots_file(calendars=calendars, bitcoin=bitcoin)
    digest, found = ours(data)
    assert (digest, found) == library(data)
    assert digest == DIGEST and len(found) == calendars + bitcoin


def test_a_mutated_ots_file_never_crashes_and_never_reads_otherwise_than_the_library() -> None:
    data = ots_file()
    mutants = [data[:size] for size in range(len(data))] + [data + b"\x00"]
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        mutants.append(bytes(flipped))
    refused = 0
    for mutant in mutants:
        try:
            mine = ours(mutant)
        except AnchorProblem:
            refused += 1
            continue
        assert mine == library(mutant)  # what we accept, the library reads alike
    assert refused > len(data)  # every truncation at least


def test_an_ots_file_too_deep_or_with_unknown_ops_is_refused() -> None:
    header = DetachedTimestampFile.HEADER_MAGIC + b"\x01\x08" + DIGEST
    for body, reason in ((b"\x08" * 300 + b"\x00", "nested over 256 levels"),
                         (b"\x67\x00", "not computable offline"),
                         (b"\x02\x00", "sha1, refused"),
                         (b"\x99\x00", "unknown op tag 0x99"),
                         ((b"\xff\x00" + BITCOIN) * 1000 + b"\x00" + BITCOIN,
                          "over 1000 attestations"),
                         (b"\xf0\x00\x00", "field of 0 bytes"),
                         (b"\xf0\x81\x00", "overlong number"),
                         (b"\xf0\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "too large")):
        with pytest.raises(AnchorProblem, match=reason):
            read_ots(header + body)
    with pytest.raises(AnchorProblem, match="bad magic"):
        read_ots(b"\x00" * 80)
    with pytest.raises(AnchorProblem, match="file hash op is not SHA-256"):
        read_ots(DetachedTimestampFile.HEADER_MAGIC + b"\x01\x02" + DIGEST[:20] + b"\x00")


def test_the_verifiers_copies_of_the_anchor_constants_are_the_services() -> None:
    """anchors.py spells them again so that it needs no other module of ours."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from chalicelib.adapters import anchoring
    from chalicelib.audit import anchors
    from chalicelib.ports import StoredAnchor
    from chalicelib.usecases import anchor

    assert (anchors.OPENTIMESTAMPS, anchors.RFC3161) == (anchor.OPENTIMESTAMPS, anchor.RFC3161)
    assert (anchors.PENDING, anchors.SUBMITTED, anchors.COMPLETE) == (
        anchor.PENDING, anchor.SUBMITTED, anchor.COMPLETE)
    assert anchors.MAX_PROOF_BYTES == anchoring.MAX_PROOF_BYTES
    row = StoredAnchor(uuid4(), uuid4(), anchor.RFC3161, "https://tsa.example", DIGEST,
                       anchor.COMPLETE, b"x", 1, None, completed_at=datetime.now(UTC))
    view = anchor.anchor_view(row)
    assert anchors.PROOF_FORMATS[anchor.RFC3161] == view["proof_format"]
    assert set(view) | {"closing_entry_seq", "closing_id"} == anchors.ANCHOR_FIELDS
