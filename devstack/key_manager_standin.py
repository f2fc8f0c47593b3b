"""A local stand-in for Scaleway Key Manager's HTTP API, on 127.0.0.1, for the
tests of chalicelib/adapters/key_manager.py.

It speaks the real API's paths and shapes (key-manager/v1alpha1): for a key of
`/regions/{region}/keys/{key_id}`, POST `/encrypt` {plaintext, associated_data}
-> {key_id, ciphertext}; `/decrypt` {ciphertext, associated_data} -> {key_id,
plaintext, ciphertext} (the last one re-encrypted under the newest version
when an older one made it, else null); `/generate-data-key` {algorithm,
without_plaintext} -> {key_id, algorithm, ciphertext, plaintext, created_at};
`/rotate` -> the key. Bytes are base64 in JSON. Every call needs the
`X-Auth-Token` header holding the token; errors are Scaleway's JSON error
shapes: 401 denied_authentication, 404 not_found, 400 invalid_arguments (a
ciphertext or associated data that does not decrypt), 412 precondition_failed
(a disabled key).

Each key version is a 256-bit AES-GCM key made here with `cryptography`; a
ciphertext is `0x01 | version (4 bytes) | nonce (12) | AES-256-GCM(plaintext,
aad = those 17 bytes | associated data)`, a format of this stand-in only (the
real service's is its own and opaque to its callers). `delete` stands for the
end of a deletion: the key is gone. (Key Manager schedules a deletion: the key
is unusable at once, restorable for 7 days, then gone for good; a protected
key cannot be deleted at all.)
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from devstack.anchor_standins import _Quiet, _Server

_PATH = re.compile(r"^/key-manager/v1alpha1/regions/([a-z]{2}-[a-z]{3})/keys/([^/]+)/"
                   r"(encrypt|decrypt|generate-data-key|rotate)$")
_HEADER = struct.Struct(">BI")
_MAX_BODY = 256 * 1024


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _invalid(argument: str, help_message: str) -> _Refused:
    return _Refused(400, {"details": [{"argument_name": argument, "reason": "constraint",
                                       "help_message": help_message}],
                          "message": "invalid argument(s)", "type": "invalid_arguments"})


class KeyManagerStandIn(_Server):
    """Key Manager for one region and one API token (see the module docstring)."""

    def __init__(self, token: str, region: str = "fr-par", port: int = 0) -> None:
        super().__init__(port)
        self.token = token
        self.region = region
        self._lock = threading.Lock()
        self._versions: dict[str, list[bytes]] = {}
        self._disabled: set[str] = set()
        self.calls: list[str] = []  # "<operation> <key id>", in order

    @property
    def api_url(self) -> str:
        return self.url

    def create_key(self) -> str:
        key_id = str(uuid.uuid4())
        with self._lock:
            self._versions[key_id] = [AESGCM.generate_key(bit_length=256)]
        return key_id

    def rotate(self, key_id: str) -> int:
        """A new key version for what is encrypted from now on; its number."""
        with self._lock:
            self._versions[key_id].append(AESGCM.generate_key(bit_length=256))
            return len(self._versions[key_id])

    def disable(self, key_id: str) -> None:
        with self._lock:
            self._disabled.add(key_id)

    def delete(self, key_id: str) -> None:
        """The key is gone: what it wrapped is lost."""
        with self._lock:
            self._versions.pop(key_id, None)

    def _encrypt(self, key_id: str, plaintext: bytes, associated: bytes) -> bytes:
        with self._lock:
            versions = self._versions[key_id]
            version, key = len(versions), versions[-1]
        header = _HEADER.pack(1, version)
        nonce = os.urandom(12)
        return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + associated)

    def _decrypt(self, key_id: str, ciphertext: bytes, associated: bytes) -> tuple[bytes, int]:
        if len(ciphertext) < _HEADER.size + 12 + 16:
            raise _invalid("ciphertext", "not a ciphertext of this key")
        fmt, version = _HEADER.unpack(ciphertext[:_HEADER.size])
        with self._lock:
            versions = self._versions[key_id]
            latest = len(versions)
            key = versions[version - 1] if fmt == 1 and 1 <= version <= latest else None
        if key is None:
            raise _invalid("ciphertext", "not a ciphertext of this key")
        nonce = ciphertext[_HEADER.size:_HEADER.size + 12]
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext[_HEADER.size + 12:],
                                            ciphertext[:_HEADER.size] + associated)
        except InvalidTag:
            raise _invalid("ciphertext", "the ciphertext or the associated data does not "
                           "match") from None
        return plaintext, latest - version

    def _answer_for(self, key_id: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if key_id not in self._versions:
                raise _Refused(404, {"message": "resource is not found", "resource": "key",
                                     "resource_id": key_id, "type": "not_found"})
            disabled = key_id in self._disabled
            rotations = len(self._versions[key_id]) - 1
        if operation == "rotate":
            return {"id": key_id, "state": "enabled", "rotation_count": rotations + 1,
                    "protected": True, "region": self.region}
        if disabled:
            raise _Refused(412, {"message": "precondition is not respected",
                                 "precondition": "resource_not_usable",
                                 "help_message": "the key is disabled",
                                 "type": "precondition_failed"})
        associated = _bytes(body, "associated_data", required=False)
        if operation == "encrypt":
            plaintext = _bytes(body, "plaintext")
            if len(plaintext) > 65535:
                raise _invalid("plaintext", "at most 65535 bytes")
            return {"key_id": key_id,
                    "ciphertext": _b64(self._encrypt(key_id, plaintext, associated))}
        if operation == "decrypt":
            plaintext, behind = self._decrypt(key_id, _bytes(body, "ciphertext"), associated)
            fresher = self._encrypt(key_id, plaintext, associated) if behind else None
            return {"key_id": key_id, "plaintext": _b64(plaintext),
                    "ciphertext": _b64(fresher) if fresher else None}
        if body.get("algorithm") not in ("aes_256_gcm", None):  # generate-data-key
            raise _invalid("algorithm", "aes_256_gcm only")
        data_key = AESGCM.generate_key(bit_length=256)
        return {"key_id": key_id, "algorithm": "aes_256_gcm",
                "ciphertext": _b64(self._encrypt(key_id, data_key, b"")),
                "plaintext": None if body.get("without_plaintext") else _b64(data_key),
                "created_at": datetime.now(UTC).isoformat()}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                match = _PATH.fullmatch(self.path)
                if match is None:
                    self._json(404, {"message": "resource is not found", "type": "not_found"})
                    return
                if self.headers.get("X-Auth-Token") != standin.token:
                    self._json(401, {"message": "authentication is denied",
                                     "method": "api_key", "reason": "invalid_argument",
                                     "type": "denied_authentication"})
                    return
                region, key_id, operation = match.groups()
                raw = self._body(_MAX_BODY)
                if raw is None:
                    return
                with standin._lock:
                    standin.calls.append(f"{operation} {key_id}")
                try:
                    if region != standin.region:
                        raise _Refused(404, {"message": "resource is not found",
                                             "resource": "key", "resource_id": key_id,
                                             "type": "not_found"})
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise _invalid("body", "a JSON object")
                    self._json(200, standin._answer_for(key_id, operation, body))
                except _Refused as refused:
                    self._json(refused.status, refused.body)
                except ValueError:
                    self._json(400, _invalid("body", "not JSON").body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._answer(status, json.dumps(body).encode(), "application/json")

        return Handler


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(body: dict[str, Any], name: str, *, required: bool = True) -> bytes:
    value = body.get(name)
    if value is None and not required:
        return b""
    try:
        if isinstance(value, str) and value:
            return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise _invalid(name, "base64 bytes, not empty")
