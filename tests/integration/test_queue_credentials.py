"""The SQS client signs with the queue's own keys (Scaleway issues them apart
from the S3 keys), the S3 client with the S3 keys, never one with the other's;
without queue keys, SQS takes the default credential chain (the function's
role on AWS), still never the S3 keys. What is checked is the access key id in
each request's SigV4 Authorization header, as sent to moto server."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from chalicelib.adapters.aws import s3_client, sqs_client
from chalicelib.config import Settings
from chalicelib.secret import Secret

_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


def signed_by(client: object, call: Callable[[], object]) -> set[str]:
    """The access key ids `client` signed its requests with while `call` ran."""
    seen: set[str] = set()

    def note(request: object, **_: object) -> None:
        header = getattr(request, "headers", {}).get("Authorization", b"")
        text = header.decode() if isinstance(header, bytes) else str(header)
        seen.update(_CREDENTIAL.findall(text))

    client.meta.events.register("before-send", note)  # type: ignore[attr-defined]
    call()
    return seen


def with_keys(settings: Settings, **keys: str | None) -> Settings:
    update = {name: Secret(value) if value else None for name, value in keys.items()}
    return settings.with_changes(**update)


def test_each_client_signs_with_its_own_keys(app_settings: Settings) -> None:
    settings = with_keys(app_settings, s3_access_key_id="s3-key-id",
                         s3_secret_access_key="s3-secret", sqs_access_key_id="queue-key-id",
                         sqs_secret_access_key="queue-secret")
    sqs = sqs_client(settings)
    s3 = s3_client(settings)
    assert signed_by(sqs, lambda: sqs.get_queue_url(QueueName=settings.invoice_queue)) == {
        "queue-key-id"}
    assert signed_by(s3, lambda: s3.head_bucket(Bucket=settings.archive_bucket)) == {
        "s3-key-id"}


def test_without_queue_keys_sqs_takes_the_default_chain_never_the_s3_keys(
        app_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "role-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "role-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings = with_keys(app_settings, s3_access_key_id="s3-key-id",
                         s3_secret_access_key="s3-secret", sqs_access_key_id=None,
                         sqs_secret_access_key=None)
    sqs = sqs_client(settings)
    assert signed_by(sqs, lambda: sqs.get_queue_url(QueueName=settings.invoice_queue)) == {
        "role-key-id"}
    s3 = s3_client(settings.with_changes(**{"sqs_access_key_id": Secret("queue-key-id"),
                                               "sqs_secret_access_key": Secret("q")}))
    assert signed_by(s3, lambda: s3.head_bucket(Bucket=settings.archive_bucket)) == {
        "s3-key-id"}


def test_the_queue_region_is_its_own(app_settings: Settings) -> None:
    assert sqs_client(app_settings).meta.region_name == app_settings.s3_region
    moved = app_settings.with_changes(**{"sqs_region": "fr-par"})
    assert sqs_client(moved).meta.region_name == "fr-par"
    assert s3_client(moved).meta.region_name == app_settings.s3_region


def test_the_local_stack_gives_the_queues_their_own_keys(app_settings: Settings) -> None:
    """What bin/run and the suite run with: queue keys apart from the S3 keys,
    and the bulk-issuing queue still answers with them."""
    assert app_settings.sqs_access_key_id is not None and app_settings.s3_access_key_id
    assert app_settings.sqs_access_key_id != app_settings.s3_access_key_id
    sqs = sqs_client(app_settings)
    assert signed_by(sqs, lambda: sqs.get_queue_url(QueueName=app_settings.ledger_queue)) == {
        app_settings.sqs_access_key_id.get_secret_value()}
