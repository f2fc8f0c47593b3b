"""moto in server mode on 127.0.0.1: the S3 and SQS our code talks to over HTTP.

The archive bucket gets versioning and Object Lock with a COMPLIANCE default
retention of 11 years; each queue gets a dead-letter queue, so a message that
keeps failing is parked, never lost.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chalicelib.adapters.aws import s3_client, sqs_client
from chalicelib.config import Settings

ARCHIVE_RETENTION_YEARS = 11
MAX_RECEIVES = 5


class MotoServer:
    def __init__(self, port: int, log_file: Path) -> None:
        self.port = port
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited; see {self.log_file}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start within 30 s")

    @property
    def pid(self) -> int:
        """The server's process id (the fault suite suspends and resumes it)."""
        if self._process is None:
            raise RuntimeError("moto server not started")
        return self._process.pid

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def provision(settings: Settings) -> None:
    """Create the archive bucket and the queues (idempotent)."""
    s3 = s3_client(settings)
    bucket = settings.archive_bucket
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                         CreateBucketConfiguration={"LocationConstraint": settings.s3_region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": ARCHIVE_RETENTION_YEARS}},
    })
    for queue in (settings.ledger_queue, settings.invoice_queue):
        create_queue_with_dead_letters(sqs_client(settings), queue)


def create_queue_with_dead_letters(sqs: Any, name: str, *, max_receives: int = MAX_RECEIVES,
                                   visibility_seconds: int = 10) -> str:
    """The queue `name` whose message received `max_receives` times without
    being deleted moves to `name`-dead-letters on its next receive."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dead-letters")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    url: str = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_seconds),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receives)}),
    })["QueueUrl"]
    return url
