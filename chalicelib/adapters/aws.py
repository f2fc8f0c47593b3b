"""AWS SDK clients for any S3/SQS-compatible endpoint (AWS, Scaleway, OVH, moto).

Provider differences are settings: endpoint URL, region, addressing style,
whether the SDK sends the optional CRC32 checksums some providers reject, and
each client's own credentials (S3 keys for S3, queue keys for SQS).

The clients are botocore's, which boto3 hands out too: only low-level calls
are made, and importing boto3 on top (its resources and s3transfer) would
double the cost at cold start, about 110 ms (docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import Settings
from chalicelib.domain.errors import QueueUnavailable
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


# Each call to S3 or SQS gets an answer or fails within about
# attempts (the first included) x read timeout + backoff = 3 x 5 s + ~2 s: a server that
# accepts connections but stops answering (a hung endpoint) costs a request
# less than the gateway's 29 s, which then answers 503 with Retry-After, not
# a gateway timeout after a Lambda still running. Our objects are small (an
# invoice's PDF or XML, a witness): a read waiting 5 s is a fault, not a slow body.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5
ATTEMPTS = 3


def s3_client(settings: Settings) -> Any:
    config = Config(
        region_name=settings.s3_region,
        s3={"addressing_style": settings.s3_addressing_style},
        request_checksum_calculation=settings.s3_checksums,
        response_checksum_validation=settings.s3_checksums,
        retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
    )
    return sdk_client("s3", endpoint_url=settings.s3_endpoint_url, config=config,
                   **_credentials(settings.s3_access_key_id, settings.s3_secret_access_key))


def sqs_client(settings: Settings) -> Any:
    """The queue's own keys (Scaleway issues them apart from the S3 keys), never
    the S3 keys; none: the default credential chain."""
    config = Config(region_name=settings.sqs_region or settings.s3_region,
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    retries={"total_max_attempts": ATTEMPTS, "mode": "standard"})
    return sdk_client("sqs", endpoint_url=settings.sqs_endpoint_url, config=config,
                   **_credentials(settings.sqs_access_key_id, settings.sqs_secret_access_key))


def lambda_client(timeout: float) -> Any:
    """Lambda in the function's own region (the platform's AWS_REGION) and
    with its role: the conformance check, awaited at most `timeout` seconds."""
    config = Config(connect_timeout=5, read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"})
    return sdk_client("lambda", config=config)


@contextmanager
def queue_outage(what: str) -> Iterator[None]:
    """A queue that does not answer in time, or answers a server error, is
    QueueUnavailable (503 with Retry-After), named by type and code only."""
    try:
        yield
    except ClientError as error:
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status < 500:
            raise
        code = error.response.get("Error", {}).get("Code", "unknown")
        raise QueueUnavailable(f"SQS {what}: answered {code}") from None
    except BotoCoreError as error:
        raise QueueUnavailable(f"SQS {what}: no answer ({type(error).__name__})") from None


class SqsQueue:
    """An SQS queue by name: sends in batches of 10, raises if any is refused."""

    def __init__(self, sqs: Any, name: str) -> None:
        self._sqs = sqs
        with queue_outage("get_queue_url"):
            self._url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def send(self, messages: list[str]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            with queue_outage("send_message_batch"):
                answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
                    {"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)])
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} message(s)")
