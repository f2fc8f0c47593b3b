"""The keys port's local adapter: master keys in a file only its owner can read.

It offers the calls a KMS offers (AWS KMS Encrypt/Decrypt with an encryption
context, Scaleway Key Manager Encrypt/Decrypt with associated data), so either
(adapters/kms.py, adapters/key_manager.py) replaces it behind the same
`KeyWrapper` port. Master keys never leave this object; the database only ever
holds data keys wrapped by them. `KeyRing` keeps this file for unwrapping only
once a provider is current (the move from the file to a provider).

File (JSON, mode 0600): {"current": "<id>", "keys": {"<id>": "<base64 32 bytes>", ...}}.
Rotation adds a key and makes it current; older keys are never deleted: data
keys in database backups, and those wrapped meanwhile by containers that had
not yet reloaded the file, still need them. A container that meets a master
key id it does not know reloads the file once (it may have rotated since).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.ports import KeyWrapper, WrappedKey

_WRAP_DOMAIN = b"einvoice-data-key-v1|"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_ID_PREFIX = "local-"


class KeyFileError(RuntimeError):
    pass


class LocalKeyFile:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._current, self._keys = _load(path)

    @property
    def current_key_id(self) -> str:
        return self._current

    def owns(self, master_key_id: str) -> bool:
        """Whether `master_key_id` is a key file's id (this file's or a newer one's)."""
        return master_key_id.startswith(_ID_PREFIX)

    def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.wrap(data_key, context)

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._keys[self._current]).encrypt(
            nonce, data_key, _WRAP_DOMAIN + context)
        return WrappedKey(self._current, blob)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        key = self._keys.get(wrapped.master_key_id)
        if key is None:  # rotated since this container loaded the file?
            self._current, self._keys = _load(self._path)
            key = self._keys.get(wrapped.master_key_id)
        if key is None:
            raise DecryptionRefused(f"master key {wrapped.master_key_id!r} is not available")
        try:
            return AESGCM(key).decrypt(wrapped.blob[:12], wrapped.blob[12:],
                                       _WRAP_DOMAIN + context)
        except InvalidTag:
            raise DecryptionRefused("the data key does not unwrap in this context") from None

    @staticmethod
    def create(path: Path) -> str:
        """Write a new key file with one master key; refuse to overwrite one."""
        with _locked(path):
            if path.exists():
                raise KeyFileError(f"{path} exists: rotate it instead of replacing it")
            key_id = _new_key_id()
            _write(path, key_id, {key_id: AESGCM.generate_key(bit_length=256)})
        return key_id

    @staticmethod
    def add_key(path: Path) -> str:
        """Rotation, step 1: a new master key becomes current (old ones kept)."""
        with _locked(path):
            _, keys = _load(path)
            key_id = _new_key_id()
            keys[key_id] = AESGCM.generate_key(bit_length=256)
            _write(path, key_id, keys)
        return key_id


class OwnedKeys(KeyWrapper, Protocol):
    """A keys adapter that can tell its own master key ids from others'."""

    def owns(self, master_key_id: str) -> bool: ...


class KeyRing:
    """The current keys adapter, plus retired ones that only unwrap: what
    carries data keys wrapped by the local key file over to a provider (KMS,
    Key Manager) until rotate_keys has re-wrapped them. Each wrapped key goes
    to the one adapter that owns its master key id, never to another: an
    outage of the current provider is never answered by a retired key."""

    def __init__(self, current: OwnedKeys, retired: Sequence[OwnedKeys]) -> None:
        self._current = current
        self._retired = tuple(retired)

    @property
    def current_key_id(self) -> str:
        return self._current.current_key_id

    def owns(self, master_key_id: str) -> bool:
        return any(keys.owns(master_key_id) for keys in (self._current, *self._retired))

    def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        return self._current.generate_data_key(context)

    def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        return self._current.wrap(data_key, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        for keys in (self._current, *self._retired):
            if keys.owns(wrapped.master_key_id):
                return keys.unwrap(wrapped, context)
        raise DecryptionRefused(f"master key {wrapped.master_key_id!r} is not one of ours")


def _new_key_id() -> str:
    return f"{_ID_PREFIX}{secrets.token_hex(8)}"


def _load(path: Path) -> tuple[str, dict[str, bytes]]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"master key file {path} not found") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"master key file {path} is readable by others: chmod 600 it")
    try:
        content = json.loads(path.read_text())
        keys = {key_id: base64.b64decode(value, validate=True)
                for key_id, value in content["keys"].items()}
        current = content["current"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyFileError(f"master key file {path} is malformed") from None
    if current not in keys or not all(
            _KEY_ID.match(k) and len(v) == 32 for k, v in keys.items()):
        raise KeyFileError(f"master key file {path} is malformed")
    return current, keys


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two rotations at once would lose a key)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, current: str, keys: dict[str, bytes]) -> None:
    """Write atomically and durably, never readable by others even for an instant."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")  # mode 0600
    with os.fdopen(fd, "w") as out:
        json.dump({"current": current,
                   "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
