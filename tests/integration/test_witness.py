"""The truncation witness in the Object Lock bucket (moto server over HTTP) and
incremental verification: an attacker with database superuser rights deletes
the newest entries and rewinds the head; the chain still verifies on its own,
the witness in the bucket reports it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.adapters.postgres import Database
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import Settings
from chalicelib.domain.closing import Period
from chalicelib.domain.retention import retain_until_for
from chalicelib.domain.witness import (
    head_text,
    read_witness,
    witness_key,
    witness_object,
    witness_prefix,
)
from chalicelib.usecases.seal_period import seal_period
from chalicelib.usecases.verify_ledger import verify_ledger
from chalicelib.usecases.witness import (
    WitnessContradicted,
    WitnessPorts,
    check_witness,
    witness,
    witness_owed,
)
from tests.builders import at, closing_ports, pinned, record, sale
from tests.conftest import Connect


@pytest.fixture
def signer(tmp_path: Path) -> LocalSigningKey:
    path = tmp_path / "closing-key.pem"
    LocalSigningKey.create(path)
    return LocalSigningKey(path)


@pytest.fixture(scope="module")
def s3(app_settings: Settings) -> Any:
    return s3_client(app_settings)


@pytest.fixture
def archive(s3: Any, app_settings: Settings) -> ObjectLockArchive:
    return ObjectLockArchive(s3, app_settings.archive_bucket)


@pytest.fixture
def witnesses(database: Database, signer: LocalSigningKey,
              archive: ObjectLockArchive) -> WitnessPorts:
    return WitnessPorts(database.unit_of_work, signer, archive)


@pytest.fixture
def root(superuser: Connect) -> Iterator[pg8000.native.Connection]:
    conn = superuser()
    conn.run("SET session_replication_role = replica")  # what an attacker with rights does
    yield conn
    conn.close()


def sealed_day(database: Database, tenant: uuid.UUID, signer: LocalSigningKey) -> Any:
    for i in range(3):
        record(database, tenant, at(20, 9 + i), "invoice.issued", sale(f"F-{i}", "10.00"))
    return seal_period(tenant, Period.parse("day", "2026-11-20"),
                       closing_ports(database, signer, at(21))).closing


def keys_under(s3: Any, bucket: str, tenant: uuid.UUID) -> list[str]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=witness_prefix(tenant))
    return [v["Key"] for v in listed.get("Versions", [])]


def test_a_closing_is_witnessed_under_lock_and_checks(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, s3: Any,
        app_settings: Settings, witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    closing = sealed_day(database, tenant, signer)
    assert witness(tenant, witnesses, closing) == closing.entry_seq == 4
    assert witness(tenant, witnesses, closing) is None  # once
    [key] = keys_under(s3, app_settings.archive_bucket, tenant)
    head = s3.head_object(Bucket=app_settings.archive_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    content = s3.get_object(Bucket=app_settings.archive_bucket, Key=key)["Body"].read()
    seen = read_witness(content, pinned(signer))
    assert seen.seq == 4 and json.loads(content)["closing"]["closing"] == closing.text
    with pytest.raises(ClientError):  # nobody deletes a witness
        s3.delete_object(Bucket=app_settings.archive_bucket, Key=key,
                         VersionId=head["VersionId"])
    assert check_witness(tenant, database.snapshot, archive, pinned(signer))["ok"] is True


def test_deleting_the_newest_entries_is_caught_by_the_witness(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any,
        witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    closing = sealed_day(database, tenant, signer)
    record(database, tenant, at(21, 9), "invoice.issued", sale("F-9", "99.00"))
    assert witness_owed(tenant, witnesses) == [closing.entry_seq, 5]  # closing, then head

    # The attacker removes entries 4 and 5 (the closing and the last invoice) and
    # rewinds the head: what is left is a valid, shorter chain.
    root.run("DELETE FROM closings WHERE tenant_id = :t", t=str(tenant))
    root.run("DELETE FROM ledger_entries WHERE tenant_id = :t AND seq > 3", t=str(tenant))
    root.run("UPDATE ledger_heads SET seq = 3, hash = (SELECT hash FROM ledger_entries "
             "WHERE tenant_id = :t AND seq = 3) WHERE tenant_id = :t", t=str(tenant))
    assert verify_ledger(tenant, database.snapshot).ok  # the chain alone cannot tell

    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "truncated_below_witness"
    assert found["seq"] == 5 and "ends at entry 3" in found["detail"]


def test_a_rewritten_witnessed_entry_is_caught(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any,
        witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    closing = sealed_day(database, tenant, signer)
    witness(tenant, witnesses, closing)
    root.run("UPDATE ledger_entries SET hash = sha256(hash) WHERE tenant_id = :t AND seq = 4",
             t=str(tenant))
    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "witness_mismatch"


def test_a_witness_signed_by_an_unknown_key_is_reported(
        database: Database, tenant: uuid.UUID, tmp_path: Path, signer: LocalSigningKey,
        archive: ObjectLockArchive) -> None:
    record(database, tenant, at(20), "invoice.issued", sale("F-1", "1.00"))
    LocalSigningKey.create(tmp_path / "intruder.pem")
    intruder = LocalSigningKey(tmp_path / "intruder.pem")
    text = head_text(tenant, 1, bytes(32), "2026-11-20T10:00:00.000000Z")
    archive.put(witness_key(tenant, 1, "head"),
                witness_object(text, intruder.sign(text.encode()), intruder.key_id),
                retain_until_for(date(2026, 11, 20)), "application/json")
    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "witness_key_unpinned"
    assert f"{intruder.key_id}, a key that is not pinned" in found["detail"]


def test_incremental_verification_starts_after_a_verified_closing(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any) -> None:
    closing = sealed_day(database, tenant, signer)
    for i in range(2):
        record(database, tenant, at(21, 10 + i), "invoice.issued", sale(f"G-{i}", "5.00"))
    result = verify_ledger(tenant, database.snapshot, closing.closing_id, pinned(signer))
    assert result.ok and result.entries_checked == 3 and result.head.seq == 6  # 4, 5, 6

    root.run("UPDATE ledger_entries SET payload = replace(payload, 'G-1', 'G-X') "
             "WHERE tenant_id = :t AND seq = 6", t=str(tenant))
    broken = verify_ledger(tenant, database.snapshot, closing.closing_id, pinned(signer))
    assert not broken.ok and broken.first_broken_seq == 6

    root.run("UPDATE closings SET signature = decode(repeat('00', 64), 'hex') "
             "WHERE tenant_id = :t", t=str(tenant))
    forged = verify_ledger(tenant, database.snapshot, closing.closing_id, pinned(signer))
    assert not forged.ok and forged.reason == "closing_signature"


def test_the_schedule_writes_what_is_owed_once(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, s3: Any,
        app_settings: Settings, witnesses: WitnessPorts) -> None:
    sealed_day(database, tenant, signer)
    first = witness_owed(tenant, witnesses)
    assert first == [4]  # the closing's witness covers the head at its entry
    assert witness_owed(tenant, witnesses) == []
    assert len(keys_under(s3, app_settings.archive_bucket, tenant)) == 1


def test_a_chain_cut_short_then_grown_again_stays_caught(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any,
        witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    """Business goes on after the cut: the schedule refuses to witness the new
    head over the contradicted witness, so the alarm stands (found in review)."""
    closing = sealed_day(database, tenant, signer)
    record(database, tenant, at(21, 9), "invoice.issued", sale("F-9", "99.00"))
    assert witness_owed(tenant, witnesses) == [closing.entry_seq, 5]
    root.run("DELETE FROM closings WHERE tenant_id = :t", t=str(tenant))
    root.run("DELETE FROM invoices WHERE tenant_id = :t AND ledger_seq > 3", t=str(tenant))
    root.run("DELETE FROM ledger_entries WHERE tenant_id = :t AND seq > 3", t=str(tenant))
    root.run("UPDATE ledger_heads SET seq = 3, hash = (SELECT hash FROM ledger_entries "
             "WHERE tenant_id = :t AND seq = 3) WHERE tenant_id = :t", t=str(tenant))
    for i in range(3):  # seq 4, 5, 6 again
        record(database, tenant, at(22, 9 + i), "invoice.issued", sale(f"G-{i}", "1.00"))

    with pytest.raises(WitnessContradicted):
        witness_owed(tenant, witnesses)
    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "witness_mismatch" and found["seq"] == 5


def test_a_sealed_entry_rewritten_and_rehashed_is_caught_by_its_closing(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any,
        witnesses: WitnessPorts) -> None:
    """No key, no S3 rights: entry 2 (inside the signed closing of the 20th) is
    changed and the chain re-hashed link by link; the closing still states the
    old hash of its last entry and the old Merkle root."""
    closing = sealed_day(database, tenant, signer)
    t = str(tenant)
    [[payload]] = root.run("SELECT payload FROM ledger_entries WHERE tenant_id = :t "
                           "AND seq = 2", t=t)
    root.run("UPDATE ledger_entries SET payload = :p WHERE tenant_id = :t AND seq = 2",
             p=payload.replace('"10.00"', '"1.00"'), t=t)
    for s in range(2, closing.entry_seq + 1):
        root.run("UPDATE ledger_entries e SET prev_hash = p.hash, "
                 "hash = ledger_entry_hash(p.hash, e.seq, e.kind, e.payload) "
                 "FROM ledger_entries p WHERE e.tenant_id = :t AND p.tenant_id = :t "
                 "AND e.seq = :s AND p.seq = :s - 1", t=t, s=s)
    root.run("UPDATE ledger_heads SET hash = (SELECT hash FROM ledger_entries "
             "WHERE tenant_id = :t AND seq = :s) WHERE tenant_id = :t", t=t,
             s=closing.entry_seq)

    result = verify_ledger(tenant, database.snapshot, pinned=pinned(signer))
    assert not result.ok and result.reason == "closing_mismatch"
    assert result.first_broken_seq == 3 and "entry 3" in (result.detail or "")


# -- blinding the witness: each leaves every locked version stored, and once
# made a cut chain verify as ok (the newest key's current version was all that
# was read). The chain is cut below its newest witness (entry 5) each time.

def cut_below_the_newest_witness(database: Database, tenant: uuid.UUID,
                                 signer: LocalSigningKey, witnesses: WitnessPorts,
                                 root: Any) -> tuple[str, str]:
    """Closing 4 and head 5 witnessed, then entry 5 removed and the head rewound
    to 4 (database superuser): (the key of witness 4, the key of witness 5)."""
    closing = sealed_day(database, tenant, signer)
    record(database, tenant, at(21, 9), "invoice.issued", sale("F-9", "99.00"))
    assert witness_owed(tenant, witnesses) == [closing.entry_seq, 5]
    root.run("DELETE FROM ledger_entries WHERE tenant_id = :t AND seq > 4", t=str(tenant))
    root.run("UPDATE ledger_heads SET seq = 4, hash = (SELECT hash FROM ledger_entries "
             "WHERE tenant_id = :t AND seq = 4) WHERE tenant_id = :t", t=str(tenant))
    assert verify_ledger(tenant, database.snapshot, pinned=pinned(signer)).ok  # alone: fine
    return witness_key(tenant, 4, "closing"), witness_key(tenant, 5, "head")


def test_a_delete_marker_over_the_newest_witness_is_an_alarm(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any, s3: Any,
        app_settings: Settings, witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    _, newest = cut_below_the_newest_witness(database, tenant, signer, witnesses, root)
    # No version id: S3 adds a delete marker (Object Lock allows it, no key needed),
    # and a listing of current objects then starts at witness 4.
    s3.delete_object(Bucket=app_settings.archive_bucket, Key=newest)
    listed = s3.list_objects_v2(Bucket=app_settings.archive_bucket, Prefix=witness_prefix(tenant))
    assert [o["Key"] for o in listed["Contents"]] == [witness_key(tenant, 4, "closing")]

    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "witness_deleted"
    assert found["object_key"] == newest and "delete marker" in found["detail"]


def test_a_new_version_of_the_newest_witness_is_an_alarm(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any, s3: Any,
        app_settings: Settings, witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    older, newest = cut_below_the_newest_witness(database, tenant, signer, witnesses, root)
    bucket = app_settings.archive_bucket
    replay = s3.get_object(Bucket=bucket, Key=older)["Body"].read()  # signed by our key
    s3.put_object(Bucket=bucket, Key=newest, Body=replay,  # unconditional: a second version
                  ChecksumAlgorithm="SHA256")
    assert s3.get_object(Bucket=bucket, Key=newest)["Body"].read() == replay

    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "witness_overwritten"
    assert found["object_key"] == newest


@pytest.mark.parametrize("signed_by", ["a key the database accepts", "our own key"])
def test_a_new_key_that_sorts_first_is_an_alarm(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any, s3: Any,
        tmp_path: Path, app_settings: Settings, witnesses: WitnessPorts,
        archive: ObjectLockArchive, signed_by: str) -> None:
    """A witness of the cut chain's head (entry 4, its real hash) under a key
    that sorts before every other: signed with a key registered in the
    database (as the app role once could), or our own witness 4 copied there."""
    older, _ = cut_below_the_newest_witness(database, tenant, signer, witnesses, root)
    bucket = app_settings.archive_bucket
    first = witness_key(tenant, 10**16 - 1, "head")
    if signed_by == "our own key":
        content = s3.get_object(Bucket=bucket, Key=older)["Body"].read()
        reason = "witness_misnamed"
    else:
        LocalSigningKey.create(tmp_path / "intruder.pem")
        intruder = LocalSigningKey(tmp_path / "intruder.pem")
        root.run("INSERT INTO signing_keys (key_id, algorithm, public_key) "
                 "VALUES (:k, 'Ed25519', :p)", k=intruder.key_id, p=intruder.public_key)
        [[entry_hash]] = root.run("SELECT hash FROM ledger_entries WHERE tenant_id = :t "
                                  "AND seq = 4", t=str(tenant))
        text = head_text(tenant, 4, bytes(entry_hash), "2026-11-21T00:00:00.000000Z")
        content = witness_object(text, intruder.sign(text.encode()), intruder.key_id)
        reason = "witness_key_unpinned"
    s3.put_object(Bucket=bucket, Key=first, Body=content, ChecksumAlgorithm="SHA256")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=witness_prefix(tenant), MaxKeys=1)
    assert listed["Contents"][0]["Key"] == first

    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == reason and found["object_key"] == first


def test_the_highest_witness_of_the_history_is_the_one_compared(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, root: Any,
        witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    """Nothing tampered with in the bucket: the cut below witness 5 is caught
    by witness 5 (the highest), though witness 4 still matches the chain."""
    cut_below_the_newest_witness(database, tenant, signer, witnesses, root)
    found = check_witness(tenant, database.snapshot, archive, pinned(signer))
    assert found["ok"] is False and found["reason"] == "truncated_below_witness"
    assert found["seq"] == 5 and found["versions"] == 2


def test_witnesses_signed_by_a_retired_key_still_count(
        database: Database, tenant: uuid.UUID, signer: LocalSigningKey, tmp_path: Path,
        root: Any, witnesses: WitnessPorts, archive: ObjectLockArchive) -> None:
    """Rotation is configuration: the old key stays pinned and its witnesses
    keep guarding the chain; unpinned, they are an alarm, never ignored."""
    cut_below_the_newest_witness(database, tenant, signer, witnesses, root)
    LocalSigningKey.create(tmp_path / "next.pem")
    rotated = LocalSigningKey(tmp_path / "next.pem")
    kept = check_witness(tenant, database.snapshot, archive, pinned(rotated, signer))
    assert kept["reason"] == "truncated_below_witness" and kept["seq"] == 5
    dropped = check_witness(tenant, database.snapshot, archive, pinned(rotated))
    assert dropped["reason"] == "witness_key_unpinned"
