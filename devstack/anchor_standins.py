"""Local stand-ins for the anchoring services, on 127.0.0.1, speaking the real
protocols: an OpenTimestamps calendar and an RFC 3161 time-stamping authority.

- `CalendarStandIn`: the calendar HTTP protocol of opentimestamps-server.
  `POST /digest` (body: the digest, at most 64 bytes) answers a serialized
  timestamp (the `opentimestamps` library's own objects and serializer): the
  digest, a random nonce appended, SHA-256, and a PendingAttestation naming
  this calendar's URL. `GET /timestamp/<hex commitment>` answers 404 until
  `confirm()`, then a timestamp from that commitment to a made-up Bitcoin block
  merkle root carrying a BitcoinBlockHeaderAttestation. No block exists: the
  attestation has the right form, not the weight of a real one.
- `TsaStandIn`: `POST` of a DER TimeStampReq (`application/timestamp-query`)
  answers a DER TimeStampResp (`application/timestamp-reply`) whose token is a
  CMS SignedData over a TSTInfo (RFC 3161, ESS signing-certificate-v2 of RFC
  5816), signed by a test TSA key whose certificate (critical EKU
  timeStamping) is issued by a test root made here with `cryptography`; the
  CMS is built with `asn1crypto`. `answer` makes it misbehave on purpose: a
  token for another digest, one signed by another key (an impostor CA with the
  same names), or a rejection.
- `dead_endpoint()`: a URL on a closed port of 127.0.0.1 (connection refused).

Used by tests/integration/test_anchoring.py and by the local run command.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from asn1crypto import cms, tsp  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from opentimestamps.core.notary import (  # type: ignore[import-untyped]
    BitcoinBlockHeaderAttestation,
    PendingAttestation,
)
from opentimestamps.core.op import OpAppend, OpPrepend, OpSHA256  # type: ignore[import-untyped]
from opentimestamps.core.serialize import (  # type: ignore[import-untyped]
    BytesSerializationContext,
)
from opentimestamps.core.timestamp import Timestamp  # type: ignore[import-untyped]

TSA_POLICY = "1.3.6.1.4.1.55555.1.1"  # a private-arc test policy OID
TsaAnswer = Literal["good", "other_digest", "other_key", "reject"]


def dead_endpoint(path: str = "") -> str:
    """A URL nobody listens on: a port bound then closed (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class _Server:
    """A threaded HTTP server on 127.0.0.1 that can stop and start again on the
    same port (a service going down, then coming back)."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        if self._httpd is not None:
            return
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        httpd.daemon_threads = True
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,),
                                        name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr

    def _body(self, limit: int) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > limit:
            self._answer(413, b"too large", "text/plain")
            return None
        return self.rfile.read(length)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serialized(stamp: Any) -> bytes:
    ctx = BytesSerializationContext()
    stamp.serialize(ctx)
    data: bytes = ctx.getbytes()
    return data


class CalendarStandIn(_Server):
    """An OpenTimestamps calendar (see the module docstring)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._lock = threading.Lock()
        self._pending: set[bytes] = set()  # commitments carrying our PendingAttestation
        self._confirmed = False
        self._height = 900000 + secrets.randbelow(1000)
        self.submissions = 0

    def confirm(self) -> None:
        """From now on, every commitment this calendar issued is "in a block"."""
        with self._lock:
            self._confirmed = True

    def _submit(self, digest: bytes) -> bytes:
        stamp = Timestamp(digest)
        # As the real calendar does: a nonce of its own, so what it stores and
        # later answers about is not the requester's message.
        commitment = stamp.ops.add(OpAppend(os.urandom(16))).ops.add(OpSHA256())
        commitment.attestations.add(PendingAttestation(self.url))
        with self._lock:
            self._pending.add(commitment.msg)
            self.submissions += 1
        return _serialized(stamp)

    def _upgrade(self, commitment: bytes) -> bytes | None:
        with self._lock:
            if commitment not in self._pending or not self._confirmed:
                return None
        # commitment -> (inside a transaction) -> txid -> one merkle step -> block merkle root
        stamp = Timestamp(commitment)
        tx = stamp.ops.add(OpPrepend(os.urandom(41))).ops.add(OpAppend(os.urandom(12)))
        txid = tx.ops.add(OpSHA256()).ops.add(OpSHA256())
        root = txid.ops.add(OpAppend(os.urandom(32))).ops.add(OpSHA256()).ops.add(OpSHA256())
        root.attestations.add(BitcoinBlockHeaderAttestation(self._height))
        return _serialized(stamp)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        calendar = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                if self.path != "/digest":
                    self._answer(404, b"Not found", "text/plain")
                    return
                body = self._body(64)
                if body is None:
                    return
                if not body:
                    self._answer(400, b"digest missing", "text/plain")
                    return
                self._answer(200, calendar._submit(body), "application/octet-stream")

            def do_GET(self) -> None:
                prefix = "/timestamp/"
                if not self.path.startswith(prefix):
                    self._answer(404, b"Not found", "text/plain")
                    return
                try:
                    commitment = bytes.fromhex(self.path[len(prefix):])
                except ValueError:
                    self._answer(400, b"commitment must be hex", "text/plain")
                    return
                found = calendar._upgrade(commitment)
                if found is None:
                    self._answer(404, b"Pending confirmation in Bitcoin blockchain",
                                 "text/plain")
                    return
                self._answer(200, found, "application/octet-stream")

        return Handler


class _Authority:
    """A test CA and the TSA certificate it issued (EC P-256)."""

    def __init__(self, name: str) -> None:
        now = datetime.now(UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "einvoice tests"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self.ca_key, hashes.SHA256()))
        self.key = ec.generate_private_key(ec.SECP256R1())
        tsa_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "einvoice tests"),
                              x509.NameAttribute(NameOID.COMMON_NAME, f"{name} TSA")])
        self.certificate = (
            x509.CertificateBuilder().subject_name(tsa_name).issuer_name(ca_name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .sign(self.ca_key, hashes.SHA256()))

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


class TsaStandIn(_Server):
    """An RFC 3161 time-stamping authority (see the module docstring)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.authority = _Authority("einvoice test")
        self._impostor = _Authority("einvoice test")  # same names, other keys
        self.answer: TsaAnswer = "good"
        self.requests = 0
        self._serial = secrets.randbelow(1 << 32)
        self._lock = threading.Lock()

    @property
    def root_pem(self) -> bytes:
        """The root to trust (EINVOICE_TSA_CERTIFICATE_FILE)."""
        return self.authority.root_pem

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_pem)
        return path

    def _respond(self, body: bytes) -> bytes:
        with self._lock:
            self.requests += 1
            self._serial += 1
            serial = self._serial
            answer = self.answer
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
        except ValueError:
            return _refusal("bad_data_format")
        if algorithm not in {"sha256", "sha384", "sha512"} or \
                len(hashed) != hashlib.new(algorithm).digest_size:
            return _refusal("bad_alg")
        if answer == "reject":
            return _refusal("system_failure")
        if answer == "other_digest":
            hashed = hashlib.new(algorithm, b"another document").digest()
        signer = self._impostor if answer == "other_key" else self.authority
        return _granted(signer, algorithm, hashed, request["nonce"].native,
                        bool(request["cert_req"].native), serial)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        authority = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self._answer(415, b"expected application/timestamp-query", "text/plain")
                    return
                body = self._body(16384)
                if body is None:
                    return
                self._answer(200, authority._respond(body), "application/timestamp-reply")

        return Handler


def _refusal(failure: str) -> bytes:
    # asn1crypto's TimeStampResp requires a token: a refusal has none (RFC 3161 2.4.2).
    status: bytes = tsp.PKIStatusInfo({
        "status": "rejection", "status_string": ["request refused"],
        "fail_info": tsp.PKIFailureInfo({failure})}).dump()
    return _der_sequence(status)


def _der_sequence(content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return b"\x30" + bytes([size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + content


def _granted(signer: _Authority, algorithm: str, hashed: bytes, nonce: int | None,
             cert_req: bool, serial: int) -> bytes:
    certificate = asn1_x509.Certificate.load(
        signer.certificate.public_bytes(serialization.Encoding.DER))
    info = tsp.TSTInfo({
        "version": "v1", "policy": TSA_POLICY,
        "message_imprint": {"hash_algorithm": {"algorithm": algorithm},
                            "hashed_message": hashed},
        "serial_number": serial,
        "gen_time": datetime.now(UTC).replace(microsecond=0),
        "accuracy": {"seconds": 1},
        "nonce": nonce,
        "tsa": asn1_x509.GeneralName({"directory_name": certificate.subject}),
    })
    content = info.dump()
    attributes = cms.CMSAttributes([
        {"type": "content_type", "values": ["tst_info"]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
        {"type": "signing_certificate_v2", "values": [{"certs": [{
            "cert_hash": hashlib.sha256(certificate.dump()).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": certificate.issuer})],
                "serial_number": certificate.serial_number}}]}]},
    ])
    # The signature covers the DER SET OF the signed attributes (RFC 5652 5.4).
    signature = signer.key.sign(attributes.dump(), ec.ECDSA(hashes.SHA256()))
    signed = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "tst_info", "content": info},
        "certificates": [certificate] if cert_req else None,
        "signer_infos": [{
            "version": "v1",
            "sid": {"issuer_and_serial_number": {"issuer": certificate.issuer,
                                                 "serial_number": certificate.serial_number}},
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        }],
    })
    token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
    data: bytes = tsp.TimeStampResp({"status": {"status": "granted"},
                                     "time_stamp_token": token}).dump()
    return data
