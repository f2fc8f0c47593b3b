"""The Object Lock archive against the real moto S3 server over HTTP: readiness
fails closed, locked versions cannot be deleted, retries reuse the version,
tampering is detected, a retention is never shortened."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.archive import ObjectLockArchive
from chalicelib.adapters.aws import s3_client
from chalicelib.config import Settings
from chalicelib.domain.errors import ArchiveNotSafe, ArchiveTampered, NotArchived
from chalicelib.domain.retention import minimum_days, retain_until_for

UNTIL = datetime(2037, 11, 24, 12, tzinfo=UTC)
LATER = datetime(2040, 1, 1, tzinfo=UTC)
PDF = b"%PDF-1.7 invoice F-2026-0001"
OTHER = b"%PDF-1.7 a different invoice"

Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def s3(app_settings: Settings) -> Any:
    return s3_client(app_settings)


@pytest.fixture
def calls(s3: Any) -> Iterator[Calls]:
    """Every S3 operation this client sends, with its parameters (a botocore
    event hook on the real client: the requests still go to the server)."""
    seen: Calls = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        seen.append((model.name, dict(params)))

    s3.meta.events.register("provide-client-params.s3", record)
    yield seen
    s3.meta.events.unregister("provide-client-params.s3", record)


MakeBucket = Callable[..., str]


@pytest.fixture
def make_bucket(s3: Any, app_settings: Settings) -> MakeBucket:
    def make(mode: str | None = "COMPLIANCE", years: int | None = 11, days: int | None = None,
             lock: bool = True, versioning: str = "Enabled") -> str:
        name = f"archive-test-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock,
                         CreateBucketConfiguration={"LocationConstraint": app_settings.s3_region})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if lock and mode:
            period = {"Years": years} if years else {"Days": days}
            s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": mode, **period}}})
        if versioning != "Enabled":  # moto allows it on a locked bucket; real providers refuse
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
        return name
    return make


def versions(s3: Any, bucket: str, key: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return [v for v in found if key is None or v["Key"] == key]


def key() -> str:
    return f"tenants/{uuid.uuid4()}/invoices/2026/F-2026-0001.pdf"


def sha(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def put_directly(s3: Any, bucket: str, name: str, body: bytes, checksum: bytes | None = None,
                 mode: str = "COMPLIANCE", md5_only: bool = False) -> str:
    """Another writer, with boto3 and the same rights: versioning lets it add a version.
    `md5_only`: no SHA-256 at all, so the server has no checksum to answer with."""
    integrity = ({"ContentMD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
                 if md5_only else
                 {"ChecksumAlgorithm": "SHA256",
                  "ChecksumSHA256": base64.b64encode(checksum or sha(body)).decode()})
    version: str = s3.put_object(Bucket=bucket, Key=name, Body=body, ObjectLockMode=mode,
                                 ObjectLockRetainUntilDate=UNTIL, **integrity)["VersionId"]
    return version


# -- retain_until_for and the day count (pure) ---------------------------------------------

@pytest.mark.parametrize(("issued", "expected"), [
    (date(2026, 11, 23), datetime(2037, 11, 24, 12, tzinfo=UTC)),
    (date(2026, 12, 31), datetime(2038, 1, 1, 12, tzinfo=UTC)),
    (date(2024, 2, 29), datetime(2035, 3, 2, 12, tzinfo=UTC)),  # no 29 Feb 2035: 1 March, the later
    (date(2023, 2, 28), datetime(2034, 3, 1, 12, tzinfo=UTC)),
])
def test_retain_until_is_noon_utc_the_day_after_the_anniversary(
        issued: date, expected: datetime) -> None:
    got = retain_until_for(issued)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


def test_retain_until_keeps_29_february_when_the_target_year_has_one() -> None:
    assert retain_until_for(date(2024, 2, 29), legal_years=4) == \
        datetime(2028, 3, 1, 12, tzinfo=UTC)


def test_retain_until_covers_the_whole_legal_period_for_every_day() -> None:
    day = date(2020, 1, 1)
    while day < date(2029, 1, 1):
        until = retain_until_for(day)
        # The lock outlives the whole anniversary day (in UTC) of the issue date.
        anniversary = (day.replace(year=day.year + 11) if (day.month, day.day) != (2, 29)
                       else date(day.year + 11, 3, 1))
        assert until == datetime(anniversary.year, anniversary.month, anniversary.day,
                                 12, tzinfo=UTC) + timedelta(days=1)
        day += timedelta(days=1)


def test_minimum_days_covers_eleven_years_from_any_start_and_one_less_does_not() -> None:
    assert minimum_days(11) == 4018
    starts = [date(2000, 1, 1) + timedelta(days=n) for n in range(0, 366 * 8)]
    assert all(s + timedelta(days=4018) >= s.replace(year=s.year + 11) for s in starts
               if (s.month, s.day) != (2, 29))
    # 4017 days (11 × 365 + 2) falls one day short when the span holds three 29 Februaries.
    assert any(s + timedelta(days=4017) < s.replace(year=s.year + 11) for s in starts
               if (s.month, s.day) != (2, 29))


# -- check_ready ---------------------------------------------------------------------------

def test_check_ready_accepts_compliance_eleven_years_or_enough_days(
        s3: Any, make_bucket: MakeBucket) -> None:
    ObjectLockArchive(s3, make_bucket()).check_ready()
    ObjectLockArchive(s3, make_bucket(years=None, days=4018)).check_ready()


@pytest.mark.parametrize(("bucket_kind", "reason"), [
    ({"lock": False}, "has no Object Lock configuration"),
    ({"mode": None}, "no default retention"),
    ({"mode": "GOVERNANCE"}, "mode is GOVERNANCE, must be COMPLIANCE"),
    ({"years": 5}, "is 5 years, must be at least 11"),
    ({"years": None, "days": 4017}, "is 4017 days, must be at least 4018"),
    ({"years": None, "days": 3650}, "is 3650 days"),
    ({"versioning": "Suspended"}, "versioning is Suspended"),
    ("missing", "does not exist"),
])
def test_check_ready_refuses_an_unsafe_bucket_and_put_writes_nothing(
        s3: Any, make_bucket: MakeBucket, app_settings: Settings,
        bucket_kind: Any, reason: str) -> None:
    bucket = (f"archive-missing-{uuid.uuid4().hex[:12]}" if bucket_kind == "missing"
              else make_bucket(**bucket_kind))
    archive = ObjectLockArchive(s3, bucket)
    with pytest.raises(ArchiveNotSafe) as refused:
        archive.check_ready()
    message = str(refused.value)
    assert reason in message and bucket in message
    assert app_settings.s3_secret_access_key is not None
    assert app_settings.s3_secret_access_key.get_secret_value() not in message.split(":", 1)[1]

    with pytest.raises(ArchiveNotSafe):
        archive.put(key(), PDF, UNTIL, "application/pdf")
    if bucket_kind != "missing":
        assert versions(s3, bucket) == []


class _Denied:
    """A client whose credentials may not read the bucket's configuration."""

    def get_bucket_versioning(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetBucketVersioning")


def test_check_ready_refuses_when_access_is_denied() -> None:
    with pytest.raises(ArchiveNotSafe, match="'locked-bucket': access denied"):
        ObjectLockArchive(_Denied(), "locked-bucket").check_ready()


class _Ticks:
    """An injectable monotonic clock, in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _bucket_checks(calls: Calls) -> int:
    return sum(1 for name, _ in calls if name == "GetObjectLockConfiguration")


def test_a_passing_check_is_reused_for_its_window_and_a_failing_one_never(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, ticks = make_bucket(), _Ticks()
    archive = ObjectLockArchive(s3, bucket, recheck_after=30, monotonic=ticks)
    archive.check_ready()
    # Someone weakens the bucket's default right after the check (moto allows it on an
    # empty bucket; real providers refuse to weaken a COMPLIANCE bucket).
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 11}}})
    # Within the window each put still names its own COMPLIANCE lock and reads it back.
    first = archive.put(key(), PDF, UNTIL, "application/pdf")
    second = archive.put(key(), OTHER, UNTIL, "application/pdf")
    assert first.mode == second.mode == "COMPLIANCE"
    assert _bucket_checks(calls) == 1  # one check served the invoice's number and both puts

    ticks.now += 30  # the window is over: the next put checks again and refuses
    later = key()
    with pytest.raises(ArchiveNotSafe, match="GOVERNANCE"):
        archive.put(later, PDF, UNTIL, "application/pdf")
    assert versions(s3, bucket, later) == []
    with pytest.raises(ArchiveNotSafe):  # a failure is not remembered as a pass
        archive.check_ready()
    assert _bucket_checks(calls) == 3


def test_recheck_after_zero_checks_before_every_put(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    archive = ObjectLockArchive(s3, make_bucket(), recheck_after=0)
    archive.put(key(), PDF, UNTIL, "application/pdf")
    archive.put(key(), OTHER, UNTIL, "application/pdf")
    assert _bucket_checks(calls) == 2
    with pytest.raises(ValueError):
        ObjectLockArchive(s3, "any", recheck_after=-1)


def test_a_first_attempt_put_skips_the_lookup_but_still_reads_the_lock_back(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    archive.check_ready()
    calls.clear()
    stored = archive.put(name, PDF, UNTIL, "application/pdf", first_attempt=True)
    assert [n for n, _ in calls] == ["PutObject", "HeadObject"]
    assert calls[1][1].get("VersionId") == stored.version_id
    assert stored.mode == "COMPLIANCE" and stored.retain_until == UNTIL

    calls.clear()  # a retry (not a first attempt) looks first and reuses that version
    again = archive.put(name, PDF, UNTIL, "application/pdf")
    assert again.version_id == stored.version_id and "PutObject" not in [n for n, _ in calls]
    assert len(versions(s3, bucket, name)) == 1


def test_every_put_is_conditional_so_the_server_never_stacks_a_version(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")
    assert [p.get("IfNoneMatch") for op, p in calls if op == "PutObject"] == ["*"]
    # What the archive relies on (and the AWS bucket policy enforces): the
    # server refuses a conditional write over a key that has a version.
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key=name, Body=OTHER, IfNoneMatch="*",
                      ChecksumAlgorithm="SHA256",
                      ChecksumSHA256=base64.b64encode(sha(OTHER)).decode(),
                      ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=UNTIL)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert len(versions(s3, bucket, name)) == 1


def test_a_first_attempt_that_finds_other_bytes_writes_nothing_over_them(
        s3: Any, make_bucket: MakeBucket) -> None:
    # A key written meanwhile (a racing writer): the conditional put is
    # refused, the version found is read and, holding other bytes, refused.
    bucket, name = make_bucket(), key()
    theirs = put_directly(s3, bucket, name, OTHER)
    with pytest.raises(ArchiveNotSafe, match="holds other bytes"):
        ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf",
                                          first_attempt=True)
    assert [v["VersionId"] for v in versions(s3, bucket, name)] == [theirs]


def test_a_first_attempt_that_finds_the_same_bytes_reuses_that_version(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    theirs = put_directly(s3, bucket, name, PDF)
    calls.clear()
    stored = ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf",
                                               first_attempt=True)
    assert stored.version_id == theirs and stored.sha256 == sha(PDF)
    assert "GetObject" in [op for op, _ in calls]  # found, not written: read back in full
    assert len(versions(s3, bucket, name)) == 1


# -- put -----------------------------------------------------------------------------------

def test_put_stores_the_bytes_under_compliance_lock(s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    stored = ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")

    assert stored.key == name and stored.sha256 == hashlib.sha256(PDF).digest()
    assert stored.mode == "COMPLIANCE" and stored.retain_until == UNTIL
    head = s3.head_object(Bucket=bucket, Key=name, VersionId=stored.version_id)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == UNTIL
    assert head["ContentType"] == "application/pdf"
    body = s3.get_object(Bucket=bucket, Key=name, VersionId=stored.version_id)["Body"].read()
    assert body == PDF


def test_put_sends_our_sha256_and_checks_readiness_first(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    calls.clear()
    ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")
    assert [op for op, _ in calls] == ["GetBucketVersioning", "GetObjectLockConfiguration",
                                       "HeadObject", "PutObject", "HeadObject"]
    (put,) = [params for op, params in calls if op == "PutObject"]
    assert put["ChecksumSHA256"] == base64.b64encode(sha(PDF)).decode()
    assert put["ObjectLockMode"] == "COMPLIANCE"


def test_locked_version_cannot_be_deleted_even_bypassing_governance(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    stored = archive.put(name, PDF, UNTIL, "application/pdf")

    for bypass in ({}, {"BypassGovernanceRetention": True}):
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=name, VersionId=stored.version_id, **bypass)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        answer = s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": name, "VersionId": stored.version_id}]}, **bypass)
        assert answer.get("Deleted", []) == []
        assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [(name, "AccessDenied")]

    assert archive.get(name, stored.version_id, stored.sha256) == PDF
    assert [v["VersionId"] for v in versions(s3, bucket)] == [stored.version_id]


def test_a_delete_marker_hides_nothing_and_stops_further_puts(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    stored = archive.put(name, PDF, UNTIL, "application/pdf")
    s3.delete_object(Bucket=bucket, Key=name)  # allowed: adds a delete marker, deletes nothing

    assert archive.get(name, stored.version_id, stored.sha256) == PDF
    with pytest.raises(ArchiveNotSafe, match="delete marker"):
        archive.put(name, PDF, UNTIL, "application/pdf")
    assert len(versions(s3, bucket)) == 1


def test_a_retry_reuses_the_version_and_other_bytes_are_refused(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    first = archive.put(name, PDF, UNTIL, "application/pdf")
    again = archive.put(name, PDF, UNTIL, "application/pdf")
    assert again == first
    assert len(versions(s3, bucket)) == 1

    with pytest.raises(ArchiveNotSafe, match="holds other bytes"):
        archive.put(name, OTHER, UNTIL, "application/pdf")
    assert [v["VersionId"] for v in versions(s3, bucket)] == [first.version_id]


def test_a_lying_checksum_header_does_not_pass_for_our_bytes(
        s3: Any, make_bucket: MakeBucket) -> None:
    # moto keeps a writer's ChecksumSHA256 without verifying it (real S3 answers BadDigest).
    bucket, name = make_bucket(), key()
    assert len(OTHER) == len(PDF)  # so only the bytes themselves can tell
    put_directly(s3, bucket, name, OTHER, checksum=sha(PDF))
    with pytest.raises(ArchiveNotSafe, match="holds other bytes"):
        ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")
    assert len(versions(s3, bucket)) == 1


def test_a_version_without_server_checksum_is_reused_only_after_reading_it(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    version = put_directly(s3, bucket, name, PDF, md5_only=True)
    calls.clear()
    stored = ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")
    assert stored.version_id == version and stored.sha256 == sha(PDF)
    assert "GetObject" in [op for op, _ in calls] and "PutObject" not in [op for op, _ in calls]


def test_a_current_version_under_governance_is_not_reused(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    put_directly(s3, bucket, name, PDF, mode="GOVERNANCE")
    with pytest.raises(ArchiveNotSafe, match="not under COMPLIANCE lock"):
        ObjectLockArchive(s3, bucket).put(name, PDF, UNTIL, "application/pdf")
    assert len(versions(s3, bucket)) == 1


def test_the_retention_change_refuses_anything_but_a_later_date(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    archive = ObjectLockArchive(s3, make_bucket())
    calls.clear()
    for until in (UNTIL, UNTIL - timedelta(days=1)):
        with pytest.raises(AssertionError, match="never shortened"):
            archive._extend(key(), "some-version", UNTIL, until)
    assert calls == []


def test_naive_retain_until_is_refused_before_any_request(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket = make_bucket()
    calls.clear()
    with pytest.raises(ValueError, match="timezone-aware"):
        ObjectLockArchive(s3, bucket).put(key(), PDF, datetime(2037, 11, 24), "application/pdf")
    assert calls == []


def test_a_reused_version_is_extended_but_never_shortened(
        s3: Any, make_bucket: MakeBucket, calls: Calls) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    first = archive.put(name, PDF, UNTIL, "application/pdf")

    extended = archive.put(name, PDF, LATER, "application/pdf")
    assert extended.version_id == first.version_id and extended.retain_until == LATER
    assert [p["Retention"]["RetainUntilDate"] for op, p in calls
            if op == "PutObjectRetention"] == [LATER]

    calls.clear()
    kept = archive.put(name, PDF, UNTIL, "application/pdf")  # earlier than the lock: no change
    assert kept.version_id == first.version_id and kept.retain_until == LATER
    assert [op for op, _ in calls if op == "PutObjectRetention"] == []
    head = s3.head_object(Bucket=bucket, Key=name, VersionId=first.version_id)
    assert head["ObjectLockRetainUntilDate"] == LATER
    assert len(versions(s3, bucket)) == 1


def test_retain_until_is_rounded_up_to_the_second(s3: Any, make_bucket: MakeBucket) -> None:
    asked = UNTIL + timedelta(microseconds=1)
    stored = ObjectLockArchive(s3, make_bucket()).put(key(), PDF, asked, "application/pdf")
    assert stored.retain_until == UNTIL + timedelta(seconds=1) >= asked


# -- get -----------------------------------------------------------------------------------

def test_get_returns_the_bytes_that_match(s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    stored = archive.put(name, PDF, UNTIL, "application/pdf")
    assert archive.get(name, stored.version_id, sha(PDF)) == PDF


def test_get_detects_other_bytes_and_a_wrong_expected_sha(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    stored = archive.put(name, PDF, UNTIL, "application/pdf")
    swapped = put_directly(s3, bucket, name, OTHER)

    with pytest.raises(ArchiveTampered):
        archive.get(name, swapped, stored.sha256)
    with pytest.raises(ArchiveTampered):
        archive.get(name, stored.version_id, sha(OTHER))


def test_get_hashes_the_bytes_itself_when_the_server_has_no_checksum(
        s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    version = put_directly(s3, bucket, name, OTHER, md5_only=True)
    archive = ObjectLockArchive(s3, bucket)
    with pytest.raises(ArchiveTampered):
        archive.get(name, version, sha(PDF))
    assert archive.get(name, version, sha(OTHER)) == OTHER


def test_get_detects_a_server_checksum_that_disagrees(s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    version = put_directly(s3, bucket, name, PDF, checksum=sha(OTHER))
    with pytest.raises(ArchiveTampered):
        ObjectLockArchive(s3, bucket).get(name, version, sha(PDF))


def test_get_of_a_missing_version_says_so(s3: Any, make_bucket: MakeBucket) -> None:
    bucket, name = make_bucket(), key()
    archive = ObjectLockArchive(s3, bucket)
    archive.put(name, PDF, UNTIL, "application/pdf")
    with pytest.raises(NotArchived):
        archive.get(name, "no-such-version", sha(PDF))
    with pytest.raises(NotArchived):
        archive.get(key(), "no-such-version", sha(PDF))
