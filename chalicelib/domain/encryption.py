"""Field encryption: AES-256-GCM whose associated data pins a ciphertext to its
place, so a value copied to another row, column, table or tenant will not open.

Sealed field layout (format 1):

    format       1 byte   0x01
    key version  4 bytes  unsigned big-endian: which of the tenant's data keys
    nonce        12 bytes random
    ciphertext   AES-256-GCM(data key, nonce, plaintext, aad) with its 16-byte tag

    aad = header (the 5 bytes above) || "einvoice-field-v1"
          || for tenant id, table, column, row id: 4-byte big-endian length || UTF-8

The header is authenticated too, so the key version cannot be swapped either.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = 1
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
MAX_KEY_VERSION = 2**31 - 1  # the database's integer
_HEADER = struct.Struct(">BI")
_LENGTH = struct.Struct(">I")
_DOMAIN = b"einvoice-field-v1"


class DecryptionRefused(Exception):
    """The value does not open here: wrong place, wrong key, or altered."""


@dataclass(frozen=True)
class FieldPlace:
    """Where a sealed value lives; it is bound to exactly this place."""

    tenant_id: UUID
    table: str
    column: str
    row_id: str

    def associated_data(self) -> bytes:
        parts = [str(self.tenant_id), self.table, self.column, self.row_id]
        encoded = [part.encode("utf-8") for part in parts]
        return _DOMAIN + b"".join(_LENGTH.pack(len(part)) + part for part in encoded)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, key_version: int, place: FieldPlace, plaintext: bytes) -> bytes:
    header = _HEADER.pack(FORMAT, key_version)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + AESGCM(data_key).encrypt(
        nonce, plaintext, header + place.associated_data())


def key_version(sealed: bytes) -> int:
    """The data key version a sealed value needs (read before opening it)."""
    if len(sealed) < _HEADER.size + NONCE_BYTES + 16:
        raise DecryptionRefused("too short to be a sealed value")
    fmt, version = _HEADER.unpack_from(sealed)
    if fmt != FORMAT:
        raise DecryptionRefused(f"unknown sealed-value format {fmt}")
    if not 1 <= version <= MAX_KEY_VERSION:
        raise DecryptionRefused(f"key version {version} is out of range")
    return int(version)


def open_sealed(data_key: bytes, place: FieldPlace, sealed: bytes) -> bytes:
    key_version(sealed)  # checks format and length
    header = sealed[:_HEADER.size]
    nonce = sealed[_HEADER.size:_HEADER.size + NONCE_BYTES]
    try:
        return AESGCM(data_key).decrypt(nonce, sealed[_HEADER.size + NONCE_BYTES:],
                                        header + place.associated_data())
    except InvalidTag:
        raise DecryptionRefused("the value does not belong here or was altered") from None
