"""Secret settings from AWS Secrets Manager (moto server's, the suite's moto
server): EINVOICE_<X>_SECRET_ARN names the secret whose text is X, read once
per container; the database password read that way opens the database; the
closing signing key comes from CLOSING_KEY_PEM_SECRET_ARN; a missing secret
names the setting, never a value."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import runtime
from chalicelib.adapters import secrets as secrets_adapter
from chalicelib.adapters.postgres import app_connector
from chalicelib.config import ConfigurationError, Settings, secret_settings, settings
from chalicelib.domain.closing import key_id_for
from chalicelib.domain.errors import SecretUnavailable
from devstack.stack import LocalStack
from tests.conftest import remember

SecretsClient = Callable[[str, str], str]


@pytest.fixture
def secrets_manager(stack: LocalStack,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsClient]:
    """moto server as Secrets Manager's endpoint (botocore's own setting) and
    credentials from the default chain; a fresh container's secret cache.
    Yields a function that stores a secret and returns its ARN."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", stack.moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "role-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "role-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.session.Session().client("secretsmanager",
                                            config=Config(region_name="eu-west-3"))

    def put(name: str, value: str) -> str:
        remember(value)
        arn: str = client.create_secret(Name=f"einvoice/{name}-{uuid.uuid4().hex[:8]}",
                                        SecretString=value)["ARN"]
        return arn

    secrets_adapter.read_secret.cache_clear()
    secrets_adapter._client.cache_clear()
    yield put
    secrets_adapter.read_secret.cache_clear()
    secrets_adapter._client.cache_clear()
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    runtime.pinned_keys.cache_clear()


def test_the_database_password_comes_from_its_secret_and_opens_the_database(
        secrets_manager: SecretsClient, stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    arn = secrets_manager("db-app-password", stack.secrets.app)
    monkeypatch.delenv("EINVOICE_DB_APP_PASSWORD")
    monkeypatch.setenv("EINVOICE_DB_APP_PASSWORD_SECRET_ARN", arn)
    settings = Settings.from_environment()
    assert settings.db_app_password.get_secret_value() == stack.secrets.app
    conn = app_connector(settings)()
    try:
        assert conn.run("SELECT current_user") == [[settings.db_app_user]]
    finally:
        conn.close()


def test_a_secret_is_read_once_per_container(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = secrets_manager("smtp-password", "smtp-password-from-the-vault")
    monkeypatch.setenv("EINVOICE_SMTP_PASSWORD_SECRET_ARN", arn)
    calls: list[str] = []
    client = secrets_adapter._client("eu-west-3")
    client.meta.events.register(  # type: ignore[attr-defined]
        "provide-client-params.secrets-manager.GetSecretValue",
        lambda **kwargs: calls.append(kwargs["params"]["SecretId"]))
    for _ in range(3):
        password = Settings.from_environment().smtp_password
        assert password is not None
        assert password.get_secret_value() == "smtp-password-from-the-vault"
    assert calls == [arn]


@pytest.mark.parametrize("name", secret_settings())
def test_every_secret_setting_can_come_from_an_arn(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    value = f"{name}-{uuid.uuid4().hex}"
    variable = f"EINVOICE_{name.upper()}"
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(f"{variable}_SECRET_ARN", secrets_manager(name, value))
    companions = {"sqs_access_key_id": "sqs_secret_access_key",
                  "sqs_secret_access_key": "sqs_access_key_id"}
    if name in companions:  # set as a pair; the other one plainly here
        monkeypatch.setenv(f"EINVOICE_{companions[name].upper()}", "the-other-half")
    if name == "closing_key_pem":
        monkeypatch.delenv("EINVOICE_CLOSING_KEY_FILE", raising=False)
    if name == "pa_client_secret":  # a PA needs its base and token URLs and client id
        monkeypatch.setenv("EINVOICE_PA_BASE_URL", "https://pa.example.fr/flow-service")
        monkeypatch.setenv("EINVOICE_PA_TOKEN_URL", "https://pa.example.fr/oauth2/token")
        monkeypatch.setenv("EINVOICE_PA_CLIENT_ID", "einvoice")
    if name == "scw_secret_key":
        monkeypatch.setenv("EINVOICE_KEY_PROVIDER", "scaleway-key-manager")
        monkeypatch.setenv("EINVOICE_SCW_KEY_ID", "6f2a0b1c-3d4e-4f50-8a9b-0c1d2e3f4a5b")
    resolved = getattr(Settings.from_environment(), name)
    assert resolved is not None and resolved.get_secret_value() == value


def test_a_setting_and_its_arn_together_is_refused_before_any_call(
        secrets_manager: SecretsClient, stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    arn = secrets_manager("db-app-password", stack.secrets.app)
    monkeypatch.setenv("EINVOICE_DB_APP_PASSWORD_SECRET_ARN", arn)  # the plain one is set too
    with pytest.raises(ConfigurationError,
                       match="EINVOICE_DB_APP_PASSWORD and EINVOICE_DB_APP_PASSWORD_SECRET_ARN "
                             "are both set") as refused:
        Settings.from_environment()
    assert stack.secrets.app not in str(refused.value)


def test_a_missing_secret_names_the_setting(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:einvoice/none-AbCdEf"
    monkeypatch.setenv("EINVOICE_SMTP_PASSWORD_SECRET_ARN", missing)
    with pytest.raises(SecretUnavailable, match="EINVOICE_SMTP_PASSWORD_SECRET_ARN: Secrets "
                                                "Manager GetSecretValue: ResourceNotFound"):
        Settings.from_environment()


def test_an_unreachable_secrets_manager_is_unavailable(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack.anchor_standins import dead_endpoint

    arn = secrets_manager("smtp-password", "smtp-password-unreachable")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dead_endpoint())
    monkeypatch.setenv("EINVOICE_SMTP_PASSWORD_SECRET_ARN", arn)
    with pytest.raises(SecretUnavailable, match="EndpointConnectionError"):
        Settings.from_environment()


def test_the_closing_key_comes_from_secrets_manager_at_cold_start(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    monkeypatch.delenv("EINVOICE_CLOSING_KEY_FILE")
    monkeypatch.setenv("EINVOICE_CLOSING_KEY_PEM_SECRET_ARN",
                       secrets_manager("closing-key", pem))
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    signer = runtime.closing_signer()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    assert signer.public_key == public and signer.key_id == key_id_for(public)
    key.public_key().verify(signer.sign(b"closing text"), b"closing text")


def test_the_long_settings_can_come_from_an_arn_and_are_checked_as_text(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Too long for Lambda's environment on AWS: the database's CA and the
    retired closing keys come from a secret, and are then checked as the plain
    variable would be (the keys pinned for verification, never the database's)."""
    retired = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    monkeypatch.setenv("EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN",
                       secrets_manager("closing-public-keys", f"{retired.hex()}\n"))
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    monkeypatch.setenv("EINVOICE_DB_CA_PEM_SECRET_ARN", secrets_manager("database-ca", pem))
    monkeypatch.setenv("EINVOICE_DB_TLS", "true")
    resolved = Settings.from_environment()
    assert resolved.closing_public_keys == [retired.hex()]
    assert resolved.db_ca_pem == pem
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    runtime.pinned_keys.cache_clear()
    try:
        assert runtime.pinned_keys()[key_id_for(retired)] == retired
    finally:
        runtime.pinned_keys.cache_clear()


def test_a_long_setting_from_an_arn_is_refused_by_its_rule_never_quoted(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN",
                       secrets_manager("closing-public-keys", "not-a-key-at-all"))
    with pytest.raises(ConfigurationError, match="closing_public_keys "
                       r"\(EINVOICE_CLOSING_PUBLIC_KEYS\): each key must be a raw Ed25519") \
            as refused:
        Settings.from_environment()
    assert "not-a-key-at-all" not in str(refused.value)
    monkeypatch.setenv("EINVOICE_CLOSING_PUBLIC_KEYS", "")
    with pytest.raises(ConfigurationError, match="EINVOICE_CLOSING_PUBLIC_KEYS and "
                       "EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN are both set"):
        Settings.from_environment()


def test_the_ca_in_pieces_and_from_an_arn_together_is_refused(
        secrets_manager: SecretsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    monkeypatch.setenv("EINVOICE_DB_CA_PEM_SECRET_ARN", secrets_manager("database-ca", pem))
    monkeypatch.setenv("EINVOICE_DB_TLS", "true")
    monkeypatch.setenv("EINVOICE_DB_CA_PEM_1", pem)
    with pytest.raises(ConfigurationError, match="EINVOICE_DB_CA_PEM and "
                       "EINVOICE_DB_CA_PEM_SECRET_ARN are both set"):
        Settings.from_environment()
