"""Column encryption against the real PostgreSQL: per-tenant data keys wrapped
by the keys port, values bound to their row, rotation without re-encryption."""

from __future__ import annotations

import base64
import json
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
from tests.conftest import in_tenant

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
    """A tenant table with an encrypted column, as other sealed columns will have."""
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
        every_blob = b"".join(bytes(r[0]) for r in root.run(
            "SELECT wrapped FROM tenant_data_keys UNION ALL "
            "SELECT iban_sealed FROM test_bank_accounts"))
    finally:
        root.close()
    assert IBAN.encode() not in bytes(sealed)
    assert len(bytes(wrapped)) == 12 + 32 + 16  # nonce + wrapped key + tag, never bare
    master_keys = [base64.b64decode(v) for v in json.loads(key_file.read_text())["keys"].values()]
    assert master_keys and not any(key in every_blob for key in master_keys)
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
    assert errors == [] and len(rows) == 8
    assert all(read_iban(database, cipher, tenant, row) == IBAN for row in rows)


def test_new_data_key_version_keeps_old_values_readable(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    old = store_iban(database, cipher, tenant, IBAN)
    with tenant_tx(database, tenant) as (_, keys):
        assert cipher.new_data_key_version(keys) == 2
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
    assert remaining == [[result.new_master_key]] == [result.in_use]
    assert old_master in key_file.read_text()  # kept: backups may still need it
    # A new container with only the rotated key file still reads the old value.
    assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, row) == IBAN


@pytest.mark.parametrize("sql,state", [
    ("UPDATE tenant_data_keys SET wrapped = wrapped", "42501"),
    ("DELETE FROM tenant_data_keys", "42501"),
    ("TRUNCATE tenant_data_keys", "42501"),
    # A planted far-future version would block the tenant's next one.
    ("INSERT INTO tenant_data_keys (tenant_id, version, master_key_id, wrapped) "
     "SELECT tenant_id, 2147483647, 'x', wrapped FROM tenant_data_keys", "42501"),
    ("SELECT data_key_add(2147483647, 'x', decode(repeat('00', 28), 'hex'))", "EL002"),
])
def test_application_cannot_change_data_keys(database: Database, tenant: uuid.UUID,
                                             key_file: Path, secrets_table: str,
                                             as_app: Connect, sql: str, state: str) -> None:
    store_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, IBAN)
    app = in_tenant(as_app, tenant)
    try:
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
    """One bad row does not stop the others, and is reported."""
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
        assert old_master in first.in_use
        assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), good, good_row) == IBAN
    owner = as_owner()  # once the row is repaired, a second rotation completes
    try:
        second = rotate(owner, key_file)
    finally:
        owner.close()
    assert second.failed == [] and second.in_use == [second.new_master_key]


def test_a_rolled_back_first_key_is_never_used(
        database: Database, key_file: Path, secrets_table: str) -> None:
    """Container A creates a first key in a transaction that rolls back, then
    container B commits its own: A must seal under B's, the one that exists."""
    tenant = create_tenant("Rollback SARL", database.unit_of_work)
    a = FieldCipher(LocalKeyFile(key_file))
    with pytest.raises(RuntimeError), tenant_tx(database, tenant) as (_, keys):
        a.seal(keys, FieldPlace(tenant, "test_bank_accounts", "iban", "x"), IBAN)
        raise RuntimeError("crash before commit")
    store_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, "B's value")
    row = store_iban(database, a, tenant, IBAN)
    assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, row) == IBAN


def test_a_field_of_another_tenant_is_refused_even_from_a_warm_cache(
        database: Database, tenant: uuid.UUID, key_file: Path, secrets_table: str) -> None:
    cipher = FieldCipher(LocalKeyFile(key_file))
    row = store_iban(database, cipher, tenant, IBAN)  # the cache now holds tenant's key
    with tenant_tx(database, tenant) as (conn, _):
        [[sealed]] = conn.run("SELECT iban_sealed FROM test_bank_accounts WHERE id = :id",
                              id=str(row))
    other = create_tenant("Other SAS", database.unit_of_work)
    with (tenant_tx(database, other) as (_, other_keys),
          pytest.raises(DecryptionRefused, match="another tenant")):
        cipher.open(other_keys, FieldPlace(tenant, "test_bank_accounts", "iban", str(row)),
                    bytes(sealed))


def test_a_container_older_than_the_rotation_keeps_working(
        database: Database, key_file: Path, secrets_table: str, as_owner: Connect) -> None:
    stale = FieldCipher(LocalKeyFile(key_file))  # loaded the key file before rotation
    tenant = create_tenant("Stale SAS", database.unit_of_work)
    row = store_iban(database, stale, tenant, IBAN)
    owner = as_owner()
    try:
        assert rotate(owner, key_file).failed == []
    finally:
        owner.close()
    fresh = FieldCipher(LocalKeyFile(key_file))
    assert read_iban(database, FieldCipher(LocalKeyFile(key_file)), tenant, row) == IBAN
    newcomer = create_tenant("Newcomer SAS", database.unit_of_work)
    # The stale container wraps a new tenant's first key under the old master
    # key: kept in the file, so every container opens what it sealed.
    late = store_iban(database, stale, newcomer, "DE89370400440532013000")
    assert read_iban(database, fresh, newcomer, late) == "DE89370400440532013000"
    assert read_iban(database, stale, tenant, row) == IBAN
