"""Anchoring clients: OpenTimestamps calendars (`opentimestamps`) and an RFC 3161
time-stamping authority (`rfc3161-client`, which verifies the tokens).

Every call has a short timeout and every failure becomes `AnchorError` with a
short reason of our own (an HTTP status code, an exception type, which check
failed), never text from the server.

OpenTimestamps proof = a detached timestamp file (.ots, the library's
DetachedTimestampFile, serialized by its serialization context) over the
closing's SHA-256: `ots info` and `ots verify` read it as saved, with the
closing's text as the file. As the `ots` client does, a random 16-byte nonce
is appended to the digest and hashed before submission, so a calendar never
learns the digest itself. Upgrading asks for each pending attestation the
calendar it names, but only a configured calendar or one of the library's
default whitelist (never an arbitrary URL a calendar answered); the proof is
complete when it holds a Bitcoin block header attestation. That attestation is
not checked against a Bitcoin block here (no node): `ots verify` does that.

RFC 3161 token = the DER TimeStampToken of a TSA answer whose status is
granted, whose nonce is the request's, whose message imprint is SHA-256 of
the closing text, and whose CMS signature verifies up to the configured trust
(PEM: the root CA; intermediates and the TSA's own certificate, to pin it, may
follow); the signing certificate must carry the critical timeStamping EKU.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from opentimestamps.calendar import (  # type: ignore[import-untyped]
    DEFAULT_CALENDAR_WHITELIST,
    CommitmentNotFoundError,
    RemoteCalendar,
)
from opentimestamps.core.notary import (  # type: ignore[import-untyped]
    BitcoinBlockHeaderAttestation,
    PendingAttestation,
)
from opentimestamps.core.op import OpAppend, OpSHA256  # type: ignore[import-untyped]
from opentimestamps.core.serialize import (  # type: ignore[import-untyped]
    BytesDeserializationContext,
    BytesSerializationContext,
)
from opentimestamps.core.timestamp import (  # type: ignore[import-untyped]
    DetachedTimestampFile,
    Timestamp,
)
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from chalicelib.ports import AnchorUnavailable, OtsUpgrade, TsaToken

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024
MAX_PROOF_BYTES = 256 * 1024  # as 0017_anchors.sql
USER_AGENT = "einvoice-anchoring"
_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class AnchorError(AnchorUnavailable):
    """An endpoint gave no usable answer; `reason` is safe to store and log."""


def _reason(exc: BaseException) -> str:
    """Our words for a failure: a status code or an exception type only."""
    if isinstance(exc, AnchorError):
        return exc.reason
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {int(exc.code)}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return f"connection failed: {_type(inner)}"
        return "connection failed: URLError"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError | OSError | http.client.HTTPException):
        return f"connection failed: {_type(exc)}"
    return f"bad answer: {_type(exc)}"


def _type(exc: BaseException) -> str:
    return type(exc).__name__[:60]


def _is_panic(exc: BaseException) -> bool:
    # A Rust panic inside rfc3161-client surfaces as pyo3's PanicException,
    # a BaseException: a malformed answer must not take the job down.
    return type(exc).__name__ == "PanicException"


def _calendar_base(url: str) -> str:
    # RemoteCalendar joins "digest" and "timestamp/<hex>" onto its URL (urljoin).
    return url if url.endswith("/") else url + "/"


def _normalized(url: str) -> str:
    return url.rstrip("/")


# -- OpenTimestamps -------------------------------------------------------------------------

def _serialize(detached: Any) -> bytes:
    ctx = BytesSerializationContext()
    detached.serialize(ctx)
    data: bytes = ctx.getbytes()
    if len(data) > MAX_PROOF_BYTES:
        raise AnchorError("proof too large")
    return data


def read_ots(proof: bytes) -> Any:
    """The DetachedTimestampFile of a stored proof (its timestamp's msg is the digest)."""
    return DetachedTimestampFile.deserialize(BytesDeserializationContext(proof))


def ots_bitcoin_heights(proof: bytes) -> list[int]:
    """The Bitcoin block heights the proof claims (not checked against blocks)."""
    return sorted({a.height for _, a in read_ots(proof).timestamp.all_attestations()
                   if isinstance(a, BitcoinBlockHeaderAttestation)})


def ots_pending_calendars(proof: bytes) -> list[str]:
    return sorted({a.uri for _, a in read_ots(proof).timestamp.all_attestations()
                   if isinstance(a, PendingAttestation)})


def _complete(stamp: Any) -> bool:
    return any(isinstance(a, BitcoinBlockHeaderAttestation) for _, a in stamp.all_attestations())


def _pending_points(stamp: Any) -> list[tuple[Any, str]]:
    """(sub-timestamp, calendar URI) for each pending attestation in the tree."""
    found: list[tuple[Any, str]] = []
    todo = [stamp]
    while todo:
        node = todo.pop()
        found.extend((node, a.uri) for a in node.attestations if isinstance(a, PendingAttestation))
        todo.extend(node.ops.values())
    return found


class OpenTimestampsCalendar:
    """One OpenTimestamps calendar (or aggregator pool)."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS,
                 trusted: tuple[str, ...] = ()) -> None:
        self.url = _normalized(url)
        self._timeout = timeout
        # Calendars an upgrade may ask: this one, the other configured ones, and
        # the library's default whitelist (a pool hands its digests to those).
        self._trusted = {self.url, *(_normalized(u) for u in trusted)}

    def _may_ask(self, uri: str) -> bool:
        return _normalized(uri) in self._trusted or uri in DEFAULT_CALENDAR_WHITELIST

    def submit(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes (SHA-256)")
        root = Timestamp(digest)
        commitment = root.ops.add(OpAppend(os.urandom(16))).ops.add(OpSHA256())
        try:
            answer = RemoteCalendar(_calendar_base(self.url), user_agent=USER_AGENT).submit(
                commitment.msg, timeout=self._timeout)
            commitment.merge(answer)
        except Exception as exc:  # noqa: BLE001 - every failure becomes our own reason
            raise AnchorError(_reason(exc)) from None
        if not any(True for _ in commitment.all_attestations()):
            raise AnchorError("bad answer: no attestation")
        return _serialize(DetachedTimestampFile(OpSHA256(), root))

    def upgrade(self, proof: bytes) -> OtsUpgrade:
        try:
            detached = read_ots(proof)
        except Exception as exc:  # noqa: BLE001
            raise AnchorError(f"stored proof unreadable: {_type(exc)}") from None
        if _complete(detached.timestamp):
            return OtsUpgrade(proof, True)
        errors: list[str] = []
        asked = changed = False
        for node, uri in _pending_points(detached.timestamp):
            if not self._may_ask(uri):
                continue
            asked = True
            try:
                found = RemoteCalendar(_calendar_base(_normalized(uri)),
                                       user_agent=USER_AGENT).get_timestamp(
                    node.msg, timeout=self._timeout)
            except CommitmentNotFoundError:
                continue  # not in a block yet
            except Exception as exc:  # noqa: BLE001 - every failure becomes our own reason
                errors.append(_reason(exc))
                continue
            try:
                node.merge(found)
            except ValueError:
                errors.append("bad answer: another commitment")
                continue
            changed = True
        if not asked:
            raise AnchorError("no trusted calendar to ask")
        if errors and not changed:
            raise AnchorError(errors[0])
        if not changed:
            return OtsUpgrade(proof, False)
        return OtsUpgrade(_serialize(detached), _complete(detached.timestamp))


# -- RFC 3161 -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TsaTrust:
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    tsa_certificate: x509.Certificate | None = None

    @classmethod
    def from_pem(cls, pem: bytes) -> TsaTrust:
        """Self-signed certificates are roots; a certificate with the
        timeStamping EKU pins the TSA; any other is an intermediate."""
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        leaf: x509.Certificate | None = None
        for cert in x509.load_pem_x509_certificates(pem):
            if cert.issuer == cert.subject:
                roots.append(cert)
            elif _time_stamping(cert):
                if leaf is not None:
                    raise ValueError("the TSA trust file pins more than one TSA certificate")
                leaf = cert
            else:
                intermediates.append(cert)
        if not roots:
            raise ValueError("the TSA trust file holds no root (self-signed) certificate")
        return cls(tuple(roots), tuple(intermediates), leaf)

    @classmethod
    def from_file(cls, path: Path) -> TsaTrust:
        return cls.from_pem(path.read_bytes())

    def verifier(self, builder: VerifierBuilder) -> Any:
        for root in self.roots:
            builder = builder.add_root_certificate(root)
        for cert in self.intermediates:
            builder = builder.add_intermediate_certificate(cert)
        if self.tsa_certificate is not None:
            builder = builder.tsa_certificate(self.tsa_certificate)
        return builder.build()


def _time_stamping(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in eku


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx stays an error: the TSA URL is the one configured


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, timeout: float) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise AnchorError("not an http(s) URL")
    request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310
        "Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply",
        "User-Agent": USER_AGENT})
    with _OPENER.open(request, timeout=timeout) as answer:
        data: bytes = answer.read(MAX_ANSWER_BYTES + 1)
    if len(data) > MAX_ANSWER_BYTES:
        raise AnchorError("answer too large")
    return data


def _verification_reason(exc: VerificationError) -> str:
    text = str(exc)
    for needle, reason in (("Mismatch between messages", "token for another digest"),
                           ("Nonce mismatch", "token nonce mismatch"),
                           ("verifying certificates", "token signature or chain refused"),
                           ("EKU", "TSA certificate lacks the timeStamping EKU"),
                           ("PKIStatus", "TSA did not grant")):
        if needle in text:
            return f"token refused: {reason}"
    return "token refused"


def _check(response: TimeStampResponse, verifier: Any, digest: bytes) -> datetime:
    """Verify a decoded answer over `digest` (SHA-256); its genTime."""
    if response.status != PKIStatus.GRANTED:
        raise AnchorError(f"TSA refused: status {int(response.status)}")
    try:
        verifier.verify(response, digest)
        info = response.tst_info
        if info.message_imprint.hash_algorithm != _SHA256_OID:
            raise AnchorError("token refused: not SHA-256")
        gen_time: datetime = info.gen_time
    except VerificationError as exc:
        raise AnchorError(_verification_reason(exc)) from None
    except AnchorError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed token
        raise AnchorError(f"token refused: {_type(exc)}") from None
    except BaseException as exc:
        if _is_panic(exc):
            raise AnchorError("token refused: undecodable") from None
        raise
    return gen_time


class Rfc3161Authority:
    """One RFC 3161 TSA; every token is verified before it is returned."""

    def __init__(self, url: str, trust: TsaTrust, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = _normalized(url)
        self._trust = trust
        self._timeout = timeout

    def timestamp(self, message: bytes) -> TsaToken:
        request = TimestampRequestBuilder().data(message).hash_algorithm(
            HashAlgorithm.SHA256).build()  # with a random nonce, asking for the certificate
        try:
            body = _post(self.url, request.as_bytes(), self._timeout)
        except Exception as exc:  # noqa: BLE001 - every failure becomes our own reason
            raise AnchorError(_reason(exc)) from None
        try:
            response = decode_timestamp_response(body)
        except Exception as exc:  # noqa: BLE001
            raise AnchorError(f"bad answer: {_type(exc)}") from None
        except BaseException as exc:
            if _is_panic(exc):
                raise AnchorError("bad answer: undecodable") from None
            raise
        verifier = self._trust.verifier(VerifierBuilder.from_request(request))
        gen_time = _check(response, verifier, hashlib.sha256(message).digest())
        try:
            token = response.time_stamp_token()
        except Exception as exc:  # noqa: BLE001
            raise AnchorError(f"bad answer: {_type(exc)}") from None
        return TsaToken(token, gen_time)


def verify_rfc3161_token(token: bytes, digest: bytes, trust: TsaTrust) -> datetime:
    """Verify a stored token (DER TimeStampToken) over `digest`, the SHA-256 of
    the closing's text; its genTime. (`openssl ts -verify -token_in -in token.der
    -data closing.txt -CAfile root.pem` checks the same.)"""
    # rfc3161-client reads answers: wrap the token as a granted TimeStampResp.
    body = b"\x30\x03\x02\x01\x00" + token  # PKIStatusInfo { status granted }
    try:
        response = decode_timestamp_response(_der_sequence(body))
    except Exception as exc:  # noqa: BLE001
        raise AnchorError(f"token unreadable: {_type(exc)}") from None
    return _check(response, trust.verifier(VerifierBuilder()), digest)


def _der_sequence(content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return b"\x30" + bytes([size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + content
