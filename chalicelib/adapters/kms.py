"""The keys port on AWS KMS: data keys come from GenerateDataKey, are re-wrapped
by Encrypt (rotation) and unwrapped by Decrypt, always with an encryption
context that names their purpose and which data key they are (tenant and
version), as the local key file binds them with its associated data: a wrapped
key copied to another tenant or version does not decrypt. CloudTrail records
that context with every call.

The configured key is a key ARN (never an alias, which can be pointed at
another key): it is the master key id stored with each wrapped key, and
Decrypt is pinned to it (KeyId), so a ciphertext of another KMS key is refused
even where the role may use that key. KMS rotates the key material itself
(automatic or on-demand rotation keeps the ARN, and older material keeps
decrypting), so rotation needs no re-wrapping here.

Errors: a ciphertext that does not decrypt (InvalidCiphertextException,
IncorrectKeyException) is DecryptionRefused; anything else (unreachable,
throttled, access denied, key disabled or pending deletion) is KeysUnavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from chalicelib.config import KMS_KEY_ARN
from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.domain.errors import KeysUnavailable
from chalicelib.ports import WrappedKey

PURPOSE = "einvoice-data-key-v1"
DATA_KEY_BYTES = 32
_REFUSED = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class KmsClient(Protocol):
    """What this adapter asks of the SDK's KMS client."""

    def generate_data_key(self, *, KeyId: str, KeySpec: str,
                          EncryptionContext: Mapping[str, str]) -> Mapping[str, object]: ...

    def encrypt(self, *, KeyId: str, Plaintext: bytes,
                EncryptionContext: Mapping[str, str]) -> Mapping[str, object]: ...

    def decrypt(self, *, CiphertextBlob: bytes, KeyId: str,
                EncryptionContext: Mapping[str, str]) -> Mapping[str, object]: ...


def kms_client(key_arn: str) -> KmsClient:
    """The SDK's client in the key's own region, with bounded timeouts and a few
    retries; credentials from the default chain (the function's role). The
    endpoint is AWS's, or botocore's AWS_ENDPOINT_URL_KMS (local stand-ins)."""
    from botocore.config import Config

    from chalicelib.adapters.aws import sdk_client

    match = KMS_KEY_ARN.fullmatch(key_arn)
    if match is None:
        raise ValueError("not a KMS key ARN")
    config = Config(region_name=match.group(1), connect_timeout=2, read_timeout=5,
                    retries={"max_attempts": 3, "mode": "standard"})
    client: KmsClient = sdk_client("kms", config=config)
    return client


class AwsKmsKeys:
    def __init__(self, kms: KmsClient, key_arn: str) -> None:
        if KMS_KEY_ARN.fullmatch(key_arn) is None:
            raise ValueError("KMS_KEY_ID must be a key ARN (arn:aws:kms:<region>:<account>:"
                             "key/<id>), not an alias")
        self._kms = kms
        self._arn = key_arn

    @property
    def current_key_id(self) -> str:
        return self._arn

    def owns(self, master_key_id: str) -> bool:
        return master_key_id == self._arn

    def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        answer = self._call("GenerateDataKey", lambda: self._kms.generate_data_key(
            KeyId=self._arn, KeySpec="AES_256", EncryptionContext=_context(context)))
        return self._bytes(answer, "Plaintext", "GenerateDataKey"), WrappedKey(
            self._arn, self._bytes(answer, "CiphertextBlob", "GenerateDataKey"))

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        answer = self._call("Encrypt", lambda: self._kms.encrypt(
            KeyId=self._arn, Plaintext=data_key, EncryptionContext=_context(context)))
        return WrappedKey(self._arn, self._bytes(answer, "CiphertextBlob", "Encrypt"))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if wrapped.master_key_id != self._arn:
            raise DecryptionRefused(f"master key {wrapped.master_key_id!r} is not this "
                                    "deployment's KMS key")
        answer = self._call("Decrypt", lambda: self._kms.decrypt(
            CiphertextBlob=wrapped.blob, KeyId=self._arn, EncryptionContext=_context(context)))
        return self._bytes(answer, "Plaintext", "Decrypt")

    def _call(self, operation: str,
              call: Callable[[], Mapping[str, object]]) -> Mapping[str, object]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            if operation == "Decrypt" and code in _REFUSED:
                raise DecryptionRefused("the data key does not unwrap in this context "
                                        f"(KMS {code})") from None
            raise KeysUnavailable(f"KMS {operation}: {code}") from None
        except BotoCoreError as exc:  # unreachable, timed out, no credentials
            raise KeysUnavailable(f"KMS {operation}: {type(exc).__name__}") from None
        if answer.get("KeyId") != self._arn:  # KMS names the key it used: ours, or refuse
            raise KeysUnavailable(f"KMS {operation}: answered for another key")
        return answer

    @staticmethod
    def _bytes(answer: Mapping[str, object], field: str, operation: str) -> bytes:
        value = answer.get(field)
        if not isinstance(value, bytes) or (field == "Plaintext"
                                            and len(value) != DATA_KEY_BYTES):
            raise KeysUnavailable(f"KMS {operation}: no usable {field} in the answer")
        return value


def _context(context: bytes) -> dict[str, str]:
    """The KMS encryption context for the port's context bytes (UTF-8 text
    such as `tenant:<id>|version:<n>`), with the purpose beside it."""
    return {"purpose": PURPOSE, "data_key": context.decode("utf-8")}
