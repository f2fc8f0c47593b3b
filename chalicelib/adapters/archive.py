"""The invoice archive on any S3-compatible Object Lock bucket (AWS, Scaleway, OVH, moto).

Fail closed: before each put the bucket must show versioning Enabled and Object
Lock with a COMPLIANCE default retention of at least the legal period (a passing
check is reused for `recheck_after` seconds, 30 by default: a failing one never
is); after each put the version is read back with HeadObject (mode COMPLIANCE,
retain-until not earlier than asked, the server's SHA-256 equal to ours). The
read-back is what proves each object is locked: every put also names its own
COMPLIANCE mode and retain-until, so the bucket default is a second guard. A retry of the same bytes
reuses the key's current version instead of adding an orphan one; other bytes
under the key are refused. Every put is conditional (If-None-Match: *): the
server itself refuses to stack a second version on a key, so two writers
racing on one key (or a first attempt that finds one) end with one version,
and a bucket policy can refuse any unconditional write (infra/aws/buckets.tf).
A retention is only ever extended, never shortened (moto would let us shorten
one; real providers refuse, and so does this code).

Our exception messages and logs name the bucket, the key and the problem: never
credentials, content, or a server's free-text message. A bucket that does not
answer in time, or answers a server error, is ArchiveUnavailable (an outage: a
503 with Retry-After), never ArchiveNotSafe (a bucket that cannot keep
invoices locked); any other unexpected S3 error during put propagates as
botocore raised it (a fault: the caller, or the sweep, retries).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    ArchiveUnavailable,
    NotArchived,
)
from chalicelib.domain.retention import minimum_days
from chalicelib.logs import logger
from chalicelib.ports import ArchivedObject, InvoiceArchive, WitnessVersion

COMPLIANCE = "COMPLIANCE"


# What the server answers a GetObject of a version it does not hold: no such
# key or version, a delete marker's id (405), an id it cannot parse (400).
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "MethodNotAllowed", "InvalidArgument"})


# What a server answers when it is overloaded or failing, whatever the request.
_OUTAGE_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                           "503", "500"})


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def outage(error: ClientError) -> bool:
    """A server error or throttling (retry later), not a refusal about the bucket."""
    return _status(error) >= 500 or _code(error) in _OUTAGE_CODES


def _utc(value: object) -> datetime | None:
    """A server timestamp as an aware UTC datetime; None if absent or naive."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        return None
    return value.astimezone(UTC)


def _whole_seconds_utc(moment: datetime) -> datetime:
    """`moment` in UTC, rounded up to the second (servers keep seconds; up never shortens)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("retain_until must be timezone-aware")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


class ObjectLockArchive(InvoiceArchive):
    def __init__(self, s3: Any, bucket: str, legal_years: int = 11,
                 recheck_after: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if legal_years < 1:
            raise ValueError("legal_years must be at least 1")
        if recheck_after < 0:
            raise ValueError("recheck_after must not be negative")
        self._s3 = s3
        self._bucket = bucket
        self._legal_years = legal_years
        self._recheck_after = recheck_after
        self._monotonic = monotonic
        self._passed_at: float | None = None

    # -- readiness -----------------------------------------------------------------------

    def check_ready(self) -> None:
        """Check the bucket, unless a check passed less than `recheck_after` s ago.

        Three checks per invoice (before its number and before each put) cost
        about a third of the orchestration; the per-object read-back does not
        depend on this cache."""
        passed = self._passed_at
        if passed is not None and self._monotonic() - passed < self._recheck_after:
            return
        self._passed_at = None
        self._check_bucket()
        self._passed_at = self._monotonic()

    def _check_bucket(self) -> None:
        try:
            versioning = self._s3.get_bucket_versioning(Bucket=self._bucket)
            status = versioning.get("Status")
            if status != "Enabled":
                self._not_safe(f"versioning is {status or 'not enabled'}, must be Enabled")
            lock = self._s3.get_object_lock_configuration(Bucket=self._bucket)
        except ClientError as error:
            if outage(error):
                raise self._unavailable(f"answered {_code(error)}") from None
            self._not_safe(self._client_problem(error))
        except BotoCoreError as error:  # no answer in time, or none at all: an outage
            raise self._unavailable(f"did not answer ({type(error).__name__})") from None
        config = lock.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            self._not_safe("Object Lock is not enabled")
        retention = config.get("Rule", {}).get("DefaultRetention")
        if not retention:
            self._not_safe("Object Lock has no default retention")
        mode = retention.get("Mode")
        if mode != COMPLIANCE:
            self._not_safe(f"default retention mode is {mode}, must be {COMPLIANCE}")
        years, days = int(retention.get("Years") or 0), int(retention.get("Days") or 0)
        if years:
            if years < self._legal_years:
                self._not_safe(f"default retention is {years} years, "
                               f"must be at least {self._legal_years}")
        elif days < minimum_days(self._legal_years):
            self._not_safe(f"default retention is {days} days, must be at least "
                           f"{minimum_days(self._legal_years)} ({self._legal_years} years)")

    def _client_problem(self, error: ClientError) -> str:
        code = _code(error)
        if code == "ObjectLockConfigurationNotFoundError":
            return "has no Object Lock configuration"
        if code in ("NoSuchBucket", "404") or _status(error) == 404:
            return "does not exist"
        if code in ("AccessDenied", "403") or _status(error) == 403:
            return "access denied while checking its configuration"
        return f"configuration could not be read ({code})"

    def _unavailable(self, problem: str) -> ArchiveUnavailable:
        return ArchiveUnavailable(f"archive bucket {self._bucket!r}: {problem}")

    def _not_safe(self, problem: str, key: str | None = None) -> NoReturn:
        where = f"archive bucket {self._bucket!r}" + (f", key {key!r}" if key else "")
        raise ArchiveNotSafe(f"{where}: {problem}")

    # -- put -----------------------------------------------------------------------------

    def put(self, key: str, content: bytes, retain_until: datetime,
            content_type: str, *, first_attempt: bool = False) -> ArchivedObject:
        until = _whole_seconds_utc(retain_until)
        self.check_ready()
        sha256 = hashlib.sha256(content).digest()
        head = None if first_attempt else self._head(key, None)
        reused = head is not None
        if head is None:
            head = self._write(key, content, sha256, until, content_type)
        if head is None:  # the key got a version before ours: the server kept it, not ours
            head, reused = self._head(key, None), True
            if head is None:
                self._not_safe("the write was refused but the key holds no version", key)
        version_id = str(head.get("VersionId") or "")
        if not version_id or version_id == "null":
            self._not_safe("the object has no version id", key)
        if not self._holds(key, version_id, head, content, sha256, trust_header=not reused):
            self._not_safe("its current version holds other bytes (never overwritten)"
                           if reused else "the stored bytes differ from the bytes sent", key)
        mode, retained = self._lock_of(head)
        if mode != COMPLIANCE or retained is None:
            self._not_safe(f"the version is not under {COMPLIANCE} lock (mode {mode})", key)
        if retained < until:
            if not reused:
                self._not_safe("the server kept an earlier retain-until than asked", key)
            mode, retained = self._extend(key, version_id, retained, until)
        if reused:
            logger.info("archive: retry reused the key's current version",
                        extra={"archive_key": key, "version_id": version_id})
        return ArchivedObject(key=key, version_id=version_id, sha256=sha256, mode=mode,
                              retain_until=retained)

    def _head(self, key: str, version_id: str | None) -> dict[str, Any] | None:
        """HeadObject of the current (or given) version; None if there is none."""
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            head: dict[str, Any] = self._s3.head_object(**params)
        except ClientError as error:
            if _status(error) != 404:
                raise
            headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if headers.get("x-amz-delete-marker") == "true":
                self._not_safe("its current version is a delete marker", key)
            return None
        return head

    def _write(self, key: str, content: bytes, sha256: bytes, until: datetime,
               content_type: str) -> dict[str, Any] | None:
        """Put the first version under the key and head it; None when the key
        already has one (412: If-None-Match refused to write over it)."""
        try:
            answer = self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=content, ContentType=content_type,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(sha256),
                ObjectLockMode=COMPLIANCE, ObjectLockRetainUntilDate=until, IfNoneMatch="*")
        except ClientError as error:
            if _code(error) != "PreconditionFailed" and _status(error) != 412:
                raise
            logger.info("archive: the key already holds a version; not written over",
                        extra={"archive_key": key})
            return None
        version_id = answer.get("VersionId")
        head = self._head(key, version_id) if version_id else None
        if head is None:
            self._not_safe("the written version cannot be read back", key)
        return head

    def _holds(self, key: str, version_id: str, head: dict[str, Any], content: bytes,
               sha256: bytes, *, trust_header: bool) -> bool:
        """Whether the version `head` describes holds exactly `content`: by the
        server's full-object SHA-256 for a version we just wrote with that checksum
        (the server verified it), else by reading it back. A version found under
        the key is always read: a provider that stores a writer's checksum without
        verifying it (moto does) would otherwise let someone else's bytes pass."""
        if head.get("ContentLength") != len(content):
            return False
        server = head.get("ChecksumSHA256")
        if trust_header and isinstance(server, str) and "-" not in server:  # "-N": composite
            return hmac.compare_digest(server, _b64(sha256))
        try:
            self.get(key, version_id, sha256)
        except ArchiveTampered:
            return False
        return True

    @staticmethod
    def _lock_of(head: dict[str, Any]) -> tuple[str, datetime | None]:
        mode = str(head.get("ObjectLockMode") or "none")
        return mode, _utc(head.get("ObjectLockRetainUntilDate"))

    def _extend(self, key: str, version_id: str, current: datetime,
                until: datetime) -> tuple[str, datetime]:
        """Move a COMPLIANCE retention later (the only retention change we ever make)."""
        if not until > current:  # not `assert`: must hold under python -O too
            raise AssertionError("a retention is never shortened")
        self._s3.put_object_retention(
            Bucket=self._bucket, Key=key, VersionId=version_id,
            Retention={"Mode": COMPLIANCE, "RetainUntilDate": until})
        head = self._head(key, version_id)
        mode, retained = self._lock_of(head or {})
        if mode != COMPLIANCE or retained is None or retained < until:
            self._not_safe("the retention could not be extended", key)
        logger.info("archive: retention extended", extra={"archive_key": key,
                                                          "version_id": version_id})
        return mode, retained

    # -- get -----------------------------------------------------------------------------

    def get(self, key: str, version_id: str, sha256: bytes) -> bytes:
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version_id,
                                         ChecksumMode="ENABLED")
            body: bytes = answer["Body"].read()
        except ClientError as error:
            if _code(error) in _MISSING:
                raise NotArchived(f"archive bucket {self._bucket!r} has no version "
                                  f"{version_id!r} of key {key!r}") from None
            if outage(error):
                raise self._unavailable(f"answered {_code(error)}") from None
            raise
        except FlexibleChecksumError:  # botocore: the body does not match the server's header
            raise ArchiveTampered(self._tampered(key, version_id)) from None
        except BotoCoreError as error:  # no answer in time: served later, never from elsewhere
            raise self._unavailable(f"did not answer ({type(error).__name__})") from None
        if not hmac.compare_digest(hashlib.sha256(body).digest(), sha256):
            raise ArchiveTampered(self._tampered(key, version_id))
        # botocore validates the body against this header already (FlexibleChecksumError
        # above); checked here too so the guarantee does not rest on a client setting.
        server = answer.get("ChecksumSHA256")
        if isinstance(server, str) and "-" not in server and server != _b64(sha256):
            raise ArchiveTampered(self._tampered(key, version_id))
        return body

    def history(self, prefix: str) -> list[WitnessVersion]:
        """Every version and delete marker under `prefix` (ListObjectVersions,
        all pages), each version's bytes read by its version id: a delete
        marker or a later version cannot hide a witness from this."""
        found: list[WitnessVersion] = []
        for page in self._s3.get_paginator("list_object_versions").paginate(
                Bucket=self._bucket, Prefix=prefix):
            for marker in page.get("DeleteMarkers") or []:
                found.append(WitnessVersion(str(marker["Key"]), str(marker["VersionId"]), None))
            for version in page.get("Versions") or []:
                key, version_id = str(version["Key"]), str(version["VersionId"])
                body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key,
                                                  VersionId=version_id)["Body"].read()
                found.append(WitnessVersion(key, version_id, body))
        return found

    def _tampered(self, key: str, version_id: str) -> str:
        return (f"archive bucket {self._bucket!r}, key {key!r}, version {version_id!r}: "
                "bytes do not match the recorded SHA-256")
