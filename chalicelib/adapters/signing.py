"""The keys port's closing signer: an Ed25519 private key in a PEM (PKCS#8) file
only its owner can read, or the same PEM held by a secret setting
(EINVOICE_CLOSING_KEY_PEM: a Scaleway secret environment variable, or Secrets
Manager on AWS through EINVOICE_CLOSING_KEY_PEM_SECRET_ARN). Rotation replaces
the file (`create` with `replace=True`) or the secret with a new key; the old
public key goes into EINVOICE_CLOSING_PUBLIC_KEYS (pinned), so closings it
signed still verify. A
KMS/HSM signer can replace this behind ClosingSigner.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.adapters.keys import KeyFileError
from chalicelib.domain.closing import key_id_for
from chalicelib.secret import Secret


class LocalSigningKey:
    def __init__(self, path: Path) -> None:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyFileError(f"closing key file {path} not found") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"closing key file {path} is readable by others: chmod 600 it")
        self._load(path.read_bytes(), f"closing key file {path}")

    @classmethod
    def from_pem(cls, pem: Secret, source: str) -> LocalSigningKey:
        """The key from PEM text held by a secret setting (`source` names it in
        errors; the text itself is never quoted)."""
        signer = cls.__new__(cls)
        signer._load(pem.get_secret_value().encode("utf-8"), source)
        return signer

    def _load(self, pem: bytes, source: str) -> None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{source} is malformed (a PKCS#8 PEM without a "
                               "password is expected)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{source} is not an Ed25519 key")
        self._key = key
        self._public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
        self._key_id = key_id_for(self._public)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    @staticmethod
    def create(path: Path, *, replace: bool = False) -> str:
        """Write a new key (mode 0600, atomically); its key id. Refuses to
        overwrite unless rotating (`replace`)."""
        if path.exists() and not replace:
            raise KeyFileError(f"{path} exists: pass replace=True to rotate it")
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")  # mode 0600
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return key_id_for(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw))
