"""What each KMS answer becomes, for the answers moto server never gives (it
answers AccessDeniedException where KMS answers IncorrectKeyException, and
never throttles): botocore's own Stubber feeds the real client those answers,
checked against KMS's API model. tests/integration/test_key_providers.py runs
the adapter against moto server's KMS itself."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from chalicelib.adapters.kms import AwsKmsKeys, KmsClient
from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.domain.errors import KeysUnavailable
from chalicelib.ports import WrappedKey

ARN = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CONTEXT = b"tenant:00000000-0000-4000-8000-000000000001|version:1"
BLOB = bytes(range(100))
EXPECTED_DECRYPT = {"CiphertextBlob": BLOB, "KeyId": ARN, "EncryptionContext": {
    "purpose": "einvoice-data-key-v1", "data_key": CONTEXT.decode()}}


@pytest.fixture
def stubbed() -> Iterator[tuple[KmsClient, Stubber]]:
    client = boto3.session.Session(aws_access_key_id="stub", aws_secret_access_key="stub").client(
        "kms", config=Config(region_name="eu-west-3"))
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["IncorrectKeyException", "InvalidCiphertextException"])
def test_a_ciphertext_kms_will_not_decrypt_is_refused(
        stubbed: tuple[KmsClient, Stubber], code: str) -> None:
    client, stubber = stubbed
    stubber.add_client_error("decrypt", service_error_code=code, http_status_code=400,
                             expected_params=EXPECTED_DECRYPT)
    with pytest.raises(DecryptionRefused, match=code):
        AwsKmsKeys(client, ARN).unwrap(WrappedKey(ARN, BLOB), CONTEXT)


@pytest.mark.parametrize(("code", "status"), [
    ("AccessDeniedException", 400), ("KMSInternalException", 500),
    ("ThrottlingException", 400), ("DisabledException", 400),
    ("KMSInvalidStateException", 400), ("NotFoundException", 400),
    ("DependencyTimeoutException", 503), ("KeyUnavailableException", 500),
])
def test_an_outage_or_a_refusal_of_ours_is_unavailable_never_tampering(
        stubbed: tuple[KmsClient, Stubber], code: str, status: int) -> None:
    client, stubber = stubbed
    stubber.add_client_error("decrypt", service_error_code=code, http_status_code=status,
                             expected_params=EXPECTED_DECRYPT)
    with pytest.raises(KeysUnavailable, match=f"KMS Decrypt: {code}"):
        AwsKmsKeys(client, ARN).unwrap(WrappedKey(ARN, BLOB), CONTEXT)


def test_a_wrapping_error_is_never_a_refusal(stubbed: tuple[KmsClient, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("generate_data_key", service_error_code="InvalidCiphertextException",
                             http_status_code=400)
    with pytest.raises(KeysUnavailable, match="GenerateDataKey"):
        AwsKmsKeys(client, ARN).generate_data_key(CONTEXT)


def test_an_answer_for_another_key_or_without_a_data_key_is_refused(
        stubbed: tuple[KmsClient, Stubber]) -> None:
    client, stubber = stubbed
    other = ARN.replace("1234abcd", "9999abcd")
    stubber.add_response("decrypt", {"KeyId": other, "Plaintext": bytes(32)}, EXPECTED_DECRYPT)
    stubber.add_response("decrypt", {"KeyId": ARN, "Plaintext": bytes(16)}, EXPECTED_DECRYPT)
    keys = AwsKmsKeys(client, ARN)
    with pytest.raises(KeysUnavailable, match="another key"):
        keys.unwrap(WrappedKey(ARN, BLOB), CONTEXT)
    with pytest.raises(KeysUnavailable, match="no usable Plaintext"):
        keys.unwrap(WrappedKey(ARN, BLOB), CONTEXT)


def test_a_wrapped_key_naming_another_key_is_refused_without_a_call(
        stubbed: tuple[KmsClient, Stubber]) -> None:
    client, _ = stubbed  # no response queued: any call would fail the stubber
    with pytest.raises(DecryptionRefused, match="not this deployment's KMS key"):
        AwsKmsKeys(client, ARN).unwrap(WrappedKey(ARN.replace("1234", "5678"), BLOB), CONTEXT)


def test_only_a_key_arn_is_accepted(stubbed: tuple[KmsClient, Stubber]) -> None:
    client, _ = stubbed
    for not_an_arn in ("alias/einvoice", "1234abcd-12ab-34cd-56ef-1234567890ab",
                       "arn:aws:kms:eu-west-3:123456789012:alias/einvoice"):
        with pytest.raises(ValueError, match="not an alias"):
            AwsKmsKeys(client, not_an_arn)
