"""boto3 clients for any S3/SQS-compatible endpoint (AWS, Scaleway, OVH, moto).

Provider differences are settings: endpoint URL, region, addressing style and
whether boto3 sends the optional CRC32 checksums some providers reject.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import Settings


def _credentials(settings: Settings) -> dict[str, str]:
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        return {"aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
                "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value()}
    return {}


def s3_client(settings: Settings) -> Any:
    config = Config(
        region_name=settings.s3_region,
        s3={"addressing_style": settings.s3_addressing_style},
        request_checksum_calculation=settings.s3_checksums,
        response_checksum_validation=settings.s3_checksums,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5, read_timeout=30,
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url,
                                          config=config, **_credentials(settings))


def sqs_client(settings: Settings) -> Any:
    config = Config(region_name=settings.s3_region, connect_timeout=5, read_timeout=30,
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.session.Session().client("sqs", endpoint_url=settings.sqs_endpoint_url,
                                          config=config, **_credentials(settings))


def lambda_client(timeout: float) -> Any:
    """Lambda in the function's own region (the platform's AWS_REGION) and
    with its role: the conformance check, awaited at most `timeout` seconds."""
    config = Config(connect_timeout=5, read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"})
    return boto3.session.Session().client("lambda", config=config)


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
