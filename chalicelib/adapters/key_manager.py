"""The keys port on Scaleway Key Manager, over its HTTP API (urllib; no SDK):

    POST {api}/key-manager/v1alpha1/regions/{region}/keys/{key_id}/encrypt
         {"plaintext": b64, "associated_data": b64}  ->  {"key_id", "ciphertext": b64}
    POST .../decrypt
         {"ciphertext": b64, "associated_data": b64} ->  {"key_id", "plaintext": b64, ...}

authenticated by `X-Auth-Token: <IAM API secret key>`. The associated data is
the local key file's (a domain string and the data key's tenant and version),
so a wrapped key copied to another tenant or version does not decrypt.

New data keys are drawn here (the OS CSPRNG, as `cryptography` does) and
wrapped by `encrypt`: Key Manager's own `generate-data-key` takes no associated
data, so the ciphertext it returns would not be bound to a tenant.

The master key id stored with each wrapped key is `scaleway:<region>:<key id>`;
only that one is unwrapped. Key Manager rotates its key versions itself (a
rotation policy, or `rotate`): older versions keep decrypting, so rotation
needs no re-wrapping here.

Errors: a 400 on `decrypt` (the ciphertext or associated data refused) is
DecryptionRefused; anything else (unreachable, timed out, 401/403 for the
token, 404 for a deleted key, 412 for a disabled one, 429, 5xx, an answer that
is not what the API documents) is KeysUnavailable, which names the operation,
status and Scaleway's error type, never its message text or the token.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from typing import Literal
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.domain.errors import KeysUnavailable
from chalicelib.ports import WrappedKey
from chalicelib.secret import Secret

WRAP_DOMAIN = b"einvoice-data-key-v1|"  # as the local key file's associated data
DATA_KEY_BYTES = 32
KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REGION = re.compile(r"^[a-z]{2}-[a-z]{3}$")
_MAX_ANSWER = 64 * 1024
_ATTEMPTS = 2  # a second try after a network fault, a 429 or a 5xx
_PAUSE = 0.2  # seconds between them
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
Operation = Literal["encrypt", "decrypt"]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token elsewhere: answer it as an error."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class ScalewayKeyManager:
    def __init__(self, key_id: str, region: str, secret_key: Secret,
                 api_url: str = "https://api.scaleway.com", timeout: float = 5.0) -> None:
        if not KEY_ID.fullmatch(key_id) or not REGION.fullmatch(region):
            raise ValueError("a Key Manager key id (UUID) and a region such as fr-par")
        api = urlsplit(api_url)
        if api.scheme != "https" and not (api.scheme == "http" and api.hostname in _LOOPBACK):
            raise ValueError("the Key Manager API is reached over https (http only on loopback)")
        self._key_id = key_id
        self._region = region
        self._secret_key = secret_key
        self._base = (f"{api_url.rstrip('/')}/key-manager/v1alpha1/regions/{quote(region)}"
                      f"/keys/{quote(key_id)}")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    @property
    def current_key_id(self) -> str:
        return f"scaleway:{self._region}:{self._key_id}"

    def owns(self, master_key_id: str) -> bool:
        return master_key_id == self.current_key_id

    def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.wrap(data_key, context)

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        answer = self._post("encrypt", {"plaintext": _b64(data_key),
                                        "associated_data": _b64(WRAP_DOMAIN + context)})
        return WrappedKey(self.current_key_id, _field(answer, "ciphertext", "encrypt"))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if wrapped.master_key_id != self.current_key_id:
            raise DecryptionRefused(f"master key {wrapped.master_key_id!r} is not this "
                                    "deployment's Key Manager key")
        answer = self._post("decrypt", {"ciphertext": _b64(wrapped.blob),
                                        "associated_data": _b64(WRAP_DOMAIN + context)})
        plaintext = _field(answer, "plaintext", "decrypt")
        if len(plaintext) != DATA_KEY_BYTES:
            raise DecryptionRefused("the unwrapped data key is not 256 bits")
        return plaintext

    def _post(self, operation: Operation, body: dict[str, str]) -> dict[str, object]:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._once(operation, body)
            except _Retryable as exc:
                if attempt == _ATTEMPTS:
                    raise KeysUnavailable(f"Key Manager {operation}: {exc.reason}") from None
                time.sleep(_PAUSE)
        raise AssertionError("unreachable")

    def _once(self, operation: Operation, body: dict[str, str]) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310 - the base is https (settings)
            f"{self._base}/{operation}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "X-Auth-Token": self._secret_key.get_secret_value()})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status, raw = response.status, response.read(_MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                kind = _error_type(exc.read(_MAX_ANSWER + 1))
            if exc.code == 400 and operation == "decrypt":
                raise DecryptionRefused("the data key does not unwrap in this context "
                                        f"(Key Manager: HTTP 400 {kind})") from None
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} {kind}") from None
            raise KeysUnavailable(f"Key Manager {operation}: HTTP {exc.code} {kind}") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            raise _Retryable(f"unreachable ({type(exc).__name__})") from None
        if status != 200 or len(raw) > _MAX_ANSWER:
            raise KeysUnavailable(f"Key Manager {operation}: unexpected answer (HTTP {status})")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise KeysUnavailable(f"Key Manager {operation}: the answer is not JSON") from None
        if not isinstance(answer, dict) or answer.get("key_id") != self._key_id:
            raise KeysUnavailable(f"Key Manager {operation}: answered for another key")
        return answer


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _field(answer: dict[str, object], name: str, operation: str) -> bytes:
    value = answer.get(name)
    try:
        if isinstance(value, str) and value:
            return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise KeysUnavailable(f"Key Manager {operation}: no usable {name} in the answer")


def _error_type(raw: bytes) -> str:
    """Scaleway's error `type` (invalid_arguments, not_found, denied_authentication,
    permissions_denied, precondition_failed, ...), a fixed word safe to log."""
    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError):
        return "(no error type)"
    return kind if isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,40}", kind) else "(?)"
