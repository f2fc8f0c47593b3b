"""Column encryption against the real PostgreSQL: per-tenant data keys wrapped
by the keys port, values bound to their row, rotation without re-encryption."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.keys import LocalKeyFile
from chalicelib.adapters.postgres import Database, PostgresDataKeys, sqlstate
from chalicelib.config import Settings
from chalicelib.domain.encryption import DecryptionRefused, FieldPlace
from chalicelib.rotate_keys import rotate
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.field_encryption import FieldCipher
from devstack.stack import LocalStack

Connect = Callable[[], pg8000.native.Connection]
IBAN = "FR7630006000011234567890189"


@pytest.fixture
def key_file(stack: LocalStack) -> Path:
    """The stack's key file: rotation re-wraps every tenant's keys, so all
    tests' data keys must be wrapped by the same keys port."""
    return stack.master_key_file


@contextmanager
def tenant_tx(database: Database, tenant: uuid.UUID) -> Iterator[tuple[Any, PostgresDataKeys]]:
    with database.transaction(tenant) as conn:
        yield conn, PostgresDataKeys(conn, tenant)


@pytest.fixture(scope="module")
def secrets_table(superuser: Connect, app_settings: Settings) -> str:
    """A tenant table with an encrypted column, as later issues will have."""
    root = superuser()
    root.run("CREATE TABLE IF NOT EXISTS test_bank_accounts (tenant_id uuid NOT NULL, "
             "id uuid PRIMARY KEY, iban_sealed bytea NOT NULL)")
    root.run("ALTER TABLE test_bank_accounts ENABLE ROW LEVEL SECURITY")
    root.run("ALTER TABLE test_bank_accounts FORCE ROW LEVEL SECURITY")
    root.run("DROP POLICY IF EXISTS t ON test_bank_accounts")
    root.run("CREATE POLICY t ON test_bank_accounts USING (tenant_id = app_current_tenant())")
    root.run(f"GRANT SELECT, INSERT ON test_bank_accounts TO {app_settings.db_app_user}")
    root.close()
    return "test_bank_accounts"


def store_iban(database: Database, cipher: FieldCipher, tenant: uuid.UUID, iban: str) -> uuid.UUID:
    row = uuid.uuid4()
    with tenant_tx(database, tenant) as (conn, keys):
        sealed = cipher.seal(keys, FieldPlace(tenant, "test_bank_accounts", "iban", str(row)), iban)
        conn.run("INSERT INTO test_bank_accounts VALUES (:t, :id, :s)",
                 t=str(tenant), id=str(row), s=sealed)
    return row


def read_iban(database: Database, cipher: FieldCipher, tenant: uuid.UUID, row: uuid.UUID) -> str:
    with tenant_tx(database, tenant) as (conn, keys):
        [[sealed]] = conn.run(
            "SELECT iban_sealed FROM test_bank_accounts WHERE id = :id", id=str(row))
        return cipher.open(keys, FieldPlace(tenant, "test_bank_accounts", "iban", str(row)),
                           bytes(sealed))


def test_values_round_trip_and_are_stored_sealed(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str,
        superuser: Connect) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    row = store_iban(database, cipher, tenant, IBAN)
    assert read_iban(database, cipher, tenant, row) == IBAN
    root = superuser()
    try:
        [[sealed]] = root.run("SELECT iban_sealed FROM test_bank_accounts WHERE id = :i",
                              i=str(row))
        [[wrapped]] = root.run("SELECT wrapped FROM tenant_data_keys WHERE tenant_id = :t",
                               t=str(tenant))
        dump = root.run("SELECT string_agg(encode(wrapped, 'hex'), '') FROM tenant_data_keys")
    finally:
        root.close()
    assert IBAN.encode() not in bytes(sealed)
    master = key_file.read_text()
    assert len(bytes(wrapped)) == 12 + 32 + 16  # nonce + wrapped key + tag, never bare
    assert all(part not in str(dump) for part in master.split('"') if len(part) > 40)
    # A fresh container (empty cache) unwraps the key from the database again.
    assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, row) == IBAN


def test_ciphertext_swapped_between_rows_is_refused(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str,
        superuser: Connect) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    a = store_iban(database, cipher, tenant, IBAN)
    b = store_iban(database, cipher, tenant, "DE89370400440532013000")
    root = superuser()
    try:  # the attacker with database rights swaps the two sealed values
        root.run("UPDATE test_bank_accounts SET iban_sealed = (SELECT iban_sealed FROM "
                 "test_bank_accounts WHERE id = :b) WHERE id = :a", a=str(a), b=str(b))
    finally:
        root.close()
    with pytest.raises(DecryptionRefused):
        read_iban(database, cipher, tenant, a)
    assert read_iban(database, cipher, tenant, b) == "DE89370400440532013000"


def test_another_tenant_cannot_open_or_borrow_keys(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str,
        superuser: Connect) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    row = store_iban(database, cipher, tenant, IBAN)
    with tenant_tx(database, tenant) as (conn, _):
        [[sealed]] = conn.run(
            "SELECT iban_sealed FROM test_bank_accounts WHERE id = :id", id=str(row))
    thief = create_tenant("Thief SARL", database.unit_of_work)
    store_iban(database, cipher, thief, "GB33BUKB20201555555555")  # the thief has its own key
    with tenant_tx(database, thief) as (_, keys), pytest.raises(DecryptionRefused):
        cipher.open(keys, FieldPlace(thief, "test_bank_accounts", "iban", str(row)),
                    bytes(sealed))
    with tenant_tx(database, thief) as (conn, _):
        assert conn.run("SELECT count(*) FROM tenant_data_keys")[0][0] == 1
    # Even the wrapped key copied into the thief's row does not unwrap there.
    with (copied_wrapping(superuser, source=tenant, target=thief),
          tenant_tx(database, thief) as (_, keys), pytest.raises(DecryptionRefused)):
        FieldCipher(LocalKeyFile(key_file)).seal(
            keys, FieldPlace(thief, "test_bank_accounts", "iban", "x"), "y")


@contextmanager
def copied_wrapping(superuser: Connect, source: uuid.UUID, target: uuid.UUID) -> Iterator[None]:
    """As a superuser, put `source`'s wrapped data key in `target`'s row; restore after."""
    root = superuser()
    try:
        [[saved]] = root.run("SELECT wrapped FROM tenant_data_keys WHERE tenant_id = :t",
                             t=str(target))
        root.run("UPDATE tenant_data_keys SET wrapped = (SELECT wrapped FROM tenant_data_keys "
                 "WHERE tenant_id = :s) WHERE tenant_id = :t", s=str(source), t=str(target))
        yield
    finally:
        root.run("UPDATE tenant_data_keys SET wrapped = :w WHERE tenant_id = :t",
                 w=saved, t=str(target))
        root.close()


def test_concurrent_first_use_creates_one_data_key(
        database: Database, key_file: Path, secrets_table: str) -> None:
    tenant = create_tenant("Busy SAS", database.unit_of_work)
    cipher = FieldCipher(LocalKeyFile(key_file))
    rows: list[uuid.UUID] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            rows.append(store_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, IBAN))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with tenant_tx(database, tenant) as (conn, _):
        assert conn.run("SELECT count(*) FROM tenant_data_keys")[0][0] == 1
    assert all(read_iban(database, cipher, tenant, row) == IBAN for row in rows)


def test_new_data_key_version_keeps_old_values_readable(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    old = store_iban(database, cipher, tenant, IBAN)
    with tenant_tx(database, tenant) as (_, keys):
        assert cipher.new_data_key_version(keys, tenant) == 2
    new = store_iban(database, cipher, tenant, "DE89370400440532013000")
    with tenant_tx(database, tenant) as (conn, _):
        [[sealed]] = conn.run(
            "SELECT iban_sealed FROM test_bank_accounts WHERE id = :id", id=str(new))
    assert bytes(sealed)[1:5] == (2).to_bytes(4, "big")
    fresh = FieldCipher(LocalKeyFile(key_file))
    assert read_iban(database, fresh, tenant, old) == IBAN
    assert read_iban(database, fresh, tenant, new) == "DE89370400440532013000"


def test_master_key_rotation_rewraps_without_reencrypting(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str,
        as_owner: Connect, app_settings: Settings) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    row = store_iban(database, cipher, tenant, IBAN)
    old_master = LocalKeyFile(key_file).current_key_id
    owner = as_owner()
    try:
        result = rotate(owner, key_file)
        remaining = owner.run("SELECT DISTINCT master_key_id FROM tenant_data_keys")
    finally:
        owner.close()
    assert result.failed == [] and result.rewrapped >= 1
    assert result.new_master_key != old_master
    assert remaining == [[result.new_master_key]] and old_master in result.retired
    assert old_master not in key_file.read_text()
    # A new container with only the rotated key file still reads the old value.
    assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, row) == IBAN


@pytest.mark.parametrize("sql,state", [
    ("UPDATE tenant_data_keys SET wrapped = wrapped", "42501"),
    ("DELETE FROM tenant_data_keys", "42501"),
    ("TRUNCATE tenant_data_keys", "42501"),
])
def test_application_cannot_change_data_keys(database: Database, tenant: uuid.UUID,
                                             key_file: Path, secrets_table: str,
                                             as_app: Connect, sql: str, state: str) -> None:
    store_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, IBAN)
    app = as_app()
    try:
        app.run("BEGIN")
        app.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant))
        with pytest.raises(DatabaseError) as caught:
            app.run(sql)
        assert sqlstate(caught.value) == state
    finally:
        app.close()


@pytest.mark.parametrize("sql", [
    "DELETE FROM tenant_data_keys",
    "TRUNCATE tenant_data_keys",
    "UPDATE tenant_data_keys SET version = version + 10",
])
def test_owner_cannot_lose_or_move_data_keys(database: Database, tenant: uuid.UUID,
                                             key_file: Path, secrets_table: str,
                                             as_owner: Connect, sql: str) -> None:
    store_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, IBAN)
    owner = as_owner()
    try:
        owner.run("BEGIN")
        with pytest.raises(DatabaseError) as caught:
            owner.run(sql)
        assert sqlstate(caught.value) == "EL001"
    finally:
        owner.close()


def test_rotation_reports_a_tampered_key_and_keeps_its_master_key(
        database: Database, key_file: Path, secrets_table: str, superuser: Connect,
        as_owner: Connect) -> None:
    """One bad row neither stops the others nor lets its master key be retired."""
    cipher = FieldCipher(LocalKeyFile(key_file))
    good = create_tenant("Good SAS", database.unit_of_work)
    bad = create_tenant("Bad SAS", database.unit_of_work)
    good_row = store_iban(database, cipher, good, IBAN)
    store_iban(database, cipher, bad, IBAN)
    old_master = LocalKeyFile(key_file).current_key_id
    with copied_wrapping(superuser, source=good, target=bad):
        owner = as_owner()
        try:
            first = rotate(owner, key_file)
        finally:
            owner.close()
        assert len(first.failed) == 1 and str(bad) in first.failed[0]
        assert old_master not in first.retired and old_master in key_file.read_text()
        assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), good, good_row) == IBAN
    owner = as_owner()  # once the row is repaired, a second rotation completes
    try:
        second = rotate(owner, key_file)
    finally:
        owner.close()
    assert second.failed == [] and old_master in second.retired
