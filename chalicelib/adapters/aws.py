"""AWS SDK clients for any S3/SQS-compatible endpoint (AWS, Scaleway, OVH, moto).

Provider differences are settings: endpoint URL, region, addressing style,
whether the SDK sends the optional CRC32 checksums some providers reject, and
each client's own credentials (S3 keys for S3, queue keys for SQS).

The clients are botocore's, which boto3 hands out too: only low-level calls
are made, and importing boto3 on top (its resources and s3transfer) would
double the cost at cold start, about 110 ms (docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.config import Config

from chalicelib.config import Settings
from chalicelib.secret import Secret


def _credentials(access_key_id: Secret | None,
                 secret_access_key: Secret | None) -> dict[str, str]:
    """Explicit keys, or none: the default credential chain (the function's role)."""
    if access_key_id and secret_access_key:
        return {"aws_access_key_id": access_key_id.get_secret_value(),
                "aws_secret_access_key": secret_access_key.get_secret_value()}
    return {}


def sdk_client(service: str, **options: Any) -> Any:
    """A client on a session of its own, as boto3.client would give."""
    return botocore.session.get_session().create_client(service, **options)


def s3_client(settings: Settings) -> Any:
    config = Config(
        region_name=settings.s3_region,
        s3={"addressing_style": settings.s3_addressing_style},
        request_checksum_calculation=settings.s3_checksums,
        response_checksum_validation=settings.s3_checksums,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5, read_timeout=30,
    )
    return sdk_client("s3", endpoint_url=settings.s3_endpoint_url, config=config,
                   **_credentials(settings.s3_access_key_id, settings.s3_secret_access_key))


def sqs_client(settings: Settings) -> Any:
    """The queue's own keys (Scaleway issues them apart from the S3 keys), never
    the S3 keys; none: the default credential chain."""
    config = Config(region_name=settings.sqs_region or settings.s3_region, connect_timeout=5,
                    read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
    return sdk_client("sqs", endpoint_url=settings.sqs_endpoint_url, config=config,
                   **_credentials(settings.sqs_access_key_id, settings.sqs_secret_access_key))


def lambda_client(timeout: float) -> Any:
    """Lambda in the function's own region (the platform's AWS_REGION) and
    with its role: the conformance check, awaited at most `timeout` seconds."""
    config = Config(connect_timeout=5, read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"})
    return sdk_client("lambda", config=config)


class SqsQueue:
    """An SQS queue by name: sends in batches of 10, raises if any is refused."""

    def __init__(self, sqs: Any, name: str) -> None:
        self._sqs = sqs
        self._url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def send(self, messages: list[str]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)])
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} message(s)")
