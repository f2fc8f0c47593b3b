"""Keys, secrets and queue settings without any server: what is refused, and
what a cold start without any secret ARN loads (nothing of boto3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import runtime
from chalicelib.adapters.keys import KeyFileError, KeyRing, LocalKeyFile
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import ConfigurationError, Settings, secret_settings, settings
from chalicelib.domain.closing import key_id_for
from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.ports import WrappedKey
from chalicelib.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
KEY_ARN = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SCW_KEY = "6f2a0b1c-3d4e-4f50-8a9b-0c1d2e3f4a5b"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:einvoice/smtp-AbCdEf"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EINVOICE_* setting from the caller's shell leaks into these checks."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("EINVOICE_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("env", "complaint"), [
    ({"EINVOICE_KEY_PROVIDER": "aws-kms"}, "needs kms_key_id"),
    ({"EINVOICE_KEY_PROVIDER": "aws-kms", "EINVOICE_KMS_KEY_ID": "alias/einvoice"},
     "not an alias"),
    ({"EINVOICE_KEY_PROVIDER": "scaleway-key-manager", "EINVOICE_SCW_SECRET_KEY": "s3cr3t-key"},
     "needs scw_key_id"),
    ({"EINVOICE_KEY_PROVIDER": "scaleway-key-manager", "EINVOICE_SCW_KEY_ID": SCW_KEY},
     "needs scw_secret_key"),
    ({"EINVOICE_KEY_PROVIDER": "scaleway-key-manager", "EINVOICE_SCW_KEY_ID": SCW_KEY,
      "EINVOICE_SCW_SECRET_KEY": ""}, "needs scw_secret_key"),
    ({"EINVOICE_SCW_API_URL": "http://api.example.fr"}, "https"),
    ({"EINVOICE_SCW_API_URL": "https://user:pw@api.scaleway.com"}, "no credentials"),
    ({"EINVOICE_SCW_REGION": "paris"}, "fr-par"),
    ({"EINVOICE_KEY_PROVIDER": "vault"}, "key_provider"),
    ({"EINVOICE_CLOSING_KEY_PEM": "x", "EINVOICE_CLOSING_KEY_FILE": "/k.pem"}, "keep one"),
    ({"EINVOICE_SQS_ACCESS_KEY_ID": "queue-id"}, "go together"),
    ({"EINVOICE_SQS_SECRET_ACCESS_KEY": "queue-secret"}, "go together"),
])
def test_incomplete_or_contradicting_keys_settings_are_refused(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], complaint: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=complaint) as refused:
        Settings.from_environment()
    assert "s3cr3t-key" not in str(refused.value)


def test_complete_provider_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EINVOICE_KEY_PROVIDER", "aws-kms")
    monkeypatch.setenv("EINVOICE_KMS_KEY_ID", KEY_ARN)
    assert Settings.from_environment().kms_key_id == KEY_ARN
    monkeypatch.setenv("EINVOICE_KEY_PROVIDER", "scaleway-key-manager")
    monkeypatch.setenv("EINVOICE_SCW_KEY_ID", SCW_KEY)
    monkeypatch.setenv("EINVOICE_SCW_SECRET_KEY", "s3cr3t-key")
    monkeypatch.setenv("EINVOICE_SCW_API_URL", "http://127.0.0.1:8123")
    s = Settings.from_environment()
    assert (s.scw_region, s.scw_secret_key) == ("fr-par", Secret("s3cr3t-key"))
    assert "s3cr3t-key" not in repr(s)


def test_every_secret_setting_is_known() -> None:
    """What may come from an ARN: every Secret setting, none of the others."""
    found = set(secret_settings())
    assert {"db_app_password", "db_owner_password", "smtp_password", "closing_key_pem",
            "scw_secret_key", "sqs_access_key_id", "sqs_secret_access_key",
            "s3_access_key_id", "s3_secret_access_key"} <= found
    assert not found & {"db_host", "kms_key_id", "scw_key_id", "closing_key_file"}


@pytest.mark.parametrize("plain", ["plain-smtp-password", ""])
def test_a_setting_and_its_arn_together_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch, plain: str) -> None:
    """Even an empty plain value: it would silently win over the ARN."""
    monkeypatch.setenv("EINVOICE_SMTP_PASSWORD", plain)
    monkeypatch.setenv("EINVOICE_SMTP_PASSWORD_SECRET_ARN", SECRET_ARN)
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environment()
    message = str(refused.value)
    assert "EINVOICE_SMTP_PASSWORD and EINVOICE_SMTP_PASSWORD_SECRET_ARN" in message
    assert "plain-smtp-password" not in message


def test_a_malformed_arn_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EINVOICE_DB_APP_PASSWORD_SECRET_ARN", "einvoice/db-app-password")
    with pytest.raises(ConfigurationError, match="EINVOICE_DB_APP_PASSWORD_SECRET_ARN is not"):
        Settings.from_environment()


def _loaded_after(code: str, **env: str) -> list[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EINVOICE_")}
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys; {code}; print(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
        env={**clean, **env}).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_settings_without_secret_arns_load_no_boto3() -> None:
    loaded = _loaded_after("from chalicelib.config import Settings; Settings.from_environment()",
                           EINVOICE_SMTP_PASSWORD="plain-smtp-password")
    assert [m for m in loaded if m.startswith(("boto3", "botocore",
                                               "chalicelib.adapters"))] == []


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_the_closing_key_can_come_inline_from_a_secret_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Scaleway: the PEM arrives in a secret environment variable."""
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("EINVOICE_CLOSING_KEY_PEM", _pem(key))
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    try:
        signer = runtime.closing_signer()
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        assert signer.public_key == public and signer.key_id == key_id_for(public)
        key.public_key().verify(signer.sign(b"closing"), b"closing")
    finally:
        settings.cache_clear()
        runtime.closing_signer.cache_clear()


def test_a_bad_inline_closing_key_is_named_never_quoted() -> None:
    garbage = Secret("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n"
                        "-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="EINVOICE_CLOSING_KEY_PEM is malformed") as bad:
        LocalSigningKey.from_pem(garbage, "EINVOICE_CLOSING_KEY_PEM")
    assert "bm90IGEga2V5" not in str(bad.value)
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        LocalSigningKey.from_pem(Secret(other), "EINVOICE_CLOSING_KEY_PEM")


def test_the_key_ring_sends_each_wrapped_key_to_its_own_adapter(tmp_path: Path) -> None:
    """Retired adapters only unwrap what they own; nothing is ever tried on
    another adapter (an outage is never answered by a retired key)."""
    old_path, new_path = tmp_path / "old.json", tmp_path / "new.json"
    LocalKeyFile.create(old_path)
    LocalKeyFile.create(new_path)
    old = LocalKeyFile(old_path)
    data_key, wrapped = old.generate_data_key(b"tenant:a|version:1")

    class Provider:
        """A provider whose every call fails, owning ids that start with `kms:`."""

        current_key_id = "kms:current"

        def owns(self, master_key_id: str) -> bool:
            return master_key_id.startswith("kms:")

        def generate_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
            raise ConnectionError("down")

        def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
            raise ConnectionError("down")

        def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
            raise ConnectionError("down")

    ring = KeyRing(Provider(), [old])
    assert ring.current_key_id == "kms:current"
    assert ring.unwrap(wrapped, b"tenant:a|version:1") == data_key
    with pytest.raises(ConnectionError):  # the provider's own, never the file's
        ring.wrap(data_key, b"tenant:a|version:1")
    with pytest.raises(ConnectionError):
        ring.unwrap(WrappedKey("kms:current", wrapped.blob), b"tenant:a|version:1")
    with pytest.raises(DecryptionRefused, match="not one of ours"):
        ring.unwrap(WrappedKey("vault:x", wrapped.blob), b"tenant:a|version:1")
    # A local id the file does not hold stays refused (after one reload).
    other = LocalKeyFile(new_path)
    with pytest.raises(DecryptionRefused, match="not available"):
        ring.unwrap(WrappedKey(other.current_key_id, wrapped.blob), b"tenant:a|version:1")


def test_a_refused_setting_never_prints_the_other_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nor the refused value itself, nor a chained error that would."""
    monkeypatch.setenv("EINVOICE_DB_APP_PASSWORD", "app-password-in-env")
    monkeypatch.setenv("EINVOICE_FRONTEND_ORIGIN", "https://*.example.fr")
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environment()
    for shown in (str(refused.value), repr(refused.value)):
        assert "app-password-in-env" not in shown and "*.example.fr" not in shown
    assert "EINVOICE_FRONTEND_ORIGIN" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
