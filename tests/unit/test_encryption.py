"""Field sealing and the local keys adapter, without a database."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from chalicelib.adapters.keys import KeyFileError, LocalKeyFile
from chalicelib.domain.encryption import (
    DecryptionRefused,
    FieldPlace,
    key_version,
    new_data_key,
    open_sealed,
    seal,
)

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
PLACE = FieldPlace(TENANT, "contacts", "email", "row-1")


def test_round_trip_and_fresh_nonce() -> None:
    key = new_data_key()
    a = seal(key, 3, PLACE, b"jeanne@example.fr")
    b = seal(key, 3, PLACE, b"jeanne@example.fr")
    assert a != b and key_version(a) == 3
    assert open_sealed(key, PLACE, a) == b"jeanne@example.fr"
    assert b"jeanne" not in a


@pytest.mark.parametrize("elsewhere", [
    replace(PLACE, row_id="row-2"), replace(PLACE, column="phone"),
    replace(PLACE, table="suppliers"), replace(PLACE, tenant_id=uuid.uuid4()),
    # Length prefixes: moving characters between parts changes the binding.
    FieldPlace(TENANT, "contact", "semail", "row-1"),
])
def test_a_value_does_not_open_anywhere_else(elsewhere: FieldPlace) -> None:
    key = new_data_key()
    with pytest.raises(DecryptionRefused):
        open_sealed(key, elsewhere, seal(key, 1, PLACE, b"FR7630006000011234567890189"))


def test_any_altered_byte_is_refused() -> None:
    key = new_data_key()
    sealed = seal(key, 1, PLACE, b"secret")
    for i in range(len(sealed)):
        altered = sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1:]
        with pytest.raises(DecryptionRefused):
            open_sealed(key, PLACE, altered)


def test_wrong_key_and_garbage_are_refused() -> None:
    sealed = seal(new_data_key(), 1, PLACE, b"secret")
    with pytest.raises(DecryptionRefused):
        open_sealed(new_data_key(), PLACE, sealed)
    with pytest.raises(DecryptionRefused):
        key_version(b"\x01short")
    with pytest.raises(DecryptionRefused):
        key_version(b"\x02" + sealed[1:])
    for version in (0, 2**31, 2**32 - 1):  # beyond what the database can hold
        with pytest.raises(DecryptionRefused, match="out of range"):
            key_version(b"\x01" + version.to_bytes(4, "big") + sealed[5:])


def test_key_file_wraps_with_context_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = LocalKeyFile.create(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    keys = LocalKeyFile(path)
    data_key = new_data_key()
    wrapped = keys.wrap(data_key, b"tenant:a|version:1")
    assert wrapped.master_key_id == first and data_key not in wrapped.blob
    assert keys.unwrap(wrapped, b"tenant:a|version:1") == data_key
    with pytest.raises(DecryptionRefused):
        keys.unwrap(wrapped, b"tenant:b|version:1")

    second = LocalKeyFile.add_key(path)
    rotated = LocalKeyFile(path)
    assert rotated.current_key_id == second != first
    assert rotated.unwrap(wrapped, b"tenant:a|version:1") == data_key  # old key kept
    # A container loaded before the rotation meets the new key id: it reloads.
    rewrapped = rotated.wrap(data_key, b"tenant:a|version:1")
    assert keys.unwrap(rewrapped, b"tenant:a|version:1") == data_key
    with pytest.raises(DecryptionRefused, match="not available"):
        keys.unwrap(type(wrapped)("local-unknown", wrapped.blob), b"tenant:a|version:1")
    with pytest.raises(KeyFileError, match="exists"):
        LocalKeyFile.create(path)


def test_key_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(KeyFileError, match="not found"):
        LocalKeyFile(path)
    LocalKeyFile.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        LocalKeyFile(path)
    os.chmod(path, 0o600)
    content = json.loads(path.read_text())
    content["keys"][content["current"]] = "c2hvcnQ="  # 5 bytes, not 32
    path.write_text(json.dumps(content))
    with pytest.raises(KeyFileError, match="malformed"):
        LocalKeyFile(path)
