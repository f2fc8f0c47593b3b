"""The anchors of an audit bundle, checked offline (standard library + `cryptography`).

An auditor runs this with verify.py and the chalicelib/domain modules verify.py
imports; it imports nothing else of ours. `cryptography` reads neither the OpenTimestamps format nor
CMS, so two small strict readers are here, bounded in size and depth:

- an OpenTimestamps reader (the .ots detached file of python-opentimestamps'
  serialization: magic, version 1, the SHA-256 file hash op, the digest, then
  the tree of ops and attestations), which recomputes every op from the
  closing's SHA-256, so each attestation's commitment is the one its path leads
  to. What a Bitcoin attestation finally claims (its message is a block's
  merkle root) is not checked: that needs the block header, so a Bitcoin node;
  `ots verify` does it. Pending attestations are a calendar's promise only.
- a DER reader just for the RFC 3161 TimeStampToken (RFC 5652 SignedData): the
  TSTInfo's message imprint must be SHA-256 of the closing text, the
  messageDigest attribute the hash of that TSTInfo, and the signature over the
  signed attributes (re-encoded as a SET) must verify with the TSA certificate:
  one pinned by the auditor (`--tsa-cert`: the TSA's own certificate or the CA
  that directly issued it), else the one the token carries, which is then only
  as trustworthy as the auditor finds it (the output says so). Certificate
  validity dates, revocation and chains longer than one issuer are not checked.

Each anchor line must name a closing of the bundle by entry and by id, and its
status must match its proof (`pending`: none; `submitted`: an .ots proof with no
Bitcoin attestation; `complete`: an .ots proof with one, or a verified token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

OPENTIMESTAMPS, RFC3161 = "opentimestamps", "rfc3161"
PENDING, SUBMITTED, COMPLETE = "pending", "submitted", "complete"
PROOF_FORMATS = {OPENTIMESTAMPS: "ots", RFC3161: "rfc3161-token-der"}
MAX_PROOF_BYTES = 256 * 1024  # as the anchors table (0017_anchors.sql)
ANCHOR_FIELDS = {"closing_entry_seq", "closing_id", "method", "endpoint", "status", "digest",
                 "proof_format", "proof", "attempts", "last_error", "submitted_at",
                 "completed_at"}


class AnchorProblem(ValueError):
    """What is wrong with one proof (the caller names the line, closing and proof)."""


# --- OpenTimestamps ------------------------------------------------------------------------
OTS_MAGIC = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94"
OTS_MAX_MSG = 4096  # opentimestamps.core.op: Op.MAX_MSG_LENGTH / MAX_RESULT_LENGTH
OTS_MAX_DEPTH = 256  # Timestamp.deserialize's recursion limit
OTS_MAX_PAYLOAD = 8192  # TimeAttestation.MAX_PAYLOAD_SIZE
OTS_MAX_URI = 1000  # PendingAttestation.MAX_URI_LENGTH
# A real proof holds a few (one per calendar, and Bitcoin's); each leaf is one, so this
# also bounds the ops recomputed (leaves x depth) and the memory their messages take.
OTS_MAX_ATTESTATIONS = 1000
_URI_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._/:")
PENDING_TAG = bytes.fromhex("83dfe30d2ef90c8e")
BITCOIN_TAG = bytes.fromhex("0588960d73d71901")
_BINARY = {0xF0: "append", 0xF1: "prepend"}
# 0x03 ripemd160 and 0x67 keccak256 are valid .ots ops, but the standard library
# cannot always compute them, and 0x02 sha1 is collision-prone: such a proof is
# refused, never passed unchecked (calendars and our adapter use SHA-256 only).


@dataclass(frozen=True)
class OtsAttestation:
    kind: str  # "pending", "bitcoin" or "unknown"
    message: bytes  # the commitment the ops lead to
    uri: str = ""
    height: int = 0
    tag: bytes = b""


@dataclass(frozen=True)
class OtsProof:
    digest: bytes
    attestations: tuple[OtsAttestation, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise AnchorProblem(".ots proof truncated")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def varuint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:
                    raise AnchorProblem(".ots proof has an overlong number")
                return value
            shift += 7
            if shift >= 63:
                raise AnchorProblem(".ots proof has a number too large")

    def varbytes(self, most: int, least: int = 0) -> bytes:
        size = self.varuint()
        if not least <= size <= most:
            raise AnchorProblem(f".ots proof has a field of {size} bytes, not {least}..{most}")
        return self.take(size)


def _ots_op(tag: int, reader: _Reader, msg: bytes) -> bytes:
    if tag in _BINARY:
        arg = reader.varbytes(OTS_MAX_MSG, 1)
        out = msg + arg if tag == 0xF0 else arg + msg
    elif tag == 0x08:
        out = hashlib.sha256(msg).digest()
    elif tag == 0x02:
        raise AnchorProblem(".ots proof uses op sha1, refused: SHA-1 collisions can be made")
    elif tag == 0xF2:
        out = msg[::-1]
    elif tag == 0xF3:
        out = binascii.hexlify(msg)
    elif tag in (0x03, 0x67):
        raise AnchorProblem(f".ots proof uses op 0x{tag:02x}, not computable offline here")
    else:
        raise AnchorProblem(f".ots proof has the unknown op tag 0x{tag:02x}")
    if len(out) > OTS_MAX_MSG:
        raise AnchorProblem(".ots proof has an op result over 4096 bytes")
    return out


def _ots_attestation(reader: _Reader, msg: bytes) -> OtsAttestation:
    tag = reader.take(8)
    inner = _Reader(reader.varbytes(OTS_MAX_PAYLOAD))
    if tag == PENDING_TAG:
        raw = inner.varbytes(OTS_MAX_URI)
        if not set(raw) <= _URI_CHARS:
            raise AnchorProblem(".ots proof has a pending attestation with an invalid URI")
        found = OtsAttestation("pending", msg, uri=raw.decode("ascii"))
    elif tag == BITCOIN_TAG:
        found = OtsAttestation("bitcoin", msg, height=inner.varuint())
        if len(msg) != 32:
            raise AnchorProblem(".ots proof has a Bitcoin attestation on a message that is not "
                                "32 bytes (a block merkle root)")
    else:
        return OtsAttestation("unknown", msg, tag=tag)
    if inner.pos != len(inner.data):
        raise AnchorProblem(".ots proof has trailing bytes in an attestation")
    return found


def read_ots(data: bytes) -> OtsProof:
    """Parse a detached .ots file and recompute every op from its digest."""
    if len(data) > MAX_PROOF_BYTES:
        raise AnchorProblem(".ots proof over 256 KiB")
    reader = _Reader(data)
    if reader.take(len(OTS_MAGIC)) != OTS_MAGIC:
        raise AnchorProblem("not an .ots proof (bad magic)")
    if reader.varuint() != 1:
        raise AnchorProblem(".ots proof is not of major version 1")
    if reader.take(1) != b"\x08":
        raise AnchorProblem(".ots proof's file hash op is not SHA-256")
    digest = reader.take(32)
    found: list[OtsAttestation] = []
    # Depth first, as serialized, without Python recursion: a node's items are
    # `0xff item` repeated, then a last `item`; an op's subtree follows the op at once.
    stack: list[tuple[bytes, int]] = [(digest, 0)]
    while stack:
        msg, depth = stack.pop()
        if depth >= OTS_MAX_DEPTH:
            raise AnchorProblem(".ots proof nested over 256 levels")
        tag = reader.take(1)[0]
        if tag == 0xFF:
            stack.append((msg, depth))  # more items of this node after this one
            tag = reader.take(1)[0]
        if tag == 0x00:
            if len(found) >= OTS_MAX_ATTESTATIONS:
                raise AnchorProblem(f".ots proof holds over {OTS_MAX_ATTESTATIONS} attestations")
            found.append(_ots_attestation(reader, msg))
        else:
            stack.append((_ots_op(tag, reader, msg), depth + 1))
    if reader.pos != len(data):
        raise AnchorProblem(".ots proof has trailing bytes")
    return OtsProof(digest, tuple(found))


# --- DER, just enough for a TimeStampToken -------------------------------------------------
MAX_TOKEN_BYTES = 64 * 1024
_MAX_CHILDREN = 64
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512}
_SHA256 = "2.16.840.1.101.3.4.2.1"
_RSA_PKCS1 = {"1.2.840.113549.1.1.1": None, "1.2.840.113549.1.1.11": _SHA256,
              "1.2.840.113549.1.1.12": "2.16.840.1.101.3.4.2.2",
              "1.2.840.113549.1.1.13": "2.16.840.1.101.3.4.2.3"}
_RSA_PSS = "1.2.840.113549.1.1.10"
_ECDSA = {"1.2.840.10045.2.1": None, "1.2.840.10045.4.3.2": _SHA256,
          "1.2.840.10045.4.3.3": "2.16.840.1.101.3.4.2.2",
          "1.2.840.10045.4.3.4": "2.16.840.1.101.3.4.2.3"}
_ED25519 = "1.3.101.112"


@dataclass(frozen=True)
class _Tlv:
    tag: int
    data: bytes
    start: int  # of the header
    body: int  # of the content
    end: int

    @property
    def content(self) -> bytes:
        return self.data[self.body:self.end]

    @property
    def raw(self) -> bytes:
        return self.data[self.start:self.end]

    def children(self, what: str) -> list[_Tlv]:
        out: list[_Tlv] = []
        pos = self.body
        while pos < self.end:
            if len(out) >= _MAX_CHILDREN:
                raise AnchorProblem(f"token: {what} has over {_MAX_CHILDREN} elements")
            item = _tlv(self.data, pos, self.end, what)
            out.append(item)
            pos = item.end
        return out


def _tlv(data: bytes, pos: int, end: int, what: str) -> _Tlv:
    """One DER element at `pos`: a low tag, a definite minimal length, inside `end`."""
    if pos + 2 > end:
        raise AnchorProblem(f"token: {what} truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise AnchorProblem(f"token: {what} has a multi-byte tag")
    body = pos + 2
    if first < 0x80:
        size = first
    elif first in (0x81, 0x82, 0x83):
        count = first & 0x7F
        if body + count > end:
            raise AnchorProblem(f"token: {what} truncated")
        size = int.from_bytes(data[body:body + count], "big")
        if size < 0x80 or size >> (8 * (count - 1)) == 0:
            raise AnchorProblem(f"token: {what} has a non-minimal DER length")
        body += count
    else:
        raise AnchorProblem(f"token: {what} has an indefinite or oversized length")
    if body + size > end:
        raise AnchorProblem(f"token: {what} truncated")
    return _Tlv(tag, data, pos, body, body + size)


def _expect(item: _Tlv, tag: int, what: str) -> _Tlv:
    if item.tag != tag:
        raise AnchorProblem(f"token: {what} is not of DER tag 0x{tag:02x}")
    return item


def _oid(item: _Tlv, what: str) -> str:
    raw = _expect(item, 0x06, what).content
    if not raw or raw[-1] & 0x80:
        raise AnchorProblem(f"token: {what} is not an object identifier")
    parts: list[int] = []
    value = 0
    for index, byte in enumerate(raw):
        if value == 0 and byte == 0x80 and (index == 0 or not raw[index - 1] & 0x80):
            raise AnchorProblem(f"token: {what} is a non-minimal object identifier")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(str(n) for n in (first, parts[0] - 40 * first, *parts[1:]))


def _integer(item: _Tlv, what: str) -> int:
    raw = _expect(item, 0x02, what).content
    if not raw or (len(raw) > 1 and (raw[0], raw[1] & 0x80) in ((0, 0), (0xFF, 0x80))):
        raise AnchorProblem(f"token: {what} is not a DER integer")
    return int.from_bytes(raw, "big", signed=True)


def _algorithm(item: _Tlv, what: str) -> str:
    parts = _expect(item, 0x30, what).children(what)
    if not 1 <= len(parts) <= 2:
        raise AnchorProblem(f"token: {what} is not an AlgorithmIdentifier")
    oid = _oid(parts[0], what)
    # Parameters: absent or NULL, but RSASSA-PSS's (a SEQUENCE).
    if len(parts) == 2 and (parts[1].tag, parts[1].content) != (
            (0x30, parts[1].content) if oid == _RSA_PSS else (0x05, b"")):
        raise AnchorProblem(f"token: {what} has parameters it cannot have")
    return oid


@dataclass(frozen=True)
class Rfc3161Token:
    """What the reader found in a TimeStampToken (nothing is verified yet)."""

    imprint_algorithm: str
    imprint: bytes
    tst_info: bytes  # eContent
    digest_algorithm: str
    message_digest: bytes
    signed_attrs: bytes  # re-encoded as a DER SET, as signed
    signature_algorithm: str
    signature: bytes
    sid_issuer: bytes | None  # DER Name (IssuerAndSerialNumber) ...
    sid_serial: int | None
    sid_key_id: bytes | None  # ... or subjectKeyIdentifier
    certificates: tuple[bytes, ...]


def read_rfc3161_token(token: bytes) -> Rfc3161Token:
    """Parse a DER TimeStampToken strictly (RFC 3161 2.4.2, RFC 5652 5)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise AnchorProblem("token over 64 KiB")
    outer = _expect(_tlv(token, 0, len(token), "ContentInfo"), 0x30, "ContentInfo")
    if outer.end != len(token):
        raise AnchorProblem("token: trailing bytes after the ContentInfo")
    info = outer.children("ContentInfo")
    if len(info) != 2 or _oid(info[0], "contentType") != OID_SIGNED_DATA:
        raise AnchorProblem("token: not a CMS SignedData")
    wrapped = _expect(info[1], 0xA0, "content").children("content")
    if len(wrapped) != 1:
        raise AnchorProblem("token: content is not one SignedData")
    parts = _expect(wrapped[0], 0x30, "SignedData").children("SignedData")
    if len(parts) < 4 or _integer(parts[0], "SignedData version") != 3:
        raise AnchorProblem("token: SignedData is not of version 3")
    digest_algorithms = {_algorithm(a, "digestAlgorithms") for a in
                         _expect(parts[1], 0x31, "digestAlgorithms").children("digestAlgorithms")}
    encap = _expect(parts[2], 0x30, "encapContentInfo").children("encapContentInfo")
    if len(encap) != 2 or _oid(encap[0], "eContentType") != OID_TST_INFO:
        raise AnchorProblem("token: the signed content is not a TSTInfo")
    explicit = _expect(encap[1], 0xA0, "eContent").children("eContent")
    if len(explicit) != 1:
        raise AnchorProblem("token: eContent is not one OCTET STRING")
    tst_info = _expect(explicit[0], 0x04, "eContent").content
    certificates: tuple[bytes, ...] = ()
    rest = parts[3:]
    if rest and rest[0].tag == 0xA0:
        certificates = tuple(_expect(c, 0x30, "certificate").raw
                             for c in rest[0].children("certificates"))
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:
        rest = rest[1:]  # crls: not used
    if len(rest) != 1:
        raise AnchorProblem("token: SignedData does not end with its signerInfos")
    signers = _expect(rest[0], 0x31, "signerInfos").children("signerInfos")
    if len(signers) != 1:
        raise AnchorProblem("token: not exactly one SignerInfo (RFC 3161 2.4.2)")
    signer = _expect(signers[0], 0x30, "SignerInfo").children("SignerInfo")
    if len(signer) not in (6, 7):
        raise AnchorProblem("token: SignerInfo is not {version, sid, digestAlgorithm, "
                            "signedAttrs, signatureAlgorithm, signature}")
    version = _integer(signer[0], "SignerInfo version")
    sid_issuer = sid_key_id = None
    sid_serial: int | None = None
    if version == 1:
        sid = _expect(signer[1], 0x30, "sid").children("sid")
        if len(sid) != 2:
            raise AnchorProblem("token: sid is not an IssuerAndSerialNumber")
        sid_issuer = _expect(sid[0], 0x30, "sid issuer").raw
        sid_serial = _integer(sid[1], "sid serialNumber")
    elif version == 3:
        sid_key_id = _expect(signer[1], 0x80, "sid subjectKeyIdentifier").content
    else:
        raise AnchorProblem("token: SignerInfo is not of version 1 or 3")
    digest_algorithm = _algorithm(signer[2], "digestAlgorithm")
    if digest_algorithm not in HASHES or digest_algorithm not in digest_algorithms:
        raise AnchorProblem("token: the signer's digest algorithm is not SHA-256/384/512 of "
                            "the SignedData's digestAlgorithms")
    attrs = _expect(signer[3], 0xA0, "signedAttrs")
    content_type = message_digest = None
    for attr in attrs.children("signedAttrs"):
        pair = _expect(attr, 0x30, "attribute").children("attribute")
        if len(pair) != 2:
            raise AnchorProblem("token: an attribute is not {type, values}")
        kind = _oid(pair[0], "attribute type")
        values = _expect(pair[1], 0x31, "attribute values").children("attribute values")
        if kind in (OID_CONTENT_TYPE, OID_MESSAGE_DIGEST):
            if len(values) != 1 or (content_type if kind == OID_CONTENT_TYPE
                                    else message_digest) is not None:
                raise AnchorProblem("token: contentType or messageDigest is not single-valued")
            if kind == OID_CONTENT_TYPE:
                content_type = _oid(values[0], "contentType attribute")
            else:
                message_digest = _expect(values[0], 0x04, "messageDigest").content
    if content_type != OID_TST_INFO or message_digest is None:
        raise AnchorProblem("token: signedAttrs lack the contentType TSTInfo or messageDigest")
    signed_attrs = b"\x31" + token[attrs.start + 1:attrs.end]  # [0] IMPLICIT -> SET
    signature_algorithm = _algorithm(signer[4], "signatureAlgorithm")
    signature = _expect(signer[5], 0x04, "signature").content
    if len(signer) == 7:
        _expect(signer[6], 0xA1, "unsignedAttrs")
    algorithm, imprint = _imprint(tst_info)
    return Rfc3161Token(algorithm, imprint, tst_info, digest_algorithm, message_digest,
                        signed_attrs, signature_algorithm, signature, sid_issuer, sid_serial,
                        sid_key_id, certificates)


def _imprint(tst_info: bytes) -> tuple[str, bytes]:
    top = _expect(_tlv(tst_info, 0, len(tst_info), "TSTInfo"), 0x30, "TSTInfo")
    if top.end != len(tst_info):
        raise AnchorProblem("token: trailing bytes after the TSTInfo")
    fields = top.children("TSTInfo")
    if len(fields) < 5 or _integer(fields[0], "TSTInfo version") != 1:
        raise AnchorProblem("token: TSTInfo is not of version 1")
    _oid(fields[1], "TSTInfo policy")
    imprint = _expect(fields[2], 0x30, "messageImprint").children("messageImprint")
    if len(imprint) != 2:
        raise AnchorProblem("token: messageImprint is not {hashAlgorithm, hashedMessage}")
    _integer(fields[3], "TSTInfo serialNumber")
    _expect(fields[4], 0x18, "TSTInfo genTime")
    return (_algorithm(imprint[0], "messageImprint hashAlgorithm"),
            _expect(imprint[1], 0x04, "hashedMessage").content)


def _signed_by(cert: x509.Certificate, token: Rfc3161Token) -> bool:
    """Whether the token's sid names this certificate."""
    if token.sid_key_id is not None:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return False
        return ski.digest == token.sid_key_id
    return cert.serial_number == token.sid_serial and \
        cert.issuer.public_bytes() == token.sid_issuer


def _verify_signature(cert: x509.Certificate, token: Rfc3161Token) -> None:
    algorithm = HASHES[token.digest_algorithm]()
    key = cert.public_key()
    data, signature, named = token.signed_attrs, token.signature, token.signature_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and named in _RSA_PKCS1:
            _same_hash(_RSA_PKCS1[named], token)
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, rsa.RSAPublicKey) and named == _RSA_PSS:
            key.verify(signature, data, padding.PSS(padding.MGF1(algorithm),
                                                    padding.PSS.AUTO), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and named in _ECDSA:
            _same_hash(_ECDSA[named], token)
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey) and named == _ED25519:
            key.verify(signature, data)
        else:
            raise AnchorProblem(f"token: signature algorithm {named} does not fit the TSA "
                                "certificate's key")
    except (InvalidSignature, UnsupportedAlgorithm, ValueError) as exc:
        if isinstance(exc, AnchorProblem):
            raise
        raise AnchorProblem("token: the CMS signature does not verify with the TSA "
                            "certificate") from None


def _same_hash(named: str | None, token: Rfc3161Token) -> None:
    if named is not None and named != token.digest_algorithm:
        raise AnchorProblem("token: signature and digest algorithms name different hashes")


def _time_stamping(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return eku.critical and ExtendedKeyUsageOID.TIME_STAMPING in eku.value


def verify_rfc3161(token_bytes: bytes, digest: bytes,
                   pinned: Sequence[x509.Certificate]) -> x509.Certificate:
    """Check a token over `digest` (SHA-256 of the closing text); the certificate
    whose key verified it. With `pinned`, that certificate must be pinned or be
    directly issued by a pinned one (and every certificate the token carries, too)."""
    try:
        return _verify_rfc3161(token_bytes, digest, pinned)
    except AnchorProblem:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise AnchorProblem(f"token: a certificate is malformed ({type(exc).__name__})") \
            from None


def _verify_rfc3161(token_bytes: bytes, digest: bytes,
                    pinned: Sequence[x509.Certificate]) -> x509.Certificate:
    token = read_rfc3161_token(token_bytes)
    if token.imprint_algorithm != _SHA256 or token.imprint != digest:
        raise AnchorProblem("token: its message imprint is not SHA-256 of this closing "
                            "(a token for another digest)")
    hashed = hashlib.new(HASHES[token.digest_algorithm]().name, token.tst_info).digest()
    if hashed != token.message_digest:
        raise AnchorProblem("token: messageDigest is not the hash of its TSTInfo")
    carried: list[x509.Certificate] = []
    for raw in token.certificates:
        parts = _tlv(raw, 0, len(raw), "certificate").children("certificate")
        if len(parts) != 3 or _expect(parts[2], 0x03, "certificate signature").content[:1] \
                != b"\x00":
            raise AnchorProblem("token: a certificate it carries is not {tbs, algorithm, "
                                "signature (a whole-byte BIT STRING)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a certificate it only warns about: refused
                carried.append(x509.load_der_x509_certificate(raw))
        except (ValueError, x509.InvalidVersion, Warning):
            raise AnchorProblem("token: a certificate it carries is unreadable") from None
    if pinned:
        for cert in carried:
            if cert not in pinned and not any(_issued_by(cert, ca) for ca in pinned):
                raise AnchorProblem("token: carries a certificate neither pinned by --tsa-cert "
                                    "nor issued by a pinned one (another TSA)")
        candidates = [c for c in pinned if _signed_by(c, token)] + \
            [c for c in carried if _signed_by(c, token)]
    else:
        candidates = [c for c in carried if _signed_by(c, token)]
    if not candidates:
        raise AnchorProblem("token: signed by no pinned TSA certificate (another TSA)"
                            if pinned else "token: carries no certificate of its signer, and "
                            "no --tsa-cert was given")
    signer = candidates[0]
    if not _time_stamping(signer):
        raise AnchorProblem("token: the TSA certificate lacks the critical timeStamping EKU")
    _verify_signature(signer, token)
    return signer


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def load_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    """The certificates of PEM files (`--tsa-cert`); ValueError names a bad file."""
    out: list[x509.Certificate] = []
    for path in paths:
        try:
            out.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: no PEM certificate ({type(exc).__name__})") from None
    return out


# --- the anchors.jsonl lines ---------------------------------------------------------------
@dataclass
class AnchorChecker:
    """Checks anchors.jsonl line by line; `notes()` says what stayed unverified.

    `closings`: entry seq of each closing.sealed -> (closing id, closing text)."""

    closings: dict[int, tuple[Any, Any]]
    pinned: Sequence[x509.Certificate] = ()
    seen: set[tuple[int, str, str]] = field(default_factory=set)
    bitcoin: list[int] = field(default_factory=list)
    pending_ots: int = 0
    unknown: int = 0
    tokens: int = 0
    carried_subjects: set[str] = field(default_factory=set)
    no_proof: int = 0

    def check(self, line: int, anchor: Any) -> None:
        where = f"anchors.jsonl line {line}"
        if not isinstance(anchor, dict) or set(anchor) != ANCHOR_FIELDS:
            raise AnchorProblem(f"{where}: not an anchor object with the fields "
                                f"{sorted(ANCHOR_FIELDS)}")
        seq, method, endpoint = anchor["closing_entry_seq"], anchor["method"], anchor["endpoint"]
        closing = self.closings.get(seq) if type(seq) is int else None
        if closing is None:
            raise AnchorProblem(f"{where}: closing_entry_seq {seq!r} names no closing of the "
                                "bundle")
        closing_id, text = closing
        proof_name = f"{method} proof from {endpoint}"
        where = f"{where} (closing {closing_id} at entry {seq}, {proof_name})"
        if anchor["closing_id"] != closing_id:
            raise AnchorProblem(f"{where}: closing_id {anchor['closing_id']!r} is not the id of "
                                f"the closing at entry {seq}")
        if method not in PROOF_FORMATS or not isinstance(endpoint, str):
            raise AnchorProblem(f"{where}: method is not opentimestamps or rfc3161")
        if (seq, method, endpoint) in self.seen:
            raise AnchorProblem(f"{where}: a second anchor of this closing at this endpoint")
        self.seen.add((seq, method, endpoint))
        if not isinstance(text, str):
            raise AnchorProblem(f"{where}: the closing has no text")
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if anchor["digest"] != digest.hex():
            raise AnchorProblem(f"{where}: digest is not the SHA-256 of the closing in entry "
                                f"{seq}")
        if anchor["proof_format"] != PROOF_FORMATS[method]:
            raise AnchorProblem(f"{where}: proof_format is not {PROOF_FORMATS[method]}")
        status = anchor["status"]
        if status not in (PENDING, SUBMITTED, COMPLETE) or (
                method == RFC3161 and status == SUBMITTED):
            raise AnchorProblem(f"{where}: status {status!r} is not one a {method} anchor has")
        if (status == COMPLETE) != (anchor["completed_at"] is not None):
            raise AnchorProblem(f"{where}: completed_at is set if and only if status is "
                                "complete, and here it is not so")
        proof = anchor["proof"]
        if status == PENDING:
            if proof is not None:
                raise AnchorProblem(f"{where}: status is pending but a proof is there")
            self.no_proof += 1
            return
        raw = _base64(proof)
        if raw is None:
            raise AnchorProblem(f"{where}: proof is not base64 of at most 256 KiB")
        try:
            if method == OPENTIMESTAMPS:
                self._ots(raw, digest, status)
            else:
                signer = verify_rfc3161(raw, digest, self.pinned)
                self.tokens += 1
                if not self.pinned:
                    self.carried_subjects.add(signer.subject.rfc4514_string())
        except AnchorProblem as exc:
            raise AnchorProblem(f"{where}: {exc}") from None

    def _ots(self, raw: bytes, digest: bytes, status: str) -> None:
        proof = read_ots(raw)
        if proof.digest != digest:
            raise AnchorProblem(".ots proof is for another digest (its file digest is not "
                                "SHA-256 of this closing)")
        if not proof.attestations:
            raise AnchorProblem(".ots proof holds no attestation")
        heights = [a.height for a in proof.attestations if a.kind == "bitcoin"]
        if status == COMPLETE and not heights:
            raise AnchorProblem("status is complete but the .ots proof holds no Bitcoin "
                                "attestation")
        if status == SUBMITTED and heights:
            raise AnchorProblem("status is submitted but the .ots proof holds a Bitcoin "
                                "attestation")
        self.bitcoin.extend(heights)
        self.pending_ots += sum(a.kind == "pending" for a in proof.attestations)
        self.unknown += sum(a.kind == "unknown" for a in proof.attestations)

    def notes(self) -> list[str]:
        """What the check could not establish offline, one line each."""
        out: list[str] = []
        if self.bitcoin:
            heights = sorted(set(self.bitcoin))
            out.append(f"NOT VERIFIED: {len(self.bitcoin)} OpenTimestamps Bitcoin attestations "
                       f"(blocks {heights[0]}..{heights[-1]}): their ops were recomputed from "
                       "each closing's SHA-256, but the merkle roots they lead to were not "
                       "checked against Bitcoin block headers (no node offline; `ots verify` "
                       "with a node does it)")
        if self.pending_ots:
            out.append(f"NOT VERIFIED: {self.pending_ots} pending OpenTimestamps attestations: "
                       "a calendar's promise, not yet in a block")
        if self.unknown:
            out.append(f"NOT VERIFIED: {self.unknown} OpenTimestamps attestations of an "
                       "unknown kind")
        if self.tokens and not self.pinned:
            out.append(f"NOTE: {self.tokens} RFC 3161 tokens verified against the TSA "
                       f"certificate they carry ({'; '.join(sorted(self.carried_subjects))}), "
                       "which is trusted only as far as you trust it: --tsa-cert pins it")
        elif self.tokens:
            out.append(f"NOTE: {self.tokens} RFC 3161 tokens verified against the pinned "
                       "--tsa-cert certificates (validity dates and revocation not checked)")
        if self.no_proof:
            out.append(f"NOT VERIFIED: {self.no_proof} anchors are pending, with no proof yet")
        return out


def _base64(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) > (MAX_PROOF_BYTES * 4) // 3 + 4:
        return None
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    return raw if raw and base64.b64encode(raw).decode("ascii") == value else None
